/**
 * Redis and PostgreSQL for the reliability suites: the servers global setup
 * exported (REDIS_URL / DATABASE_URL) when there are any, otherwise private
 * throwaway ones started here from the local binaries (a run whose global
 * setup did not start them).
 */
import { discard, pgBinDir, redisBinary, startPostgres, startRedis, type PgServer, type RedisServer } from '../support/services';

export type Service = 'redis' | 'postgres';

const VARS: Record<Service, string> = { redis: 'REDIS_URL', postgres: 'DATABASE_URL' };
const started: Array<RedisServer | PgServer> = [];
const urls = new Map<Service, Promise<string>>();

/** Why tests of `service` cannot run here, or undefined when they can (decided synchronously, at collection time). */
export function unavailable(service: Service): string | undefined {
  if (process.env[VARS[service]]) return undefined;
  const installed = service === 'redis' ? redisBinary() !== undefined : pgBinDir() !== undefined;
  if (installed) return undefined;
  const reason = `${VARS[service]} is not set and ${service === 'redis' ? 'redis-server' : 'PostgreSQL (initdb, pg_ctl)'} is not installed`;
  if (process.env.CI === 'true') throw new Error(`CI=true but ${reason}`);
  return reason;
}

/** The URL of a server for `service`: the shared one, or a private one started on first use. */
export function serviceUrl(service: Service): Promise<string> {
  const shared = process.env[VARS[service]];
  if (shared) return Promise.resolve(shared);
  let url = urls.get(service);
  if (url === undefined) {
    url = (service === 'redis' ? startRedis() : startPostgres()).then((server) => {
      started.push(server);
      return server.url;
    });
    urls.set(service, url);
  }
  return url;
}

/** Stops the private servers this file started (call in afterAll). */
export async function stopPrivateServers(): Promise<void> {
  await Promise.all(started.splice(0).map(discard));
  urls.clear();
}
