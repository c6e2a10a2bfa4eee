import { errorMessage, OptionError, ProviderError } from '../errors';
import type { Provider, StoredEntry, StoredSession } from './provider';
import { CREATE_SCRIPT, CREATED_FIELD, EXPIRES_FIELD, UPDATE_SCRIPT, VALUE_PREFIX, type RedisScript } from './redis-scripts';
import { Deadlines } from './with-timeout';

/**
 * The node-redis v5 client surface the provider uses (what `createClient()`
 * returns). Structural, so the published types do not need `redis` installed.
 */
export interface NodeRedisClient {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  sendCommand(args: string[]): Promise<unknown>;
}

/** The ioredis client surface the provider uses (`new Redis()`). */
export interface IORedisClient {
  readonly status: string;
  call(command: string, args: string[]): Promise<unknown>;
}

/** A client the provider created: it also connects and closes it. */
interface OwnedClient extends NodeRedisClient {
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  once(event: 'ready' | 'error', listener: (error?: unknown) => void): unknown;
  off(event: 'ready' | 'error', listener: (error?: unknown) => void): unknown;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}

/** Options of the Redis provider. Give `url` or `client`. */
export interface RedisOptions {
  /** `redis[s]://[[user][:password]@]host[:port][/db]`; the provider creates, connects and closes its own `redis` client. */
  url?: string;
  /**
   * A connected client the app owns: node-redis v5 (`createClient()`) or
   * ioredis. `close()` leaves it open. Not a Cluster client (see the docs).
   */
  client?: NodeRedisClient | IORedisClient;
  /**
   * Prepended to every key. One hash per session at `${prefix}{${sid}}`.
   * Must not contain `{` or `}` (the braces around the id are the Cluster hash tag).
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * Milliseconds a call may take before it rejects with a `ProviderError`,
   * connecting included. Redis answers in well under a millisecond, so this
   * only ever fires when the server hangs or the network drops packets.
   * @default 5000
   */
  timeoutMs?: number;
}

export const DEFAULT_REDIS_PREFIX = 'sess:';
export const DEFAULT_REDIS_TIMEOUT_MS = 5000;
/** Keys per SCAN step, and sessions loaded at once by `entries()`. */
const SCAN_COUNT = 500;

/** The two drivers reduced to what the provider needs: raw commands and a readiness check. */
interface Connection {
  send(args: string[]): Promise<unknown>;
  ready(): boolean;
}

/**
 * Sessions in Redis (or Valkey/KeyDB), shared by every process that points at
 * the same server. One hash per session; Redis's own TTL (`PEXPIREAT`) deletes
 * expired sessions, so `gc()` has nothing to do and resolves 0 (the manager's
 * `expired` event then fires only when a load meets an expired session).
 * Writes are Lua scripts (one round trip, atomic); `count()`/`entries()` walk
 * the prefix with `SCAN`, never `KEYS`.
 *
 * With `url` the provider owns a node-redis client configured to fail fast:
 * while Redis is unreachable every call rejects at once with a `ProviderError`
 * (no offline queue) and the client reconnects in the background.
 *
 * @example
 * sessions({ provider: 'redis', providerOptions: { url: process.env.REDIS_URL } })
 * @example
 * const client = await createClient({ url }).connect();
 * sessions({ provider: new RedisProvider({ client, prefix: 'myapp:sess:' }) })
 */
export class RedisProvider implements Provider {
  readonly name = 'redis';
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly #deadlines: Deadlines;
  readonly #connection: Connection;
  /** Set when the provider created the client: it connects and closes it. */
  readonly #owned: OwnedClient | undefined;
  /** The first connection attempt of an owned client: settles on its first `ready` or `error`. */
  #connecting: Promise<void> | undefined;
  #closed = false;

