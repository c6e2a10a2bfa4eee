import { errorMessage, OptionError, ProviderError } from '../errors';
import type { Provider, StoredEntry, StoredSession } from './provider';
import {
  changeArgs,
  CREATE_SCRIPT,
  decodeSession,
  EXPIRES_FIELD,
  MOVE_FROM_GONE,
  MOVE_SCRIPT,
  MOVE_TO_TAKEN,
  timestamp,
  UPDATE_SCRIPT,
  VALUE_PREFIX,
  type RedisScript,
} from './redis-scripts';
import { Deadlines } from './with-timeout';

/**
 * The node-redis v5/v6 client surface the provider uses (what `createClient()`
 * returns). Structural, so the published types do not need `redis` installed.
 */
export interface NodeRedisClient {
  readonly isOpen: boolean;
  readonly isReady: boolean;
  sendCommand(args: string[]): Promise<unknown>;
}

/** The ioredis v5/v6 client surface the provider uses (`new Redis()`). */
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
  /** `redis[s]://[[user][:password]@]host[:port][/db]`; the provider creates, connects and closes its own `redis` (node-redis 5 or 6) client. */
  url?: string;
  /**
   * A connected client the app owns: node-redis 5 or 6 (`createClient()`) or
   * ioredis 5 or 6. `close()` leaves it open. Not a Cluster client.
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
const OPTION_NAMES = new Set(['url', 'client', 'prefix', 'timeoutMs']);

/** The drivers reduced to what the provider needs: raw commands and a readiness check. */
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
 * Works with node-redis 5 and 6 and ioredis 5 and 6. Replies are checked, not
 * trusted: a reply of a shape the provider does not know (a driver mapping
 * replies differently) rejects with a `ProviderError`, never reads as "no
 * session". Driver errors are rebuilt before they are handed out, without
 * the keys and values of the failed command (ioredis attaches them).
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
    const { url, client, prefix, timeoutMs } = checkOptions(options);
    this.prefix = prefix;
    this.timeoutMs = timeoutMs;
    this.#deadlines = new Deadlines(this.name, timeoutMs);
    if (client !== undefined) {
      this.#connection = adapt(client);
    } else {
      this.#owned = createOwnedClient(url!, timeoutMs);
      const owned = this.#owned;
      this.#connection = { send: (args) => owned.sendCommand(args), ready: () => owned.isReady };
    }
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    const args = [String(createdAt), String(expiresAt)];
    for (const [key, json] of values) args.push(VALUE_PREFIX + key, json);
    return (await this.#eval('create', CREATE_SCRIPT, [this.#key(sid)], args, flag)) === 1;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    return this.#call('read', ['HGETALL', this.#key(sid)], sessionReply);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    const args = [String(now), String(expiresAt), ...changeArgs(changes)];
    return (await this.#eval('update', UPDATE_SCRIPT, [this.#key(sid)], args, flag)) === 1;
  }

  /** One Lua script (see MOVE_SCRIPT): atomic on a single Redis server. */
  async move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    const args = [String(now), String(createdAt), String(expiresAt), ...changeArgs(changes)];
    return this.#eval('move', MOVE_SCRIPT, [this.#key(from), this.#key(to)], args, moveReply);
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    return (await this.#eval('touch', UPDATE_SCRIPT, [this.#key(sid)], [String(now), String(expiresAt), '0'], flag)) === 1;
  }

  async destroy(sid: string): Promise<void> {
    await this.#call('destroy', ['DEL', this.#key(sid)], integer);
  }

  /** Resolves 0: Redis deletes a session at its `expiresAt` by itself (`PEXPIREAT`). */
  async gc(_now: number, _onExpired?: (sid: string) => void): Promise<number> {
    return 0;
  }

  async count(now: number): Promise<number> {
    let live = 0;
    for await (const keys of this.#scan('count')) {
      // Issued together, so the driver pipelines them: one round trip per SCAN page.
      const expiries = await Promise.all(keys.map((key) => this.#call('count', ['HGET', key, EXPIRES_FIELD], expiryReply)));
      // undefined: the key went away since SCAN saw it.
      for (const expiry of expiries) if (expiry !== undefined && expiry > now) live += 1;
    }
    return live;
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    for await (const keys of this.#scan('entries')) {
      const sessions = await Promise.all(keys.map((key) => this.#call('entries', ['HGETALL', key], sessionReply)));
      for (let i = 0; i < keys.length; i++) {
        const stored = sessions[i];
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
      const page = await this.#call(operation, ['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(SCAN_COUNT)], scanReply);
      cursor = page.cursor;
      const fresh = page.keys.filter((key) => !seen.has(key));
      for (const key of fresh) seen.add(key);
      if (fresh.length > 0) yield fresh;
    } while (cursor !== '0');
  }

  /** EVALSHA, falling back to EVAL once when the server has not cached the script (restart, SCRIPT FLUSH). */
  #eval<T>(operation: string, lua: RedisScript, keys: string[], args: string[], parse: (reply: unknown) => T): Promise<T> {
    const tail = [String(keys.length), ...keys, ...args];
    const work = async (): Promise<unknown> => {
      try {
        return await this.#send(['EVALSHA', lua.sha1, ...tail]);
      } catch (error) {
        if (!errorMessage(error).startsWith('NOSCRIPT')) throw error;
        return this.#send(['EVAL', lua.source, ...tail]);
      }
    };
    return this.#run(operation, [...keys, ...args], work, parse);
  }

  /** One command; see #run. */
  #call<T>(operation: string, args: string[], parse: (reply: unknown) => T): Promise<T> {
    return this.#run(operation, args.slice(1), () => this.#send(args), parse);
  }

  /**
   * Runs `work` bounded by `timeoutMs` and parses its reply. Every failure
   * becomes a ProviderError: a driver error rebuilt without `secrets` (the
   * command's keys and values), a reply `parse` does not understand, a timeout.
   */
  async #run<T>(operation: string, secrets: string[], work: () => Promise<unknown>, parse: (reply: unknown) => T): Promise<T> {
    if (this.#closed) throw new ProviderError(this.name, `${operation}: the provider is closed`);
    return this.#deadlines.run(operation, async () => {
      let reply: unknown;
      try {
        reply = await work();
      } catch (error) {
        const cause = redactedError(error, secrets);
        throw new ProviderError(this.name, `${operation} failed: ${cause.message}`, cause);
      }
      try {
        return parse(reply);
      } catch (error) {
        if (!(error instanceof UnexpectedReply)) throw error;
        throw new ProviderError(this.name, `${operation}: ${error.message}`);
      }
    });
  }

  async #send(args: string[]): Promise<unknown> {
    if (!this.#connection.ready()) {
      const owned = this.#owned;
      if (owned === undefined) throw new Error('the client is not connected');
      // Our client: the first call waits for the first attempt (bounded by the
      // deadline in #run); when it failed, or after a later disconnect, calls fail
      // at once while node-redis keeps reconnecting in the background.
      this.#connecting ??= firstConnection(owned);
      await this.#connecting;
      if (!owned.isReady) throw new Error('not connected to Redis (reconnecting)');
    }
    return this.#connection.send(args);
  }
}

