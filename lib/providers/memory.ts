import { OptionError } from '../errors';
import { ExpiryHeap, secondOf } from './expiry-heap';
import { UserIndex } from './memory-users';
import { Probation } from './probation';
import { USER_KEY, userFromJson, userOf, type Provider, type StoredEntry, type StoredSession } from './provider';
import { ShardedMap } from './sharded-map';

/** Options of the memory provider. */
export interface MemoryOptions {
  /**
   * Most sessions kept at once; creating one more evicts one (see the class
   * comment for which), so a flood of new visitors cannot exhaust memory.
   * @default 100000
   */
  maxSessions?: number;
  /**
   * Called with the id of each session evicted at `maxSessions`, synchronously,
   * once the new session is stored. It must not throw: the create would reject.
   */
  onEvict?: (sid: string) => void;
}

export const DEFAULT_MAX_SESSIONS = 100_000;

/** A sweep yields to the event loop after this long, so a huge expiry never stalls requests. */
const SWEEP_SLICE_MS = 4;
/** Sessions a sweep handles between two looks at the clock. */
const SWEEP_CHECK_EVERY = 128;
const TIME_WIDTH = 9; // base-36 digits of a millisecond timestamp, enough until the year 5138
const VALUES_FROM = 2 * TIME_WIDTH; // where the values start, or a probationary session's segment number

/**
 * Sessions in this process's memory: the embedded default, for one process and
 * for tests. Sessions are lost on restart; use `file` or `sqlite` to keep
 * them, `redis` or `postgres` to share them between processes.
 *
 * Each session is one flat string (expiry, creation time and the values as
 * JSON), which keeps a small session under 200 heap bytes and means a reader
 * never shares objects with another request.
 *
 * Eviction at `maxSessions` is fair to signed-in users. A new session is
 * *probationary* until its first use after creation (a `read` that finds it,
 * an `update`, a `touch`, or being the target of a `move`); from then on it is
 * *established*. A full store evicts the oldest probationary session, and an
 * established one (the one that expires soonest, the least recently
 * refreshed) only when no probationary session is left. So a flood of new
 * visitors evicts its own sessions, not the users who came back. It does not
 * stop a flood of sessions that are used again; that takes a limit on session
 * creation per client (see docs/memory-eviction.md). `onEvict` hears of each
 * eviction.
 *
 * Probationary sessions wait in a queue of segments in creation order (see
 * `Probation`); established ones are filed by expiry second in an
 * `ExpiryHeap`. Each session is in one of the two, so creating one is O(1),
 * its first use O(log n), and a sweep visits only what may be due, in time
 * slices.
 *
 * Sessions by user: a session whose values hold `USER_KEY` is filed under its
 * user in a `UserIndex` (user → ids), kept with every create, update, move,
 * destroy, eviction and expiry, so `listByUser` looks at that user's sessions
 * only. An unbound session costs nothing there.
 *
 * @example sessions({ provider: 'memory', providerOptions: { maxSessions: 50_000 } })
 */
