import { USER_KEY, userFromJson, type StoredEntry, type StoredSession } from './provider';
import {
  DESTROY_ONE_SCRIPT,
  DROP_DUE_SCRIPT,
  EXPIRY_SHARDS,
  expiryShard,
  expiryShardKey,
  GC_ONE_SCRIPT,
  INDEX_USER_SCRIPT,
  metaFields,
  PUT_SCRIPT,
  TAKE_SCRIPT,
  UPDATE_ONE_SCRIPT,
} from './redis-cluster-scripts';
import { flag, hashFields, integer, scoredIds, sessionReply, strings, text, UnexpectedReply, wrongShape, type ScoredId } from './redis-replies';
import {
  changeArgs,
  decodeSession,
  ENTRIES_PAGE_SCRIPT,
  EXPIRES_FIELD,
  sessionKey,
  USER_BIND,
  USER_FIELD,
  USER_KEEP,
  USER_UNBIND,
  userChange,
  userHash,
  userKey,
  VALUE_PREFIX,
  type RedisScript,
} from './redis-scripts';

/** How the Cluster layout reaches Redis: each call routed by its (first) key, bounded and turned into ProviderErrors by the provider. */
export interface ClusterCommands {
  /** EVALSHA (EVAL on NOSCRIPT) of a one-key script, routed by `key`. */
  eval<T>(operation: string, script: RedisScript, key: string, args: string[], parse: (reply: unknown) => T): Promise<T>;
  /** One command, routed by its first argument (`args[1]`). */
  call<T>(operation: string, args: string[], parse: (reply: unknown) => T): Promise<T>;
  /** Resolves once the writes so far to the nodes serving `keys` reached the replicas asked for (`waitReplicas`); a no-op without it. */
  acknowledged(operation: string, keys: string[]): Promise<void>;
}

/** Sessions loaded at once by `entries()`; ids of one shard collected by one gc round. */
const PAGE_SIZE = 500;
const GC_BATCH = 500;

/**
 * The Redis provider's operations on a Cluster (see redis-cluster-scripts.ts
 * for the layout). What must be atomic is: every script touches the session's
 * hash alone, in its own slot. The indexes (the expiry shards, the users'
 * sets) are separate commands, ordered so that they converge and never hide
 * a live session from a reader that checks its hash:
 *
 * - a user's set gets an id *before* the hash names that user (create, bind,
 *   the new id of a move), and loses it *after* the hash stops naming it;
 * - an expiry shard gets an id *after* the hash exists and is re-scored after
 *   every write, so an id in a shard without a hash is a dead session, which
 *   readers prune when they meet it;
 * - readers check every id against its hash: `entries()` and `listByUser()`
 *   never return a session that is gone or expired.
 */
export class ClusterLayout {
  readonly #shards: string[];