/** The checked options, with defaults. Throws an OptionError naming the first bad option. */
function checkOptions(options: RedisOptions): { url?: string; client?: RedisOptions['client']; prefix: string; timeoutMs: number } {
  if (options === null || typeof options !== 'object') throw new OptionError('[redis] options must be an object with url or client');
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new OptionError(`[redis] unknown option ${name}`);
  }
  const { url, client, prefix = DEFAULT_REDIS_PREFIX, timeoutMs = DEFAULT_REDIS_TIMEOUT_MS } = options;
  // A brace in the prefix would become the Cluster hash tag and put every session on one slot.
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) throw new OptionError(`[redis] option prefix is invalid: ${String(prefix)}`);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new OptionError(`[redis] option timeoutMs is invalid: ${String(timeoutMs)}`);
  if (url !== undefined && client !== undefined) throw new OptionError('[redis] give option url or option client, not both');
  if (url === undefined && client === undefined) {
    throw new OptionError('[redis] give option url (a redis:// URL) or client (a connected redis or ioredis client)');
  }
  // The URL itself stays out of the message: it may hold a password.
  if (url !== undefined && !isRedisUrl(url)) throw new OptionError('[redis] option url is invalid: expected redis[s]://[[user][:password]@]host[:port][/db]');
  return { url, client, prefix, timeoutMs };
}

