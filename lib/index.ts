/**
 * session-manager: server-side sessions for Node.js as Connect/Express middleware.
 * @packageDocumentation
 */
import { Manager } from './manager';
import type { SessionOptions } from './options';

export { sessions, type SessionMiddleware, type NextFunction, type SessionRequest, type SessionFields } from './middleware';
export { Manager, hashId, type SessionInfo, type SessionEvent, type StoreEvent } from './manager';
export { Session, type SessionData, type SessionValue } from './session';
export type { CompatSession, CompatCookie, CompatCookieJSON, CompatCallback } from './compat';
export { SessionError, OptionError, ProviderError } from './errors';
export { register } from './providers/registry';
export type { Provider, ProviderFactory, StoredSession, StoredEntry } from './providers/provider';
export type { SessionOptions, CookieOptions, Transport } from './options';
export { MemoryProvider, type MemoryOptions } from './providers/memory';
export { FileProvider, type FileOptions } from './providers/file';
export { SqliteProvider, type SqliteOptions } from './providers/sqlite';
export { RedisProvider, type RedisOptions } from './providers/redis';
export { PostgresProvider, type PostgresOptions } from './providers/postgres';

/**
 * A manager without the middleware: for scripts, admin tools and tests.
 * @example const manager = createManager({ provider: 'redis', providerOptions: { url } });
 */
export function createManager(options?: SessionOptions): Manager {
  return new Manager(options);
}
