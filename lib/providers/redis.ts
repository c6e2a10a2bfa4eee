import { errorMessage, OptionError, ProviderError } from '../errors';
import { USER_KEY, userFromJson, type Provider, type StoredEntry, type StoredSession } from './provider';
import {
  changeArgs,
  CREATE_SCRIPT,
  decodeSession,
  DESTROY_SCRIPT,
  ENTRIES_PAGE_SCRIPT,
  expiriesKey,
  GC_SCRIPT,
  MOVE_FROM_GONE,
  MOVE_SCRIPT,
  MOVE_TO_TAKEN,
  PRUNE_USER_SCRIPT,
  sessionKey,
  timestamp,
  UPDATE_SCRIPT,
  USER_KEEP,
  userChange,
  userHash,
  userKey,
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
   * Prepended to every key: one hash per session at `${prefix}{${sid}}`, and
   * the indexes `${prefix}expiries` and `${prefix}user:{…}:sids` (see docs/redis-drivers.md).
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
/** Sessions loaded at once by `entries()`. */
const PAGE_SIZE = 500;
/** Expired ids collected by one gc script: a few milliseconds of the server's time. */
const GC_BATCH = 500;
const OPTION_NAMES = new Set(['url', 'client', 'prefix', 'timeoutMs']);

/** The drivers reduced to what the provider needs: raw commands and a readiness check. */
interface Connection {
  send(args: string[]): Promise<unknown>;
  ready(): boolean;
}

/**
 * Sessions in Redis (or Valkey/KeyDB), shared by every process that points at
 * the same server. One hash per session; Redis's own TTL (`PEXPIREAT`) deletes
 * expired sessions. Two indexes are kept in the same Lua script as every write
 * (one round trip, atomic): a sorted set of every session's expiry, which
 * answers `count()` (one `ZCOUNT`), pages `entries()` and lets `gc()` report
 * each expired id (and drop it from the indexes); and one sorted set per user,
 * which answers `listByUser()`. Never `SCAN` or `KEYS`.
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
    const keys = [this.#key(sid), this.#expiries];
    const user = userFromJson(values.get(USER_KEY));
    const hash = user === undefined ? '' : userHash(user);
    if (user !== undefined) keys.push(userKey(this.prefix, hash));
    const args = [this.prefix, sid, String(createdAt), String(expiresAt), hash];
    for (const [key, json] of values) args.push(VALUE_PREFIX + key, json);
    return (await this.#eval('create', CREATE_SCRIPT, keys, args, flag)) === 1;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    return this.#call('read', ['HGETALL', this.#key(sid)], sessionReply);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    const user = userChange(this.prefix, changes);
    const keys = [this.#key(sid), this.#expiries, ...user.keys];
    const args = [this.prefix, sid, String(now), String(expiresAt), user.mode, user.hash, ...changeArgs(changes)];
    return (await this.#eval('update', UPDATE_SCRIPT, keys, args, flag)) === 1;
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
    const user = userChange(this.prefix, changes);
    const keys = [this.#key(from), this.#key(to), this.#expiries, ...user.keys];
    const args = [this.prefix, from, to, String(now), String(createdAt), String(expiresAt), user.mode, user.hash, ...changeArgs(changes)];
    return this.#eval('move', MOVE_SCRIPT, keys, args, moveReply);
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    const args = [this.prefix, sid, String(now), String(expiresAt), USER_KEEP, '', '0'];
    return (await this.#eval('touch', UPDATE_SCRIPT, [this.#key(sid), this.#expiries], args, flag)) === 1;
  }

  async destroy(sid: string): Promise<void> {
    await this.#eval('destroy', DESTROY_SCRIPT, [this.#key(sid), this.#expiries], [this.prefix, sid], integer);
  }

  /**
   * Takes the ids due at `now` off the expiries index, in scripts of
   * {@link GC_BATCH}, deleting what Redis has not deleted yet (a `now` ahead
   * of the server's clock) and reporting each id once, even with several
   * processes collecting at the same time. Sessions Redis deleted at their TTL
   * are reported too: this is when their `expired` event fires.
   */
  async gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    let collected = 0;
    for (;;) {
      const { looked, sids } = await this.#eval('gc', GC_SCRIPT, [this.#expiries], [this.prefix, String(now), String(GC_BATCH)], gcReply);
      collected += sids.length;
      if (onExpired !== undefined) for (const sid of sids) onExpired(sid);
      if (looked < GC_BATCH) return collected;
    }
  }

  /**
   * One `ZCOUNT` of the expiries index. A session written only by a version
   * without the index is not in it (not counted, listed or collected) until
   * its next write.
   */
  async count(now: number): Promise<number> {
    return this.#call('count', ['ZCOUNT', this.#expiries, `(${now}`, '+inf'], integer);
  }

  /**
   * Pages of the expiries index in (expiry, id) order from a cursor (one
   * script), each session then read with `HGETALL` (issued together, so the
   * driver pipelines them): two round trips per {@link PAGE_SIZE} sessions.
   * A touch during the walk moves a session ahead, where the walk may meet it
   * again, so the ids listed are remembered (ids only, never sessions) and
   * each session is listed once.
   */
  async *entries(now: number): AsyncIterable<StoredEntry> {
    const listed = new Set<string>();
    let cursor: ScoredId | undefined;
    for (;;) {
      const args = [String(now), cursor?.score ?? '', cursor?.sid ?? '', String(PAGE_SIZE)];
      const page = await this.#eval('entries', ENTRIES_PAGE_SCRIPT, [this.#expiries], args, scoredIds);
      const fresh = page.filter(({ sid }) => !listed.has(sid));
      const sessions = await Promise.all(fresh.map(({ sid }) => this.#call('entries', ['HGETALL', this.#key(sid)], sessionReply)));
      for (const [i, { sid }] of fresh.entries()) {
        const stored = sessions[i];
        if (stored === undefined || stored.expiresAt <= now) continue;
        listed.add(sid);
        yield { sid, ...stored };
      }
      if (page.length < PAGE_SIZE) return;
      cursor = page[page.length - 1];
    }
  }

  /**
   * `ZRANGEBYSCORE` of the user's set (ids due after `now`), then `HGETALL` of
   * each, pipelined: two round trips. A session is returned only if it is live
   * at `now` and its stored user key still names `userId`; ids whose hash is
   * gone or names someone else are dropped from the set (a third round trip,
   * only when there are any).
   */
  async listByUser(userId: string, now: number): Promise<StoredEntry[]> {
    const hash = userHash(userId);
    const key = userKey(this.prefix, hash);
    const sids = await this.#call('listByUser', ['ZRANGEBYSCORE', key, `(${now}`, '+inf'], strings);
    const sessions = await Promise.all(sids.map((sid) => this.#call('listByUser', ['HGETALL', this.#key(sid)], sessionReply)));
    const found: StoredEntry[] = [];
    const stale: string[] = [];
    for (const [i, sid] of sids.entries()) {
      const stored = sessions[i];
      if (stored === undefined || userFromJson(stored.values.get(USER_KEY)) !== userId) stale.push(sid);
      else if (stored.expiresAt > now) found.push({ sid, ...stored });
    }
    if (stale.length > 0) {
      await this.#eval('listByUser', PRUNE_USER_SCRIPT, [key, ...stale.map((sid) => this.#key(sid))], [hash, ...stale], integer);
    }
    return found;
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
    return sessionKey(this.prefix, sid);
  }

  get #expiries(): string {
    return expiriesKey(this.prefix);
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
  // Cluster clients route by key: the scripts touch a session and index keys of
  // other slots (expiries, a user's set), and move() spans two slots.
  if (typeof candidate.nodeClient === 'function' || candidate.isCluster === true) {
    throw new OptionError('[redis] option client is invalid: Redis Cluster clients are not supported');
  }
  if (typeof candidate.sendCommand === 'function' && 'isReady' in candidate) {
    const redis = client as NodeRedisClient;
    return { send: (args) => redis.sendCommand(args), ready: () => redis.isReady };
  }
  if (typeof candidate.call === 'function' && typeof candidate.status === 'string') {
    // ioredis prefixes the keys it sends but not the keys the scripts build (a user's set, sessions in gc).
    const keyPrefix = (candidate.options as { keyPrefix?: unknown } | undefined)?.keyPrefix;
    if (typeof keyPrefix === 'string' && keyPrefix !== '') {
      throw new OptionError('[redis] option client is invalid: an ioredis client with keyPrefix (use the option prefix instead)');
    }
    const io = client as IORedisClient;
    return { send: (args) => io.call(args[0], args.slice(1)), ready: () => io.status === 'ready' };
  }
  throw new OptionError('[redis] option client is invalid: expected a connected node-redis or ioredis client');
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

/** A list of strings (ZRANGEBYSCORE). */
function strings(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw wrongShape('a list', reply);
  return reply.map(text);
}

/** A member of the expiries index with its score, as the server wrote it (the next page's cursor). */
interface ScoredId {
  sid: string;
  score: string;
}

/** ENTRIES_PAGE_SCRIPT's flat [id, score, …] list. */
function scoredIds(reply: unknown): ScoredId[] {
  const list = strings(reply);
  if (list.length % 2 !== 0) throw wrongShape('id/score pairs', reply);
  const page: ScoredId[] = [];
  for (let i = 0; i < list.length; i += 2) {
    if (timestamp(list[i + 1]) === undefined) throw new UnexpectedReply('a score of the expiries index is not a timestamp');
    page.push({ sid: list[i], score: list[i + 1] });
  }
  return page;
}

/** GC_SCRIPT's { how many it looked at, the collected ids… }. */
function gcReply(reply: unknown): { looked: number; sids: string[] } {
  if (!Array.isArray(reply) || reply.length === 0) throw wrongShape('a count and ids from the gc script', reply);
  return { looked: integer(reply[0]), sids: reply.slice(1).map(text) };
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