function isRedisUrl(url: unknown): boolean {
  if (typeof url !== 'string') return false;
  try {
    const { protocol } = new URL(url);
    return protocol === 'redis:' || protocol === 'rediss:';
  } catch {
    return false;
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

/** A client of whichever `redis` major is installed (5 and 6 take the same options). */
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

/** node-redis 5/6 (`sendCommand`, `isReady`) or ioredis 5/6 (`call`, `status`). */
function adapt(client: NodeRedisClient | IORedisClient): Connection {
  const candidate = client as unknown as Record<string, unknown>;
  if (candidate === null || typeof candidate !== 'object') throw new OptionError('[redis] option client is invalid: expected a connected node-redis or ioredis client');
  // Cluster clients route by key and SCAN one node at a time: count()/entries() would
  // miss sessions, and move() spans two slots.
  if (typeof candidate.nodeClient === 'function' || candidate.isCluster === true) {
    throw new OptionError('[redis] option client is invalid: Redis Cluster clients are not supported');
  }
  if (typeof candidate.sendCommand === 'function' && 'isReady' in candidate) {
    const redis = client as NodeRedisClient;
    return { send: (args) => redis.sendCommand(args), ready: () => redis.isReady };
  }
  if (typeof candidate.call === 'function' && typeof candidate.status === 'string') {
    // ioredis prefixes the keys of commands but not SCAN's MATCH, so count()/entries() would break.
    const keyPrefix = (candidate.options as { keyPrefix?: unknown } | undefined)?.keyPrefix;
    if (typeof keyPrefix === 'string' && keyPrefix !== '') {
      throw new OptionError('[redis] option client is invalid: an ioredis client with keyPrefix (use the option prefix instead)');
    }
    const io = client as IORedisClient;
    return { send: (args) => io.call(args[0], args.slice(1)), ready: () => io.status === 'ready' };
  }
  throw new OptionError('[redis] option client is invalid: expected a connected node-redis or ioredis client');
}

/** Escapes SCAN MATCH glob characters, so a prefix like `a*` matches only itself. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

// ---- Replies -------------------------------------------------------------
// Drivers differ in what a raw command resolves: node-redis 6 (RESP3 by default)
// answers HGETALL with an object, node-redis 5 and ioredis with a flat array,
// a client with a type mapping with a Map or Buffers. The parsers accept those
// shapes and throw UnexpectedReply for anything else. Their messages name the
// shape only, never the content (it holds session data).

/** A reply the provider does not understand. */
class UnexpectedReply extends Error {}

/** An UnexpectedReply for a reply of the wrong shape, the likely cause: a client that maps replies its own way. */
function wrongShape(expected: string, reply: unknown): UnexpectedReply {
  return new UnexpectedReply(`expected ${expected}, got ${shape(reply)} (does the client map replies differently?)`);
}

function shape(reply: unknown): string {
  if (reply === null) return 'null';
  if (Array.isArray(reply)) return `an array of ${reply.length}`;
  return typeof reply === 'object' ? `a ${reply.constructor?.name ?? 'null-prototype object'}` : `a ${typeof reply}`;
}

/** A bulk string: a string, or a Buffer when the client maps strings to Buffers. */
function text(reply: unknown): string {
  if (typeof reply === 'string') return reply;
  // Not `instanceof`: a Buffer of another realm (vm contexts, jest) fails that test.
  if (ArrayBuffer.isView(reply)) return Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength).toString('utf8');
  throw wrongShape('a string reply', reply);
}

function integer(reply: unknown): number {
  let value: number | undefined;
  if (typeof reply === 'number' || typeof reply === 'bigint') value = Number(reply);
  else if (typeof reply === 'string' || ArrayBuffer.isView(reply)) value = timestamp(text(reply));
  if (value === undefined || !Number.isSafeInteger(value)) throw wrongShape('an integer reply', reply);
  return value;
}

/** The 0/1 answer of CREATE_SCRIPT and UPDATE_SCRIPT. */
function flag(reply: unknown): 0 | 1 {
  const value = integer(reply);
  if (value !== 0 && value !== 1) throw new UnexpectedReply('expected 0 or 1 from the script');
  return value;
}

/** A hash (HGETALL): a flat [field, value, …] array (RESP2), or an object or Map (RESP3). */
function hashFields(reply: unknown): [string, string][] {
  const fields: [string, string][] = [];
  if (Array.isArray(reply)) {
    if (reply.length % 2 !== 0) throw wrongShape('field/value pairs', reply);
    for (let i = 0; i < reply.length; i += 2) fields.push([text(reply[i]), text(reply[i + 1])]);
  } else if (Object.prototype.toString.call(reply) === '[object Map]') {
    for (const [field, value] of reply as Map<unknown, unknown>) fields.push([text(field), text(value)]);
  } else if (isPlainObject(reply)) {
    for (const [field, value] of Object.entries(reply)) fields.push([field, text(value)]);
  } else {
    throw wrongShape('a hash', reply);
  }
  return fields;
}

/** `{}` or `Object.create(null)`, of any realm: not a Map, Buffer or class instance. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** HGETALL of a session key: undefined when the key does not exist (or expired). */
function sessionReply(reply: unknown): StoredSession | undefined {
  const fields = hashFields(reply);
  if (fields.length === 0) return undefined;
  const stored = decodeSession(fields);
  // Not "no session": a hash under our prefix without our metadata means another app shares the prefix, or corruption.
  if (stored === undefined) throw new UnexpectedReply('the hash at this key is not a session (no valid m:c/m:e fields)');
  return stored;
}

/** HGET of `m:e`: the expiry, or undefined when the key is gone. */
function expiryReply(reply: unknown): number | undefined {
  if (reply === null || reply === undefined) return undefined;
  const expiry = timestamp(text(reply));
  if (expiry === undefined) throw new UnexpectedReply('the m:e field is not a timestamp');
  return expiry;
}

function scanReply(reply: unknown): { cursor: string; keys: string[] } {
  if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1])) throw wrongShape('[cursor, keys] from SCAN', reply);
  return { cursor: text(reply[0]), keys: reply[1].map(text) };
}