  constructor(options: RedisOptions = {}) {
    const { url, client, prefix = DEFAULT_REDIS_PREFIX, timeoutMs = DEFAULT_REDIS_TIMEOUT_MS } = options;
    // A brace in the prefix would become the Cluster hash tag and put every session on one slot.
    if (typeof prefix !== 'string' || /[{}]/.test(prefix)) throw new OptionError(`[redis] option prefix is invalid: ${String(prefix)}`);
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new OptionError(`[redis] option timeoutMs is invalid: ${String(timeoutMs)}`);
    this.prefix = prefix;
    this.timeoutMs = timeoutMs;
    this.#deadlines = new Deadlines(this.name, timeoutMs);
    if (client !== undefined) {
      this.#connection = adapt(client);
    } else if (typeof url === 'string' && url !== '') {
      this.#owned = createOwnedClient(url, timeoutMs);
      const owned = this.#owned;
      this.#connection = { send: (args) => owned.sendCommand(args), ready: () => owned.isReady };
    } else {
      throw new OptionError('[redis] give option url (a redis:// URL) or client (a connected redis or ioredis client)');
    }
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    const args = [String(createdAt), String(expiresAt)];
    for (const [key, json] of values) args.push(VALUE_PREFIX + key, json);
    return (await this.#eval('create', CREATE_SCRIPT, this.#key(sid), args)) === 1;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    const flat = await this.#call('read', ['HGETALL', this.#key(sid)]);
    return decode(flat as string[]);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    const sets: string[] = [];
    const deletes: string[] = [];
    for (const [key, json] of changes) {
      if (json === undefined) deletes.push(VALUE_PREFIX + key);
      else sets.push(VALUE_PREFIX + key, json);
    }
    const args = [String(now), String(expiresAt), String(sets.length / 2), ...sets, ...deletes];
    return (await this.#eval('update', UPDATE_SCRIPT, this.#key(sid), args)) === 1;
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    return (await this.#eval('touch', UPDATE_SCRIPT, this.#key(sid), [String(now), String(expiresAt), '0'])) === 1;
  }

  async destroy(sid: string): Promise<void> {
    await this.#call('destroy', ['DEL', this.#key(sid)]);
  }

  /** Resolves 0: Redis deletes a session at its `expiresAt` by itself (`PEXPIREAT`). */
  async gc(_now: number, _onExpired?: (sid: string) => void): Promise<number> {
    return 0;
  }

  async count(now: number): Promise<number> {
    let live = 0;
    for await (const keys of this.#scan('count')) {
      // Issued together, so the driver pipelines them: one round trip per SCAN page.
      const expiries = await Promise.all(keys.map((key) => this.#call('count', ['HGET', key, EXPIRES_FIELD])));
      for (const expiry of expiries) if (expiry != null && Number(expiry) > now) live += 1;
    }
    return live;
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    for await (const keys of this.#scan('entries')) {
      const hashes = await Promise.all(keys.map((key) => this.#call('entries', ['HGETALL', key])));
      for (let i = 0; i < keys.length; i++) {
        const stored = decode(hashes[i] as string[]);
        if (stored !== undefined && stored.expiresAt > now) yield { sid: this.#sid(keys[i]), ...stored };
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deadlines.stop();
    const owned = this.#owned;
    if (owned === undefined || !owned.isOpen) return;
    // close() lets pending replies arrive; while disconnected there are none, and waiting would hang.
    if (owned.isReady) await owned.close().catch(() => owned.destroy());
    else owned.destroy();
  }

  #key(sid: string): string {
    return `${this.prefix}{${sid}}`;
  }

  #sid(key: string): string {
    return key.slice(this.prefix.length + 1, -1);
  }

  /**
   * SCAN pages of this prefix's keys. SCAN may repeat a key (while Redis resizes
   * its table), so seen keys are remembered: ids only, never sessions.
   */
  async *#scan(operation: string): AsyncGenerator<string[]> {
    const pattern = `${globEscape(this.prefix)}{*}`;
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const reply = (await this.#call(operation, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(SCAN_COUNT)])) as [string, string[]];
      cursor = String(reply[0]);
      const fresh = reply[1].filter((key) => !seen.has(key));
      for (const key of fresh) seen.add(key);
      if (fresh.length > 0) yield fresh;
    } while (cursor !== '0');
  }

  /** EVALSHA, falling back to EVAL once when the server has not cached the script (restart, SCRIPT FLUSH). */
  async #eval(operation: string, lua: RedisScript, key: string, args: string[]): Promise<unknown> {
    try {
      return await this.#call(operation, ['EVALSHA', lua.sha1, '1', key, ...args]);
    } catch (error) {
      const cause = error instanceof ProviderError ? error.cause : error;
      if (!String((cause as Error | undefined)?.message).startsWith('NOSCRIPT')) throw error;
      return this.#call(operation, ['EVAL', lua.source, '1', key, ...args]);
    }
  }

  /** One command, bounded by `timeoutMs`; every failure becomes a ProviderError. */
  async #call(operation: string, args: string[]): Promise<unknown> {
    if (this.#closed) throw new ProviderError(this.name, `${operation}: the provider is closed`);
    return this.#deadlines.run(operation, () => this.#send(args));
  }

  async #send(args: string[]): Promise<unknown> {
    if (!this.#connection.ready()) {
      const owned = this.#owned;
      if (owned === undefined) throw new Error('the client is not connected');
      // Our client: the first call waits for the first attempt (bounded by the
      // deadline in #call); when it failed, or after a later disconnect, calls fail
      // at once while node-redis keeps reconnecting in the background.
      this.#connecting ??= firstConnection(owned);
      await this.#connecting;
      if (!owned.isReady) throw new Error('not connected to Redis (reconnecting)');
    }
    return this.#connection.send(args);
  }
}

/** Starts connecting; settles on the first `ready` (resolves) or `error` (rejects). */
function firstConnection(client: OwnedClient): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onReady = (): void => {
      client.off('error', onError);
      resolve();
    };
    const onError = (error?: unknown): void => {
      client.off('ready', onReady);
      reject(error);
    };
    client.once('ready', onReady);
    client.once('error', onError);
    client.connect().catch(onError);
  });
}

function createOwnedClient(url: string, timeoutMs: number): OwnedClient {
  let redis: typeof import('redis');
  try {
    redis = require('redis');
  } catch (error) {
    throw new OptionError(`Cannot import \`redis\`: install it or pass \`client\` (${errorMessage(error)})`);
  }
  const client = redis.createClient({
    url,
    // Reject commands while reconnecting instead of queueing them forever.
    disableOfflineQueue: true,
    socket: { connectTimeout: timeoutMs },
  }) as unknown as OwnedClient;
  // node-redis emits 'error' on every failed (re)connect; unhandled, that would
  // crash the process. Failures reach callers as ProviderErrors instead.
  client.on('error', () => undefined);
  return client;
}

/** node-redis v5 (`sendCommand`, `isReady`) or ioredis (`call`, `status`). */
function adapt(client: NodeRedisClient | IORedisClient): Connection {
  const candidate = client as unknown as Record<string, unknown>;
  // Cluster clients route by key and SCAN one node at a time: count()/entries() would miss sessions.
  if (typeof candidate.nodeClient === 'function' || candidate.isCluster === true) {
    throw new OptionError('[redis] option client is invalid: Redis Cluster clients are not supported yet (the key layout is ready for them; see the docs)');
  }
  if (typeof candidate.sendCommand === 'function' && 'isReady' in candidate) {
    const redis = client as NodeRedisClient;
    return { send: (args) => redis.sendCommand(args), ready: () => redis.isReady };
  }
  if (typeof candidate.call === 'function' && typeof candidate.status === 'string') {
    const io = client as IORedisClient;
    return { send: (args) => io.call(args[0], args.slice(1)), ready: () => io.status === 'ready' };
  }
  throw new OptionError('[redis] option client is invalid: expected a connected node-redis v5 or ioredis client');
}

/** HGETALL's flat [field, value, …] reply → a session, or undefined for a missing key. */
function decode(flat: string[] | null | undefined): StoredSession | undefined {
  if (!Array.isArray(flat) || flat.length === 0) return undefined;
  const values = new Map<string, string>();
  let createdAt = NaN;
  let expiresAt = NaN;
  for (let i = 0; i < flat.length; i += 2) {
    const field = String(flat[i]);
    if (field.startsWith(VALUE_PREFIX)) values.set(field.slice(VALUE_PREFIX.length), String(flat[i + 1]));
    else if (field === CREATED_FIELD) createdAt = Number(flat[i + 1]);
    else if (field === EXPIRES_FIELD) expiresAt = Number(flat[i + 1]);
  }
  // A hash without our metadata is not a session of ours (a foreign key under the prefix).
  return Number.isFinite(createdAt) && Number.isFinite(expiresAt) ? { values, createdAt, expiresAt } : undefined;
}

/** Escapes SCAN MATCH glob characters, so a prefix like `a*` matches only itself. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
