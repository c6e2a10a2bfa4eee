/**
 * The storage contract. A provider stores sessions and nothing else: it never
 * reads a clock (every method that needs the time is given `now`), never
 * decides lifetimes (the manager hands it absolute deadlines) and never sees
 * HTTP. Every method returns a Promise; "not found" is never an error — errors
 * are for system failures only, and they must reject, never resolve as if the
 * operation had succeeded.
 *
 * Values travel as JSON text: the session serialises each value once, at
 * `set()`, so a provider stores strings and a reader never shares live objects
 * with another request. Keys are arbitrary strings, `__proto__` included, so a
 * provider must never use them as properties of an ordinary object.
 *
 * Times are milliseconds since the Unix epoch. A session is live while
 * `now < expiresAt`.
 *
 * The `sid` a provider sees is the manager's storage key for a session: the
 * SHA-256 of the id the client holds (base64url), so a copy of the store
 * holds no usable ids. A provider treats it as an opaque string.
 *
 * Room to grow without a rewrite: sessions by user will add an optional
 * `userId` to `create`/`update` and optional `listByUser`/`destroyByUser`
 * methods backed by an index (detected, not demanded).
 */
export interface Provider {
  /** Short name used in error messages, e.g. `'redis'`. */
  readonly name: string;

  /**
   * Stores a new session with the given values. Resolves `false`, storing
   * nothing, when a session with this id already exists (live or expired but
   * not yet collected); the manager then draws another id.
   */
  create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean>;

  /**
   * The stored session, or `undefined` when there is none. It may return a
   * session that is past its `expiresAt` (the manager enforces expiry and
   * reports it); it must never return one that was destroyed.
   */
  read(sid: string): Promise<StoredSession | undefined>;

  /**
   * Optional: `read`, answered synchronously. A provider that holds sessions
   * in this process offers it, so a request need not wait a turn of the event
   * loop for its session. Throws (instead of rejecting) on failure. When
   * present it is used instead of `read`, so the two must behave alike.
   */
  readNow?(sid: string): StoredSession | undefined;

  /**
   * Applies per-key changes (JSON text to set, `undefined` to delete) and sets
   * the new expiry, atomically, only if the session exists and is live at
   * `now`. Keys not named in `changes` are left exactly as they are, so two
   * concurrent updates of different keys both survive. Resolves `false`, changing
   * nothing, when the session is missing or expired: a destroyed session is never
   * brought back.
   */
  update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean>;

  /**
   * Optional: `update`, done synchronously (an in-process provider), so the
   * response need not wait a turn of the event loop for its save. Throws
   * (instead of rejecting) on failure. The two must behave alike.
   */
  updateNow?(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): boolean;

  /**
   * Optional, and what makes `regenerate()` atomic: in one step, replaces
   * session `from` by a new session `to`, only if `from` exists and is live at
   * `now` and `to` is free. `to` gets `from`'s values *as stored at that
   * moment* with `changes` applied (so a concurrent per-key change is not
   * lost), the given `createdAt`/`expiresAt`; `from` is deleted.
   *
   * Resolves the values `to` now holds (a fresh map), `undefined` when `from`
   * is missing or expired (nothing is created: a logout that landed first
   * stays a logout), or `false` when `to` already exists (nothing changes).
   * Without it the manager falls back to read/create/destroy and checks that
   * `from` survived, which narrows the race but cannot close it.
   */
  move?(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false>;

  /**
   * Optional: sets a new expiry, only if the session exists and is live at
   * `now`; resolves whether it did. Without it the manager sends an `update`
   * that changes no key.
   */
  touch?(sid: string, expiresAt: number, now: number): Promise<boolean>;

  /** Deletes the session. A missing id is a no-op, not an error. */
  destroy(sid: string): Promise<void>;

  /**
   * Deletes sessions whose `expiresAt <= now`, calling `onExpired` with each
   * deleted id when given, and resolves how many it deleted. It must not hold
   * the event loop (or the database) for long: large sweeps go in batches.
   * Optional: a provider whose backend expires entries by itself leaves it out
   * (or resolves 0).
   */
  gc?(now: number, onExpired?: (sid: string) => void): Promise<number>;

  /**
   * Optional: how many sessions are live at `now` (expired ones are not
   * counted, collected or not). Without it `manager.count()` rejects, saying so.
   */
  count?(now: number): Promise<number>;

  /**
   * Optional: every session live at `now`, in no particular order, without
   * loading all of them at once. Without it `manager.sessions()` throws, saying so.
   */
  entries?(now: number): AsyncIterable<StoredEntry>;

  /**
   * Optional: the sessions live at `now` whose values hold {@link USER_KEY}
   * set to the JSON of `userId`, answered from an index the provider keeps
   * with every create, update, move, destroy and gc (never a scan of all
   * sessions). An index entry whose session is gone or expired is never
   * returned (and may be pruned when met).
   */
  listByUser?(userId: string, now: number): Promise<StoredEntry[]>;

  /**
   * Optional, for a provider that evicts live sessions to stay within a bound:
   * the manager listens here and reports each eviction as an `evicted` event.
   */
  addEvictionListener?(listener: (sid: string) => void): void;

  /** Releases what the provider created (timers, connections). A client or pool passed in by the app stays open. */
  close(): Promise<void>;
}

/**
 * The value key that names a session's user (`req.session.bindUser()`), its
 * value the JSON of the user id. A provider with `listByUser` indexes it; to
 * every other provider it is a value like any other. Apps cannot use keys
 * that start with NUL, so it never collides with theirs.
 */
export const USER_KEY = '\u0000user';

/** The user id in JSON text stored under {@link USER_KEY}; `undefined` when absent or not a JSON string. */
export function userFromJson(json: string | undefined): string | undefined {
  if (json === undefined) return undefined;
  try {
    const user: unknown = JSON.parse(json);
    return typeof user === 'string' ? user : undefined;
  } catch {
    return undefined;
  }
}

/** The user a session's values name (see {@link USER_KEY}), else `undefined`. */
export function userOf(values: ReadonlyMap<string, string>): string | undefined {
  return userFromJson(values.get(USER_KEY));
}

/** A stored session as a provider returns it. */
export interface StoredSession {
  /** Key → JSON text of the value. A fresh map owned by the caller. */
  values: Map<string, string>;
  createdAt: number;
  expiresAt: number;
}

export interface StoredEntry extends StoredSession {
  sid: string;
}

/** A provider, or a factory that builds one from `providerOptions`. */
export type ProviderFactory = (options: Record<string, unknown>) => Provider;

/** What every provider must have; the rest (touch, gc, count, entries, move, readNow, updateNow) is detected. */
const PROVIDER_METHODS = ['create', 'read', 'update', 'destroy', 'close'] as const;

/** The names of the `Provider` methods `candidate` lacks (empty when it is a complete provider). */
export function missingProviderMethods(candidate: unknown): string[] {
  if (candidate === null || typeof candidate !== 'object') return [...PROVIDER_METHODS];
  const record = candidate as Record<string, unknown>;
  return PROVIDER_METHODS.filter((method) => typeof record[method] !== 'function');
}