function moveReply(reply: unknown): Map<string, string> | undefined | false {
  if (!Array.isArray(reply)) {
    const code = integer(reply);
    if (code === MOVE_FROM_GONE) return undefined;
    if (code === MOVE_TO_TAKEN) return false;
    throw new UnexpectedReply('unknown answer code from the move script');
  }
  const stored = decodeSession(hashFields(reply));
  if (stored === undefined) throw new UnexpectedReply('the moved hash is not a session');
  return stored.values;
}

// ---- Errors --------------------------------------------------------------

/** Longest driver message kept: enough to diagnose, too short to carry a session. */
const MAX_MESSAGE = 300;
/**
 * Shorter arguments are left in messages: they cannot be told apart from the
 * message's own text ('1' in "@user_script:1"), and no key or id is that short.
 */
const MIN_REDACTED = 3;

/**
 * A driver's error rebuilt for handing out: its `name`, its `code` and its
 * message with every occurrence of `secrets` (the command's keys, fields and
 * values) replaced by `…`, and every quoted span blanked (Redis quotes the
 * arguments it echoes, cut to 128 characters, so they no longer match a
 * secret whole). Nothing else is kept: ioredis attaches the command with its
 * arguments (`command.args`) and earlier errors (`previousErrors`), and the
 * original stack repeats the message.
 */
function redactedError(error: unknown, secrets: string[]): Error {
  let message = errorMessage(error);
  // Longest first, so a value inside a longer key is not half-replaced.
  for (const secret of [...new Set(secrets)].filter((s) => s.length >= MIN_REDACTED).sort((a, b) => b.length - a.length)) {
    message = message.split(secret).join('…');
  }
  message = message.replace(/'[^']*(?:'|$)/g, "'…'").replace(/"[^"]*(?:"|$)/g, '"…"');
  const redacted = new Error(message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message);
  const { name, code } = (typeof error === 'object' && error !== null ? error : {}) as { name?: unknown; code?: unknown };
  if (typeof name === 'string' && /^\w{1,64}$/.test(name)) redacted.name = name;
  // Codes are fixed identifiers ('ECONNREFUSED', 'ERR_…'), never data.
  if ((typeof code === 'string' && /^[\w.-]{1,64}$/.test(code)) || typeof code === 'number') Object.assign(redacted, { code });
  return redacted;
}