export class MemoryProvider implements Provider {
  readonly name = 'memory';
  readonly maxSessions: number;
  /** sid → encoded session. */
  readonly #sessions = new ShardedMap<string>();
  /** Established sessions, by expiry. */
  readonly #established = new ExpiryHeap();
  /** Probationary sessions, oldest first. */
  readonly #probation = new Probation((sid, segment) => {
    const encoded = this.#sessions.get(sid);
    return encoded !== undefined && segmentOf(encoded) === segment ? expiryOf(encoded) : undefined;
  });
  /** User → ids of the sessions bound to it (only sessions whose values hold `USER_KEY`). */
  readonly #users = new UserIndex();
  readonly #evictionListeners: Array<(sid: string) => void> = [];
  /** The latest sweep; the next one starts after it. */
  #sweeping: Promise<number> | undefined;

  constructor(options: MemoryOptions = {}) {
    for (const name of Object.keys(options ?? {})) {
      if (name !== 'maxSessions' && name !== 'onEvict') throw new OptionError(`[memory] unknown option ${name}`);
    }
    const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isSafeInteger(maxSessions) || maxSessions < 1) {
      throw new OptionError(`[memory] option maxSessions is invalid: ${String(options.maxSessions)}`);
    }
    if (options.onEvict !== undefined && typeof options.onEvict !== 'function') {
      throw new OptionError(`[memory] option onEvict is invalid: ${String(options.onEvict)} (must be a function)`);
    }
    this.maxSessions = maxSessions;
    if (options.onEvict) this.#evictionListeners.push(options.onEvict);
  }

  /** Hears of each session evicted at `maxSessions` (the manager turns them into `evicted` events). */
  addEvictionListener(listener: (sid: string) => void): void {
    this.#evictionListeners.push(listener);
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    if (this.#sessions.has(sid)) return false;
    const evicted = this.#sessions.size >= this.maxSessions ? this.#evictOne() : undefined;
    const segment = this.#probation.add(sid, expiresAt);
    this.#sessions.set(sid, encode(expiresAt, pad(createdAt) + segment.toString(36), values));
    const user = userOf(values);
    if (user !== undefined) this.#users.add(user, sid);
    if (evicted !== undefined) for (const listener of this.#evictionListeners) listener(evicted);
    return true;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    return this.readNow(sid);
  }

  readNow(sid: string): StoredSession | undefined {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined) return undefined;
    const segment = segmentOf(encoded);
    if (segment !== undefined) this.#establish(sid, flat(encoded.slice(0, VALUES_FROM) + valuesText(encoded)), expiryOf(encoded), segment);
    return decode(encoded);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    return this.updateNow(sid, changes, expiresAt, now);
  }

  updateNow(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): boolean {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined || expiryOf(encoded) <= now) return false;
    const values = decodeValues(encoded);
    const before = changes.has(USER_KEY) ? userOf(values) : undefined;
    withChanges(values, changes);
    if (changes.has(USER_KEY)) this.#rebind(sid, before, sid, userOf(values));
    this.#refresh(sid, encoded, encode(expiresAt, encoded.slice(TIME_WIDTH, VALUES_FROM), values), expiresAt);
    return true;
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined || expiryOf(encoded) <= now) return false;
    // Only the timestamp prefix changes (and a segment number goes); the values are copied as text.
    this.#refresh(sid, encoded, flat(pad(expiresAt) + encoded.slice(TIME_WIDTH, VALUES_FROM) + valuesText(encoded)), expiresAt);
    return true;
  }

  async move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    // No await between the checks and the writes: nothing else runs in between.
    const encoded = this.#sessions.get(from);
    if (encoded === undefined || expiryOf(encoded) <= now) return undefined;
    if (this.#sessions.has(to)) return false;
    const values = decodeValues(encoded);
    const before = userOf(values);
    withChanges(values, changes);
    this.#remove(from, encoded);
    this.#sessions.set(to, encode(expiresAt, pad(createdAt), values)); // in use: established at once
    this.#established.add(to, expiresAt);
    this.#rebind(from, before, to, changes.has(USER_KEY) ? userOf(values) : before);
    return values;
  }

  async destroy(sid: string): Promise<void> {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined) return;
    this.#remove(sid, encoded); // an expiry-heap entry goes stale and is dropped when taken
    this.#unindex(sid, encoded);
  }

  gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    // Sweeps run one at a time; a caller arriving mid-sweep gets its own pass after it.
    const run = (this.#sweeping ?? Promise.resolve(0)).then(() => this.#sweep(now, onExpired));
    this.#sweeping = run.catch(() => 0);
    return run;
  }

  async count(now: number): Promise<number> {
    await this.gc(now);
    return this.#sessions.size;
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    for (const sid of this.#sessions.keys()) {
      const encoded = this.#sessions.get(sid);
      if (encoded === undefined || expiryOf(encoded) <= now) continue;
      yield { sid, ...decode(encoded) };
    }
  }

  /** The live sessions bound to `userId`, from the index: never a walk over all sessions. */
  async listByUser(userId: string, now: number): Promise<StoredEntry[]> {
    const found: StoredEntry[] = [];
    for (const sid of this.#users.sids(userId)) {
      const encoded = this.#sessions.get(sid);
      if (encoded === undefined) {
        this.#users.delete(userId, sid); // not expected (every removal unindexes), but never listed
        continue;
      }
      if (expiryOf(encoded) <= now) continue; // the sweep collects it, and unindexes it then
      const session = decode(encoded);
      if (userOf(session.values) === userId) found.push({ sid, ...session });
      else this.#users.delete(userId, sid);
    }
    return found;
  }

  async close(): Promise<void> {
    await this.#sweeping;
    this.#sessions.clear();
    this.#users.clear();
    this.#established.clear();
    this.#probation.clear();
  }

  /** Stores `sid`'s new text after a use: a probationary session becomes established. */
  #refresh(sid: string, encoded: string, updated: string, expiresAt: number): void {
    const segment = segmentOf(encoded);
    if (segment !== undefined) this.#establish(sid, updated, expiresAt, segment);
    else {
      this.#sessions.set(sid, updated);
      if (expiresAt < expiryOf(encoded)) this.#established.add(sid, expiresAt);
    }
  }

  #establish(sid: string, updated: string, expiresAt: number, segment: number): void {
    this.#sessions.set(sid, updated);
    this.#established.add(sid, expiresAt);
    this.#probation.leave(segment);
  }

  /** Files `sid` under its new user, if it changed (or the id did). */
  #rebind(from: string, before: string | undefined, to: string, after: string | undefined): void {
    if (before === after && from === to) return;
    if (before !== undefined) this.#users.delete(before, from);
    if (after !== undefined) this.#users.add(after, to);
  }

  /** Takes a deleted session out of the user index. */
  #unindex(sid: string, encoded: string): void {
    if (this.#users.size === 0) return;
    const user = storedUser(encoded);
    if (user !== undefined) this.#users.delete(user, sid);
  }

  #remove(sid: string, encoded: string): void {
    this.#sessions.delete(sid);
    const segment = segmentOf(encoded);
    if (segment !== undefined) this.#probation.leave(segment);
  }

  /**
   * What the expiry heap says about `sid` filed under `second`: 'gone' (a stale entry:
   * deleted, or a new probationary session that reuses the id), 'due' (it still
   * expires in that second) or 'moved' (re-filed where it now expires).
   */
  #check(sid: string, second: number): 'gone' | 'due' | 'moved' {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined || segmentOf(encoded) !== undefined) return 'gone';
    const expiresAt = expiryOf(encoded);
    if (secondOf(expiresAt) === second) return 'due';
    this.#established.add(sid, expiresAt);
    return 'moved';
  }

  /** Makes room for one session: the oldest probationary one goes, else the established one expiring soonest. */
  #evictOne(): string | undefined {
    const newcomer = this.#probation.takeOldest();
    if (newcomer !== undefined) {
      this.#delete(newcomer);
      return newcomer;
    }
    const filed = { second: 0 };
    for (let sid = this.#established.take(Infinity, filed); sid !== undefined; sid = this.#established.take(Infinity, filed)) {
      if (this.#check(sid, filed.second) === 'due') {
        this.#delete(sid);
        return sid;
      }
    }
    return undefined;
  }

  /** Deletes an evicted or expired session (whose queue entry is taken already), unindexing it. */
  #delete(sid: string): void {
    if (this.#users.size > 0) {
      const encoded = this.#sessions.get(sid);
      if (encoded !== undefined) this.#unindex(sid, encoded);
    }
    this.#sessions.delete(sid);
  }

  async #sweep(now: number, onExpired?: (sid: string) => void): Promise<number> {
    let deleted = 0;
    const expire = (sid: string) => {
      this.#delete(sid);
      deleted++;
      onExpired?.(sid);
    };
    let handled = 0;
    let sliceStart = performance.now();
    /** Yields to the event loop once the slice is used up; checks the clock every so many sessions. */
    const pause = async (sessions: number): Promise<void> => {
      handled += sessions;
      if (handled < SWEEP_CHECK_EVERY) return;
      handled = 0;
      if (performance.now() - sliceStart <= SWEEP_SLICE_MS) return;
      await new Promise((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    };

    const filed = { second: 0 };
    const laterThisSecond: Array<[string, number]> = [];
    for (let sid = this.#established.take(secondOf(now), filed); sid !== undefined; sid = this.#established.take(secondOf(now), filed)) {
      if (this.#check(sid, filed.second) === 'due') {
        const expiresAt = expiryOf(this.#sessions.get(sid)!);
        if (expiresAt <= now) expire(sid);
        else laterThisSecond.push([sid, expiresAt]); // filed again after the loop, or it would be taken again at once
      }
      await pause(1);
    }
    for (const [sid, expiresAt] of laterThisSecond) this.#established.add(sid, expiresAt);

    for (const segment of this.#probation.due(now)) {
      const due = this.#probation.takeDue(segment, now); // one segment at a time: about a thousand ids at most
      for (const sid of due) expire(sid);
      await pause(due.length + 1);
    }
    return deleted;
  }
}

// Encoded session: expiresAt and createdAt as fixed-width base-36, then, while
// the session is probationary, its probation segment number in base 36, then
// the values as a JSON object of key → JSON text.

function pad(time: number): string {
  return time.toString(36).padStart(TIME_WIDTH, '0');
}

function expiryOf(encoded: string): number {
  return parseInt(encoded.slice(0, TIME_WIDTH), 36);
}

/** The probation segment of a probationary session; `undefined` for an established one. */
function segmentOf(encoded: string): number | undefined {
  if (encoded.charCodeAt(VALUES_FROM) === OPEN_BRACE) return undefined;
  return parseInt(encoded.slice(VALUES_FROM, encoded.indexOf('{', VALUES_FROM)), 36);
}

const OPEN_BRACE = '{'.charCodeAt(0);

function valuesText(encoded: string): string {
  return encoded.slice(encoded.indexOf('{', VALUES_FROM));
}

function encode(expiresAt: number, prefix: string, values: ReadonlyMap<string, string>): string {
  let json = '{';
  for (const [key, value] of values) {
    if (json.length > 1) json += ',';
    json += JSON.stringify(key) + ':' + JSON.stringify(value);
  }
  return flat(pad(expiresAt) + prefix + json + '}');
}

/** `USER_KEY` as it appears in an encoded session, once bound. */
const USER_FIELD = JSON.stringify(USER_KEY);

/** The user an encoded session is bound to: a substring test, then a parse only for a session that may be bound. */
function storedUser(encoded: string): string | undefined {
  if (!encoded.includes(USER_FIELD, VALUES_FROM)) return undefined;
  return userFromJson(decodeValues(encoded).get(USER_KEY));
}

function decodeValues(encoded: string): Map<string, string> {
  const parsed = JSON.parse(valuesText(encoded)) as Record<string, string>;
  const values = new Map<string, string>();
  for (const key of Object.keys(parsed)) values.set(key, parsed[key]); // no [key, value] array per entry, as Object.entries makes
  return values;
}

function withChanges(values: Map<string, string>, changes: ReadonlyMap<string, string | undefined>): Map<string, string> {
  for (const [key, json] of changes) {
    if (json === undefined) values.delete(key);
    else values.set(key, json);
  }
  return values;
}

function decode(encoded: string): StoredSession {
  return {
    expiresAt: expiryOf(encoded),
    createdAt: parseInt(encoded.slice(TIME_WIDTH, VALUES_FROM), 36),
    values: decodeValues(encoded),
  };
}

/**
 * Concatenation builds a rope (cons string) that costs about twice the text;
 * reading one character flattens it, and the GC then drops the rope nodes.
 */
function flat(text: string): string {
  text.charCodeAt(0);
  return text;
}
