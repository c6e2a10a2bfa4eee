/**
 * session-manager: server-side sessions for Node.js as Connect/Express middleware.
 * @packageDocumentation
 */
import { Manager } from './manager';
import type { ProviderChoice, SessionOptions } from './options';

export { sessions, type SessionMiddleware, type NextFunction, type SessionRequest, type SessionFields } from './middleware';
export { Manager, hashId, type SessionInfo, type SessionEvent, type StoreEvent, type ManagerEvents } from './manager';
export { Session, type SessionData, type SessionValue, type SessionKey, type SessionDataRecord, type JsonSafe } from './session';
export type { CompatSession, CompatCookie, CompatCookieJSON, CompatCallback } from './compat';
export { SessionError, OptionError, ProviderError } from './errors';
export { register } from './providers/registry';
export { optionError, rejectUnknownOptions, loadDriver } from './providers/kit';
export type { Provider, ProviderFactory, StoredSession, StoredEntry } from './providers/provider';
export type { SessionOptions, CookieOptions, Transport, ProviderOptionsByName, ProviderOptionsOf, ProviderChoice } from './options';
export { MemoryProvider, type MemoryOptions } from './providers/memory';
export { FileProvider, type FileOptions } from './providers/file';
export { SqliteProvider, type SqliteOptions } from './providers/sqlite';
export { RedisProvider, type RedisOptions, type RedisClusterOptions, type NodeRedisClient, type IORedisClient, type NodeRedisCluster, type IORedisCluster } from './providers/redis';
export { PostgresProvider, type PostgresOptions } from './providers/postgres';

/**
 * A manager without the middleware: for scripts, admin tools and tests.
 * @example const manager = createManager({ provider: 'redis', providerOptions: { url } });
 */
export function createManager<P extends ProviderChoice = 'memory'>(options?: SessionOptions<P>): Manager {
  return new Manager(options as SessionOptions<ProviderChoice>);
}
