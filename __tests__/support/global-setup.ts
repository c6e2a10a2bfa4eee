import { join } from 'node:path';
import type { Config } from '@jest/types';
import { discard, pgBinDir, reapStaleRuns, redisBinary, startPostgres, startRedis, writeState, type PgServer, type RedisServer, type ServicesState } from './services';

type Service = 'redis' | 'postgres';
const SERVICES: Record<Service, { urlVar: string; installed: () => boolean; missing: string; start: () => Promise<RedisServer | PgServer> }> = {
  redis: { urlVar: 'REDIS_URL', installed: () => redisBinary() !== undefined, missing: 'redis-server is not installed', start: startRedis },
  postgres: { urlVar: 'DATABASE_URL', installed: () => pgBinDir() !== undefined, missing: 'PostgreSQL (initdb, pg_ctl) is not installed', start: startPostgres },
};

/**
 * Starts the real servers the provider tests need, unless REDIS_URL /
 * DATABASE_URL already name one. Runs in Jest's parent process: what it sets
 * on process.env reaches every worker. A missing binary fails the run under
 * CI=true and otherwise makes that provider's suites skip with the reason
 * (SESSION_TEST_<SERVICE>_SKIP, read by `skipReason()`).
 */
export default async function globalSetup(globalConfig?: Config.GlobalConfig): Promise<void> {
  process.env.SESSION_TEST_RUN_ID = String(process.pid);
  await reapStaleRuns();
  const wanted = (Object.keys(SERVICES) as Service[]).filter(
    (service) => !process.env[SERVICES[service].urlVar] && selected(service, globalConfig),
  );
  // Decide everything before starting anything: Jest skips teardown when setup throws.
  for (const service of wanted.filter((name) => !SERVICES[name].installed())) {
    const reason = `${SERVICES[service].missing} and ${SERVICES[service].urlVar} is not set`;
    if (process.env.CI === 'true') throw new Error(`CI=true but ${reason}`);
    process.env[`SESSION_TEST_${service.toUpperCase()}_SKIP`] = reason;
  }
  const startable = wanted.filter((service) => SERVICES[service].installed());
  const results = await Promise.allSettled(startable.map((service) => SERVICES[service].start()));

  const state: ServicesState = {};
  for (const result of results) {
    if (result.status !== 'fulfilled') continue;
    const server = result.value;
    if (server.kind === 'redis') state.redis = server;
    else state.postgres = server;
    process.env[SERVICES[server.kind].urlVar] = server.url;
  }
  const failure = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failure) {
    await Promise.all([state.redis, state.postgres].filter((server) => server !== undefined).map(discard));
    throw failure.reason;
  }
  writeState(state);
}

/**
 * Whether this run may include tests that need `service`: `jest some/path`
 * runs that exclude __tests__/providers/<service>.test.ts (the only suites
 * that use the servers) skip starting it, saving initdb's seconds.
 */
function selected(service: Service, globalConfig?: Config.GlobalConfig): boolean {
  const patterns = globalConfig?.testPathPatterns?.patterns ?? [];
  if (patterns.length === 0) return true;
  const file = join(globalConfig!.rootDir, '__tests__', 'providers', `${service}.test.ts`);
  return patterns.some((pattern) => {
    try {
      return new RegExp(pattern, 'i').test(file);
    } catch {
      return true; // not a regexp Jest would reject: be safe, start the server
    }
  });
}