  constructor(
    readonly prefix: string,
    readonly commands: ClusterCommands,
  ) {
    this.#shards = Array.from({ length: EXPIRY_SHARDS }, (_, n) => expiryShardKey(prefix, n));
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    const { commands } = this;
    const key = this.#key(sid);
    const user = userFromJson(values.get(USER_KEY));
    const hash = user === undefined ? undefined : userHash(user);
    const fields = metaFields(createdAt, expiresAt);
    if (hash !== undefined) fields.push([USER_FIELD, hash]);
    for (const [name, json] of values) fields.push([VALUE_PREFIX + name, json]);
    // The user's set first: from the moment the hash names the user, the set lists it.
    if (hash !== undefined) await this.#indexUser('create', hash, sid, expiresAt);
    const stored = (await commands.eval('create', PUT_SCRIPT, key, [String(expiresAt), ...fields.flat()], flag)) === 1;
    if (!stored) return false;
    const shard = this.#shard(sid);
    await commands.call('create', ['ZADD', shard, String(expiresAt), sid], integer);
    await commands.acknowledged('create', hash === undefined ? [key, shard] : [key, shard, userKey(this.prefix, hash)]);
    return true;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    return this.commands.call('read', ['HGETALL', this.#key(sid)], sessionReply);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number, operation = 'update'): Promise<boolean> {
    const { commands } = this;
    const key = this.#key(sid);
    const user = userChange(this.prefix, changes);
    if (user.mode === USER_BIND) await this.#indexUser(operation, user.hash, sid, expiresAt);
    const args = [String(now), String(expiresAt), user.mode, user.hash, ...changeArgs(changes)];
    const old = await commands.eval(operation, UPDATE_ONE_SCRIPT, key, args, updateReply);
    if (old === undefined) return false;
    const shard = this.#shard(sid);
    const written = [key, shard];
    const steps: Promise<unknown>[] = [commands.call(operation, ['ZADD', shard, String(expiresAt), sid], integer)];
    if (user.mode === USER_KEEP && old !== '') {
      // Keeps the user's set (and its TTL) ahead of the session.
      steps.push(this.#indexUser(operation, old, sid, expiresAt));
      written.push(userKey(this.prefix, old));
    } else if (old !== '' && (user.mode === USER_UNBIND || old !== user.hash)) {
      steps.push(commands.call(operation, ['ZREM', userKey(this.prefix, old), sid], integer));
      written.push(userKey(this.prefix, old));
    }
    if (user.mode === USER_BIND) written.push(userKey(this.prefix, user.hash));
    await Promise.all(steps);
    await commands.acknowledged(operation, written);
    return true;
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    return this.update(sid, new Map(), expiresAt, now, 'touch');
  }

  /**
   * Two slots, so two steps: `from` is taken (read and deleted in one
   * script: an update of it either lands before and is carried, or finds
   * nothing), then `to` is stored if free. When storing `to` fails, `from`
   * is put back as it was (best effort: if that fails too, the session is
   * gone, never duplicated).
   */
  async move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    const { commands } = this;
    const [fromKey, toKey] = [this.#key(from), this.#key(to)];
    if ((await commands.call('move', ['EXISTS', toKey], integer)) === 1) return false;
    const taken = await commands.eval('move', TAKE_SCRIPT, fromKey, [String(now)], takeReply);
    if (taken === undefined) return undefined;
    const fields = new Map(taken);
    const old = fields.get(USER_FIELD);
    for (const [name, json] of changes) {
      if (json === undefined) fields.delete(VALUE_PREFIX + name);
      else fields.set(VALUE_PREFIX + name, json);
    }
    for (const [field, value] of metaFields(createdAt, expiresAt)) fields.set(field, value);
    const user = userChange(this.prefix, changes);
    if (user.mode === USER_BIND) fields.set(USER_FIELD, user.hash);
    else if (user.mode === USER_UNBIND) fields.delete(USER_FIELD);
    const next = fields.get(USER_FIELD);
    const putBack = async (): Promise<void> => {
      const expiry = taken.find(([field]) => field === EXPIRES_FIELD)![1];
      // A listByUser() meanwhile may have pruned `from` (its hash was gone): index it again first.
      if (old !== undefined) await this.#indexUser('move', old, from, Number(expiry));
      await commands.eval('move', PUT_SCRIPT, fromKey, [expiry, ...taken.flat()], flag);
    };
    let stored: boolean;
    try {
      if (next !== undefined) await this.#indexUser('move', next, to, expiresAt);
      stored = (await commands.eval('move', PUT_SCRIPT, toKey, [String(expiresAt), ...[...fields].flat()], flag)) === 1;
    } catch (error) {
      await putBack().catch(() => undefined);
      throw error;
    }
    if (!stored) {
      await putBack();
      return false;
    }
    const written = [toKey, fromKey, this.#shard(to), this.#shard(from)];
    const steps: Promise<unknown>[] = [
      commands.call('move', ['ZADD', this.#shard(to), String(expiresAt), to], integer),
      commands.call('move', ['ZREM', this.#shard(from), from], integer),
    ];
    if (old !== undefined) {
      steps.push(commands.call('move', ['ZREM', userKey(this.prefix, old), from], integer));
      written.push(userKey(this.prefix, old));
    }
    if (next !== undefined) written.push(userKey(this.prefix, next));
    await Promise.all(steps);
    await commands.acknowledged('move', written);
    const values = decodeSession(fields);
    if (values === undefined) throw new UnexpectedReply('the moved hash is not a session');
    return values.values;
  }

  async destroy(sid: string): Promise<void> {
    const { commands } = this;
    const key = this.#key(sid);
    const old = await commands.eval('destroy', DESTROY_ONE_SCRIPT, key, [], text);
    const shard = this.#shard(sid);
    const steps: Promise<unknown>[] = [commands.call('destroy', ['ZREM', shard, sid], integer)];
    if (old !== '') steps.push(commands.call('destroy', ['ZREM', userKey(this.prefix, old), sid], integer));
    await Promise.all(steps);
    await commands.acknowledged('destroy', old === '' ? [key, shard] : [key, shard, userKey(this.prefix, old)]);
  }

  /**
   * Shard by shard, {@link GC_BATCH} due ids at a time (`ZRANGEBYSCORE`, never
   * `SCAN`): each is checked and, when due, deleted in its own slot; then the
   * shard drops those still due (one script: each id reported once, even with
   * several processes collecting) and the lagging ones get their real score.
   */
  async gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    const { commands } = this;
    let collected = 0;
    for (const shard of this.#shards) {
      for (;;) {
        const due = await commands.call('gc', ['ZRANGEBYSCORE', shard, '-inf', String(now), 'LIMIT', '0', String(GC_BATCH)], strings);
        if (due.length === 0) break;
        const states = await Promise.all(due.map((sid) => commands.eval('gc', GC_ONE_SCRIPT, this.#key(sid), [String(now)], gcOneReply)));
        const drop: string[] = [];
        const lagging: string[] = [];
        const users = new Map<string, string>();
        for (const [i, sid] of due.entries()) {
          const state = states[i];
          if (state.kind === 'live') lagging.push(state.expiresAt, sid);
          else drop.push(sid);
          if (state.kind === 'deleted' && state.user !== '') users.set(sid, state.user);
        }
        const steps: Promise<unknown>[] = [];
        if (lagging.length > 0) steps.push(commands.call('gc', ['ZADD', shard, 'XX', ...lagging], integer));
        for (const [sid, user] of users) steps.push(commands.call('gc', ['ZREM', userKey(this.prefix, user), sid], integer));
        const removed = drop.length === 0 ? [] : await commands.eval('gc', DROP_DUE_SCRIPT, shard, [String(now), ...drop], strings);
        await Promise.all(steps);
        const foreign = new Set(due.filter((_, i) => states[i].kind === 'foreign'));
        for (const sid of removed) {
          if (foreign.has(sid)) continue;
          collected += 1;
          onExpired?.(sid);
        }
        if (due.length < GC_BATCH) break;
      }
    }
    return collected;
  }

  /** `ZCOUNT` of every shard, in parallel, summed. */
  async count(now: number): Promise<number> {
    const counts = await Promise.all(this.#shards.map((shard) => this.commands.call('count', ['ZCOUNT', shard, `(${now}`, '+inf'], integer)));
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Shard by shard, pages of (expiry, id) after a cursor (as on one server),
   * each session read with `HGETALL`; an id whose hash is gone is pruned
   * from its shard (a dead session: nothing brings an id back).
   */
  async *entries(now: number): AsyncIterable<StoredEntry> {
    const { commands } = this;
    for (const shard of this.#shards) {
      const listed = new Set<string>();
      let cursor: ScoredId | undefined;
      for (;;) {
        const args = [String(now), cursor?.score ?? '', cursor?.sid ?? '', String(PAGE_SIZE)];
        const page = await commands.eval('entries', ENTRIES_PAGE_SCRIPT, shard, args, scoredIds);
        const fresh = page.filter(({ sid }) => !listed.has(sid));
        const sessions = await Promise.all(fresh.map(({ sid }) => commands.call('entries', ['HGETALL', this.#key(sid)], sessionReply)));
        const gone: string[] = [];
        const live: StoredEntry[] = [];
        for (const [i, { sid }] of fresh.entries()) {
          const stored = sessions[i];
          if (stored === undefined) gone.push(sid);
          else if (stored.expiresAt > now) live.push({ sid, ...stored });
        }
        if (gone.length > 0) await commands.call('entries', ['ZREM', shard, ...gone], integer);
        for (const entry of live) {
          listed.add(entry.sid);
          yield entry;
        }
        if (page.length < PAGE_SIZE) break;
        cursor = page[page.length - 1];
      }
    }
  }

  /**
   * Every id of the user's set (`ZRANGE 0 -1`: trimmed at each write, so it
   * holds little more than the live ones), each read with `HGETALL`: only
   * sessions live at `now` whose user key names `userId` are returned. Ids
   * whose hash is gone are pruned; one that names another user (or none) is
   * skipped, not pruned: it may be a bind in progress, indexed first.
   */
  async listByUser(userId: string, now: number): Promise<StoredEntry[]> {
    const { commands } = this;
    const key = userKey(this.prefix, userHash(userId));
    const sids = await commands.call('listByUser', ['ZRANGE', key, '0', '-1'], strings);
    const sessions = await Promise.all(sids.map((sid) => commands.call('listByUser', ['HGETALL', this.#key(sid)], sessionReply)));
    const found: StoredEntry[] = [];
    const gone: string[] = [];
    for (const [i, sid] of sids.entries()) {
      const stored = sessions[i];
      if (stored === undefined) gone.push(sid);
      else if (stored.expiresAt > now && userFromJson(stored.values.get(USER_KEY)) === userId) found.push({ sid, ...stored });
    }
    if (gone.length > 0) await commands.call('listByUser', ['ZREM', key, ...gone], integer);
    return found;
  }

  #key(sid: string): string {
    return sessionKey(this.prefix, sid);
  }

  #shard(sid: string): string {
    return this.#shards[expiryShard(sid)];
  }

  #indexUser(operation: string, hash: string, sid: string, expiresAt: number): Promise<unknown> {
    return this.commands.eval(operation, INDEX_USER_SCRIPT, userKey(this.prefix, hash), [sid, String(expiresAt)], integer);
  }
}

/** UPDATE_ONE_SCRIPT: 0 → undefined (not live), { 1, old user hash } → that hash ('' when none). */
function updateReply(reply: unknown): string | undefined {
  if (!Array.isArray(reply)) {
    if (integer(reply) === 0) return undefined;
    throw wrongShape('0 or { 1, user } from the update script', reply);
  }
  if (reply.length !== 2 || integer(reply[0]) !== 1) throw wrongShape('{ 1, user } from the update script', reply);
  return text(reply[1]);
}

/** TAKE_SCRIPT: 0 → undefined (not live), else the taken hash's fields. */
function takeReply(reply: unknown): [string, string][] | undefined {
  if (!Array.isArray(reply)) {
    if (integer(reply) === 0) return undefined;
    throw wrongShape('0 or a hash from the take script', reply);
  }
  const fields = hashFields(reply);
  if (decodeSession(fields) === undefined) throw new UnexpectedReply('the taken hash is not a session');
  return fields;
}

type GcState = { kind: 'gone' | 'foreign' } | { kind: 'live'; expiresAt: string } | { kind: 'deleted'; user: string };

function gcOneReply(reply: unknown): GcState {
  if (!Array.isArray(reply) || reply.length === 0) throw wrongShape('a state from the gc script', reply);
  const kind = text(reply[0]);
  if (kind === 'g') return { kind: 'gone' };
  if (kind === 'x') return { kind: 'foreign' };
  if (kind === 'l' && reply.length === 2) return { kind: 'live', expiresAt: text(reply[1]) };
  if (kind === 'd' && reply.length === 2) return { kind: 'deleted', user: text(reply[1]) };
  throw new UnexpectedReply('unknown state from the gc script');
}
