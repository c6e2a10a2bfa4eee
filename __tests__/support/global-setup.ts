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
export default async function globalSetup(): Promise<void> {
  process.env.SESSION_TEST_RUN_ID = String(process.pid);
  await reapStaleRuns();
  const wanted = (Object.keys(SERVICES) as Service[]).filter((service) => !process.env[SERVICES[service].urlVar]);
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
