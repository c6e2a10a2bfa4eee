import { errorMessage, OptionError, ProviderError } from '../errors';
import { USER_KEY, userFromJson, type Provider, type StoredEntry, type StoredSession } from './provider';
import { ClusterLayout } from './redis-cluster';
import { flag, gcReply, integer, moveReply, redactedError, scoredIds, sessionReply, strings, UnexpectedReply, type ScoredId } from './redis-replies';
import {
  changeArgs,
  CREATE_SCRIPT,
  DESTROY_SCRIPT,
  ENTRIES_PAGE_SCRIPT,
  expiriesKey,
  GC_SCRIPT,
  MOVE_SCRIPT,
  PRUNE_USER_SCRIPT,
  sessionKey,
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

/**
 * The node-redis v5/v6 Cluster surface the provider uses (what
 * `createCluster()` returns): commands routed by their first key.
 */
export interface NodeRedisCluster {
  readonly isOpen: boolean;
  sendCommand(firstKey: string, isReadonly: boolean, args: string[]): Promise<unknown>;
}

/** The ioredis v5/v6 `Cluster` surface the provider uses: `call` (routed by the command's keys) and `pipeline` (for WAIT). */
export interface IORedisCluster {
  readonly status: string;
  readonly isCluster: true;
  call(command: string, args: string[]): Promise<unknown>;
}

/**
 * The node-redis options of a Cluster the provider creates: `rootNodes` (at
 * least one `{ url }`), and any other `createCluster()` option (`defaults`
 * with credentials or TLS, `useReplicas`…), passed through.
 */
export interface RedisClusterOptions {
  rootNodes: { url: string }[];
  [option: string]: unknown;
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

/**
 * Options of the Redis provider. Give one of `url`, `cluster` or `client`.
 *
 * @example { url: 'redis://127.0.0.1:6379' }
 * @example { cluster: { rootNodes: [{ url: 'redis://10.0.0.1:7000' }, { url: 'redis://10.0.0.2:7000' }] }, waitReplicas: 1 }
 * @example { client: new IORedis.Cluster([{ host: '10.0.0.1', port: 7000 }]) }
 */
export interface RedisOptions {
  /** `redis[s]://[[user][:password]@]host[:port][/db]`; the provider creates, connects and closes its own `redis` (node-redis 5 or 6) client. */
  url?: string;
  /**
   * A Redis Cluster: the provider creates, connects and closes its own
   * node-redis (5 or 6) `createCluster(cluster)` client, set to fail fast
   * (no offline queue) and to refresh its map of slots when a node fails.
   * Needs Redis 6.2 or later. See "Redis Cluster" in docs/redis-drivers.md
   * for the key layout and what is atomic there.
   */
  cluster?: RedisClusterOptions;
  /**
   * A connected client the app owns: node-redis 5 or 6 (`createClient()` or
   * `createCluster()`) or ioredis 5 or 6 (`new Redis()` or `new Redis.Cluster()`).
   * `close()` leaves it open. A Cluster client switches to the Cluster layout.
   */
  client?: NodeRedisClient | IORedisClient | NodeRedisCluster | IORedisCluster;
  /**
   * Prepended to every key: one hash per session at `${prefix}{${sid}}`, and
   * the indexes: `${prefix}expiries` on one server, its shards
   * `${prefix}expiries:{0…15}:sids` on a Cluster, and `${prefix}user:{…}:sids`
   * (see docs/redis-drivers.md). Must not contain `{` or `}` (the braces
   * around the id are the Cluster hash tag).
   * @default 'sess:'
   */
  prefix?: string;
  /**
   * Replicas that must hold every write before it is acknowledged: after each
   * write (create, update, touch, regenerate, destroy) the provider sends
   * `WAIT waitReplicas waitTimeoutMs` to each node it wrote to, and rejects
   * with a `ProviderError` (503) when fewer replicas confirmed. Redis
   * replicates asynchronously: without it a master that crashes loses the
   * writes its replica had not received yet, acknowledged ones included.
   * While a master has fewer live replicas than this, every write to its
   * slots fails. `0` turns it off.
   * @default 0
   */
  waitReplicas?: number;
  /**
   * Milliseconds `WAIT` gives the replicas (see `waitReplicas`). Must be below `timeoutMs`.
   * @default 500
   */
  waitTimeoutMs?: number;
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
export const DEFAULT_REDIS_WAIT_TIMEOUT_MS = 500;
/** Sessions loaded at once by `entries()`. */
const PAGE_SIZE = 500;
/** Expired ids collected by one gc script: a few milliseconds of the server's time. */
const GC_BATCH = 500;
const OPTION_NAMES = new Set(['url', 'cluster', 'client', 'prefix', 'timeoutMs', 'waitReplicas', 'waitTimeoutMs']);
/** Least time between two refreshes of a Cluster client's map of slots asked for by failing calls. */
const REFRESH_INTERVAL_MS = 250;

/** The drivers reduced to what the provider needs: raw commands and a readiness check. */
interface Connection {
  /** Sends a command; on a Cluster, to the node serving `route` (a key of the command). */
  send(args: string[], route: string): Promise<unknown>;
  ready(): boolean;
  /** A Cluster client: the Cluster layout is used. */
  readonly cluster: boolean;
  /** `WAIT replicas timeoutMs` on the connection that served `route`, resolving how many replicas confirmed. */
  wait(route: string, replicas: number, timeoutMs: number): Promise<unknown>;
  /** Asks a Cluster client to reload its map of slots (a node failed: its replica may have taken over). */
  refresh?(): void;
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
 * On a Redis Cluster (option `cluster`, or a Cluster client) the same hashes
 * live in their own slots and every script touches one session alone; the
 * indexes (the expiry set, sharded, and the users' sets) are updated by
 * separate commands around it and converge (see `ClusterLayout`).
 *
 * Works with node-redis 5 and 6 and ioredis 5 and 6. Replies are checked, not
 * trusted: a reply of a shape the provider does not know (a driver mapping
 * replies differently) rejects with a `ProviderError`, never reads as "no
 * session". Driver errors are rebuilt before they are handed out, without
 * the keys and values of the failed command (ioredis attaches them).
 *
 * With `url` or `cluster` the provider owns a node-redis client configured to fail fast:
 * while Redis is unreachable every call rejects at once with a `ProviderError`
 * (no offline queue) and the client reconnects in the background.
 *
 * @example
 * sessions({ provider: 'redis', providerOptions: { url: process.env.REDIS_URL } })
 * @example
 * const client = await createClient({ url }).connect();
 * sessions({ provider: new RedisProvider({ client, prefix: 'myapp:sess:' }) })
 * @example
 * sessions({ provider: 'redis', providerOptions: { cluster: { rootNodes: [{ url: 'redis://10.0.0.1:7000' }] } } })
 */
export class RedisProvider implements Provider {
  readonly name = 'redis';
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  readonly #deadlines: Deadlines;
  readonly #connection: Connection;
  /** Set when the provider created the client: it connects and closes it. */
  readonly #owned: OwnedClient | undefined;
  readonly #ownedCluster: OwnedCluster | undefined;
  /** The first connection attempt of an owned client: settles on its first `ready` or `error`. */
  #connecting: Promise<void> | undefined;
  /** Set on a Cluster: the operations of the Cluster layout. */
  readonly #cluster: ClusterLayout | undefined;
  #lastRefresh = 0;
  /** Our Cluster has connected and knows its slots. */
  #discovered = false;
  #closed = false;

  constructor(options: RedisOptions = {}) {
    const { url, cluster, client, prefix, timeoutMs, waitReplicas, waitTimeoutMs } = checkOptions(options);
    this.prefix = prefix;
    this.timeoutMs = timeoutMs;
    this.waitReplicas = waitReplicas;
    this.waitTimeoutMs = waitTimeoutMs;
    this.#deadlines = new Deadlines(this.name, timeoutMs);
    if (client !== undefined) {
      this.#connection = adapt(client);
    } else if (cluster !== undefined) {
      this.#ownedCluster = createOwnedCluster(cluster, timeoutMs);
      this.#connection = nodeRedisCluster(this.#ownedCluster);
    } else {
      this.#owned = createOwnedClient(url!, timeoutMs);
      const owned = this.#owned;
      this.#connection = {
        send: (args) => owned.sendCommand(args),
        ready: () => owned.isReady,
        cluster: false,
        wait: (_route, replicas, ms) => owned.sendCommand(['WAIT', String(replicas), String(ms)]),
      };
    }
    if (this.#connection.cluster) {
      this.#cluster = new ClusterLayout(prefix, {
        eval: (operation, lua, key, args, parse) => this.#eval(operation, lua, [key], args, parse),
        call: (operation, args, parse) => this.#call(operation, args, parse),
        acknowledged: (operation, keys) => this.#acknowledged(operation, keys),
      });
    }
  }

  /** Whether the provider uses the Cluster layout (option `cluster`, or a Cluster client). */
  get isCluster(): boolean {
    return this.#cluster !== undefined;
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    if (this.#cluster) return this.#cluster.create(sid, values, createdAt, expiresAt);
    const keys = [this.#key(sid), this.#expiries];
    const user = userFromJson(values.get(USER_KEY));
    const hash = user === undefined ? '' : userHash(user);
    if (user !== undefined) keys.push(userKey(this.prefix, hash));
    const args = [this.prefix, sid, String(createdAt), String(expiresAt), hash];
    for (const [key, json] of values) args.push(VALUE_PREFIX + key, json);
    const created = (await this.#eval('create', CREATE_SCRIPT, keys, args, flag)) === 1;
    if (created) await this.#acknowledged('create', keys);
    return created;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    if (this.#cluster) return this.#cluster.read(sid);
    return this.#call('read', ['HGETALL', this.#key(sid)], sessionReply);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    if (this.#cluster) return this.#cluster.update(sid, changes, expiresAt, now);
    const user = userChange(this.prefix, changes);
    const keys = [this.#key(sid), this.#expiries, ...user.keys];
    const args = [this.prefix, sid, String(now), String(expiresAt), user.mode, user.hash, ...changeArgs(changes)];
    const updated = (await this.#eval('update', UPDATE_SCRIPT, keys, args, flag)) === 1;
    if (updated && this.waitReplicas > 0) await this.#acknowledged('update', keys); // no extra await on the hot path
    return updated;
  }

  /**
   * One Lua script on one server (see MOVE_SCRIPT): atomic. On a Cluster the
   * two ids live in different slots: see `ClusterLayout.move`.
   */
  async move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    if (this.#cluster) return this.#cluster.move(from, to, changes, createdAt, expiresAt, now);
    const user = userChange(this.prefix, changes);
    const keys = [this.#key(from), this.#key(to), this.#expiries, ...user.keys];
    const args = [this.prefix, from, to, String(now), String(createdAt), String(expiresAt), user.mode, user.hash, ...changeArgs(changes)];
    const moved = await this.#eval('move', MOVE_SCRIPT, keys, args, moveReply);
    if (moved instanceof Map) await this.#acknowledged('move', keys);
    return moved;
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    if (this.#cluster) return this.#cluster.touch(sid, expiresAt, now);
    const args = [this.prefix, sid, String(now), String(expiresAt), USER_KEEP, '', '0'];
    const keys = [this.#key(sid), this.#expiries];
    const touched = (await this.#eval('touch', UPDATE_SCRIPT, keys, args, flag)) === 1;
    if (touched && this.waitReplicas > 0) await this.#acknowledged('touch', keys); // no extra await on the hot path
    return touched;
  }

  async destroy(sid: string): Promise<void> {
    if (this.#cluster) return this.#cluster.destroy(sid);
    const keys = [this.#key(sid), this.#expiries];
    await this.#eval('destroy', DESTROY_SCRIPT, keys, [this.prefix, sid], integer);
    await this.#acknowledged('destroy', keys);
  }

  /**
   * Takes the ids due at `now` off the expiries index, in scripts of
   * {@link GC_BATCH}, deleting what Redis has not deleted yet (a `now` ahead
   * of the server's clock) and reporting each id once, even with several
   * processes collecting at the same time. Sessions Redis deleted at their TTL
   * are reported too: this is when their `expired` event fires. On a Cluster,
   * shard by shard (see `ClusterLayout.gc`).
   */
  async gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    if (this.#cluster) return this.#cluster.gc(now, onExpired);
    let collected = 0;
    for (;;) {
      const { looked, sids } = await this.#eval('gc', GC_SCRIPT, [this.#expiries], [this.prefix, String(now), String(GC_BATCH)], gcReply);
      collected += sids.length;
      if (onExpired !== undefined) for (const sid of sids) onExpired(sid);
      if (looked < GC_BATCH) return collected;
    }
  }

  /**
   * One `ZCOUNT` of the expiries index (on a Cluster, one per shard, in
   * parallel). A session written only by a version without the index is not
   * in it (not counted, listed or collected) until its next write.
   */
  async count(now: number): Promise<number> {
    if (this.#cluster) return this.#cluster.count(now);
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
    if (this.#cluster) {
      yield* this.#cluster.entries(now);
      return;
    }
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
    if (this.#cluster) return this.#cluster.listByUser(userId, now);
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
    const cluster = this.#ownedCluster;
    if (cluster !== undefined) {
      if (cluster.isOpen) await cluster.close().catch(() => cluster.destroy());
      return;
    }
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

  /**
   * With `waitReplicas`: `WAIT` on the node serving each key written (once per
   * key: keys of one slot share a node), rejecting with a ProviderError when
   * fewer replicas than asked confirmed within `waitTimeoutMs`.
   */
  async #acknowledged(operation: string, keys: string[]): Promise<void> {
    if (this.waitReplicas === 0) return;
    const routes = this.#connection.cluster ? [...new Set(keys)] : [keys[0]];
    const wanted = this.waitReplicas;
    await Promise.all(
      routes.map((route) =>
        this.#run(operation, [route], () => this.#connection.wait(route, wanted, this.waitTimeoutMs), (reply) => {
          const confirmed = integer(reply);
          if (confirmed < wanted) {
            throw new UnexpectedReply(`the write reached ${confirmed} of ${wanted} replicas within ${this.waitTimeoutMs} ms (WAIT): it may be lost if its master fails`);
          }
        }),
      ),
    );
  }

  /** EVALSHA, falling back to EVAL once when the server has not cached the script (restart, SCRIPT FLUSH). Routed by the first key. */
  #eval<T>(operation: string, lua: RedisScript, keys: string[], args: string[], parse: (reply: unknown) => T): Promise<T> {
    const tail = [String(keys.length), ...keys, ...args];
    const route = keys[0];
    const work = async (): Promise<unknown> => {
      try {
        return await this.#send(['EVALSHA', lua.sha1, ...tail], route);
      } catch (error) {
        if (!errorMessage(error).startsWith('NOSCRIPT')) throw error;
        return this.#send(['EVAL', lua.source, ...tail], route);
      }
    };
    return this.#run(operation, [...keys, ...args], work, parse);
  }

  /** One command, routed by its first argument; see #run. */
  #call<T>(operation: string, args: string[], parse: (reply: unknown) => T): Promise<T> {
    return this.#run(operation, args.slice(1), () => this.#send(args, args[1]), parse);
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
        this.#refresh(error);
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

  /**
   * On a Cluster, a failed call may mean a master died and its replica is
   * taking over: node-redis only reloads its map of slots on a MOVED reply,
   * which a dead node never sends, so the provider asks for a reload (at most
   * every {@link REFRESH_INTERVAL_MS}). Script errors need none.
   */
  #refresh(error: unknown): void {
    const refresh = this.#connection.refresh;
    if (refresh === undefined || /^(ERR|WRONGTYPE|NOSCRIPT)/.test(errorMessage(error))) return;
    const now = Date.now();
    if (now - this.#lastRefresh < REFRESH_INTERVAL_MS) return;
    this.#lastRefresh = now;
    refresh();
  }

  async #send(args: string[], route: string): Promise<unknown> {
    const cluster = this.#ownedCluster;
    if (cluster !== undefined && !this.#discovered) {
      // Our Cluster: the first call connects and discovers the slots (node-redis
      // says isOpen from the start of connect(), before it knows any slot); a
      // failed attempt is retried by the next call.
      this.#connecting ??= cluster.connect().then(
        () => {
          this.#discovered = true;
        },
        (error: unknown) => {
          this.#connecting = undefined;
          throw error;
        },
      );
      await this.#connecting;
    }
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
    return this.#connection.send(args, route);
  }
}

interface CheckedOptions {
  url?: string;
  cluster?: RedisClusterOptions;
  client?: RedisOptions['client'];
  prefix: string;
  timeoutMs: number;
  waitReplicas: number;
  waitTimeoutMs: number;
}

/** The checked options, with defaults. Throws an OptionError naming the first bad option. */
function checkOptions(options: RedisOptions): CheckedOptions {
  if (options === null || typeof options !== 'object') throw new OptionError('[redis] options must be an object with url or client');
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new OptionError(`[redis] unknown option ${name}`);
  }
  const {
    url,
    cluster,
    client,
    prefix = DEFAULT_REDIS_PREFIX,
    timeoutMs = DEFAULT_REDIS_TIMEOUT_MS,
    waitReplicas = 0,
    waitTimeoutMs = Math.min(DEFAULT_REDIS_WAIT_TIMEOUT_MS, Math.floor(timeoutMs / 2)),
  } = options;
  // A brace in the prefix would become the Cluster hash tag and put every session on one slot.
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) throw new OptionError(`[redis] option prefix is invalid: ${String(prefix)}`);
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new OptionError(`[redis] option timeoutMs is invalid: ${String(timeoutMs)}`);
  if (!Number.isSafeInteger(waitReplicas) || waitReplicas < 0) throw new OptionError(`[redis] option waitReplicas is invalid: ${String(waitReplicas)}`);
  if (!Number.isSafeInteger(waitTimeoutMs) || waitTimeoutMs < 1 || waitTimeoutMs >= timeoutMs) {
    throw new OptionError(`[redis] option waitTimeoutMs is invalid: ${String(waitTimeoutMs)} (a whole number of ms below timeoutMs)`);
  }
  const given = [url, cluster, client].filter((option) => option !== undefined).length;
  if (given > 1) throw new OptionError('[redis] give one of option url, option cluster or option client');
  if (given === 0) {
    throw new OptionError('[redis] give option url (a redis:// URL), cluster ({ rootNodes: [{ url }] }) or client (a connected redis or ioredis client)');
  }
  // The URL itself stays out of the message: it may hold a password.
  if (url !== undefined && !isRedisUrl(url)) throw new OptionError('[redis] option url is invalid: expected redis[s]://[[user][:password]@]host[:port][/db]');
  if (cluster !== undefined) checkCluster(cluster);
  return { url, cluster, client, prefix, timeoutMs, waitReplicas, waitTimeoutMs };
}

function checkCluster(cluster: unknown): void {
  const rootNodes = (cluster as { rootNodes?: unknown } | null)?.rootNodes;
  if (typeof cluster !== 'object' || !Array.isArray(rootNodes) || rootNodes.length === 0) {
    throw new OptionError('[redis] option cluster is invalid: expected { rootNodes: [{ url }, …] } with at least one node');
  }
  if (!rootNodes.every((node) => isRedisUrl((node as { url?: unknown } | null)?.url))) {
    throw new OptionError('[redis] option cluster.rootNodes is invalid: each node needs a url redis[s]://[[user][:password]@]host[:port]');
  }
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

/** `require('redis')` (whichever major is installed), or the OptionError that says to install it. */
function loadRedis(): typeof import('redis') {
  try {
    return require('redis');
  } catch (error) {
    throw new OptionError(`Cannot import \`redis\`: install it or pass \`client\` (${errorMessage(error)})`);
  }
}

/** A client of whichever `redis` major is installed (5 and 6 take the same options). */
function createOwnedClient(url: string, timeoutMs: number): OwnedClient {
  const redis = loadRedis();
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

/** A node-redis Cluster the provider created: it also connects and closes it. */
interface OwnedCluster extends NodeRedisCluster {
  connect(): Promise<unknown>;
  close(): Promise<void>;
  destroy(): void;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}

/** A node-redis Cluster (5 or 6) over `options`, its nodes failing fast (no offline queue) and connecting within `timeoutMs`. */
function createOwnedCluster(options: RedisClusterOptions, timeoutMs: number): OwnedCluster {
  const redis = loadRedis();
  const defaults = (options.defaults ?? {}) as { socket?: Record<string, unknown> };
  const cluster = redis.createCluster({
    ...options,
    defaults: {
      disableOfflineQueue: true,
      ...defaults,
      socket: { connectTimeout: timeoutMs, ...defaults.socket },
    },
  } as Parameters<typeof redis.createCluster>[0]) as unknown as OwnedCluster;
  // Discovery failures are emitted as 'error'; unhandled, that would crash the process.
  cluster.on('error', () => undefined);
  return cluster;
}

/** The internals of node-redis's Cluster used to reload its map of slots (`rediscover`). Absent: no reload. */
interface NodeRedisSlots {
  masters?: { client?: { isReady?: boolean; options?: unknown } }[];
  rediscover?(startWith: { options?: unknown }): Promise<void>;
}

/** A node-redis Cluster (5 or 6) as a Connection: commands routed by their key (`sendCommand(firstKey, false, args)`: masters only, read-your-writes). */
function nodeRedisCluster(cluster: NodeRedisCluster): Connection {
  const self = ((cluster as unknown as { _self?: unknown })._self ?? cluster) as { _slots?: NodeRedisSlots; _options?: { rootNodes?: unknown[] } };
  return {
    send: (args, route) => cluster.sendCommand(route, false, args),
    ready: () => cluster.isOpen,
    cluster: true,
    wait: (route, replicas, ms) => cluster.sendCommand(route, false, ['WAIT', String(replicas), String(ms)]),
    refresh: () => {
      const slots = self._slots;
      if (typeof slots?.rediscover !== 'function' || !cluster.isOpen) return;
      // Starts from a node that answers; rediscover falls back to the root nodes when that one fails.
      const live = slots.masters?.find((master) => master.client?.isReady === true)?.client;
      const startWith = live?.options !== undefined ? live : { options: self._options?.rootNodes?.[0] };
      slots.rediscover(startWith).catch(() => undefined);
    },
  };
}

/** The ioredis Cluster surface used for WAIT: a pipeline runs on the node of its first keyed command. */
interface IORedisPipelineClient {
  pipeline(): { call(command: string, ...args: string[]): unknown; exec(): Promise<[Error | null, unknown][] | null> };
}

/** node-redis 5/6 (`sendCommand`, `isReady`) or ioredis 5/6 (`call`, `status`), single server or Cluster. */
function adapt(client: NonNullable<RedisOptions['client']>): Connection {
  const candidate = client as unknown as Record<string, unknown>;
  if (candidate === null || typeof candidate !== 'object') throw new OptionError('[redis] option client is invalid: expected a connected node-redis or ioredis client');
  // ioredis prefixes the keys it sends but not the keys the scripts build (a user's set, sessions in gc).
  const ioOptions = candidate.options as { keyPrefix?: unknown; redisOptions?: { keyPrefix?: unknown } } | undefined;
  const keyPrefix = ioOptions?.keyPrefix ?? ioOptions?.redisOptions?.keyPrefix;
  if (typeof keyPrefix === 'string' && keyPrefix !== '') {
    throw new OptionError('[redis] option client is invalid: an ioredis client with keyPrefix (use the option prefix instead)');
  }
  // node-redis's Cluster: routed sendCommand(firstKey, isReadonly, args), and nodeClient().
  if (typeof candidate.nodeClient === 'function' && typeof candidate.sendCommand === 'function') return nodeRedisCluster(client as NodeRedisCluster);
  if (candidate.isCluster === true && typeof candidate.call === 'function' && typeof candidate.pipeline === 'function') {
    const io = client as IORedisCluster & IORedisPipelineClient & { refreshSlotsCache?(callback?: () => void): void };
    return {
      // ioredis routes by the keys it finds in the command (EVALSHA's numkeys included).
      send: (args) => io.call(args[0], args.slice(1)),
      ready: () => io.status === 'ready',
      cluster: true,
      wait: async (route, replicas, ms) => {
        // WAIT has no key, so a bare call goes to any node; in a pipeline it follows the keyed command to the node of `route`.
        const pipeline = io.pipeline();
        pipeline.call('EXISTS', route);
        pipeline.call('WAIT', String(replicas), String(ms));
        const results = await pipeline.exec();
        const failed = results?.find(([error]) => error !== null);
        if (failed) throw failed[0];
        return results?.[1]?.[1];
      },
    };
  }
  if (typeof candidate.sendCommand === 'function' && 'isReady' in candidate) {
    const redis = client as NodeRedisClient;
    return {
      send: (args) => redis.sendCommand(args),
      ready: () => redis.isReady,
      cluster: false,
      wait: (_route, replicas, ms) => redis.sendCommand(['WAIT', String(replicas), String(ms)]),
    };
  }
  if (typeof candidate.call === 'function' && typeof candidate.status === 'string') {
    const io = client as IORedisClient;
    return {
      send: (args) => io.call(args[0], args.slice(1)),
      ready: () => io.status === 'ready',
      cluster: false,
      wait: (_route, replicas, ms) => io.call('WAIT', [String(replicas), String(ms)]),
    };
  }
  throw new OptionError('[redis] option client is invalid: expected a connected node-redis or ioredis client');
}
