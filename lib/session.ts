import { MAX_GRACE_SECONDS } from './options';

/**
 * The shape of your session data, declared by merging:
 *
 * @example
 * declare module 'session-manager' {
 *   interface SessionData { username: string; countnum: number }
 * }
 * req.session.get('countnum'); // number | undefined
 */
export interface SessionData {}

/**
 * The keys a session takes: those `SessionData` declares, once an app declares
 * any (so a misspelt key is a type error, and editors complete them); any
 * string while it declares none.
 */
export type SessionKey = [keyof SessionData] extends [never] ? string : Extract<keyof SessionData, string>;

/** The declared type of `key`, or `unknown` for keys `SessionData` does not name. */
export type SessionValue<K extends string> = K extends keyof SessionData ? SessionData[K] : unknown;

/** What JSON cannot hold: `set` refuses it at run time, and the types refuse it at compile time. */
type NotJson = Map<unknown, unknown> | Set<unknown> | WeakMap<object, unknown> | WeakSet<object> | ((...args: never[]) => unknown) | symbol | bigint | undefined;

/** `V`, or `never` when it has no JSON form (nested values are checked at run time). */
export type JsonSafe<V> = V extends NotJson ? never : V;

/** A session's data as listings show it: the declared shape when there is one. */
export type SessionDataRecord = [keyof SessionData] extends [never] ? Record<string, unknown> : Partial<SessionData> & Record<string, unknown>;

/** What a session asks of the request that owns it (ids and storage live there, not here). */
export interface SessionHost {
  id(): string;
  isNew(): boolean;
  handle(): string | undefined;
  regenerate(graceMs?: number): Promise<void>;
  save(): Promise<boolean>;
  destroy(): Promise<void>;
  url(path: string): string;
  setLifetime(seconds: number | null): void;
  expiresAt(): Date;
  bindUser(userId: string | null): void;
  userId(): string | undefined;
}

/** Key → JSON text of the new value, or `undefined` for a deleted key. */
export type Changes = Map<string, string | undefined>;

/**
 * A session's values and this request's changes to them, key by key. The
 * `Session` edits it; the request that owns the session reads and drains it
 * when it commits. Values are JSON text.
 */
export class ChangeLog {
  /** Current view: stored values with this request's changes applied. */
  values: Map<string, string>;
  /** This request's changes, created on the first one (most requests only read). */
  #changes: Changes | undefined;

  constructor(values: Map<string, string>) {
    this.values = values;
  }

  record(key: string, json: string | undefined): void {
    (this.#changes ??= new Map()).set(key, json);
  }

  hasChanges(): boolean {
    return this.#changes !== undefined;
  }

  /** The changes so far; the log starts empty again. */
  take(): Changes {
    const changes = this.#changes ?? new Map();
    this.#changes = undefined;
    return changes;
  }

  /** Puts back changes a failed write took, under any made since. */
  restore(changes: Changes): void {
    for (const [key, json] of changes) if (!this.#changes?.has(key)) this.record(key, json);
  }

  /** Forgets values and changes: the session is empty (destroyed, or lost elsewhere). */
  reset(values: Map<string, string> = new Map()): void {
    this.values = values;
    this.#changes = undefined;
  }
}

/**
 * `req.session`: a snapshot of the stored values plus a log of this request's
 * changes, key by key. Values are stored as JSON: `set` takes a snapshot, and
 * `get` returns a fresh copy, so mutating a returned object changes nothing
 * until you `set` it again.
 */
export class Session {
  readonly #log: ChangeLog;
  readonly #host: SessionHost;

  constructor(log: ChangeLog, host: SessionHost) {
    this.#log = log;
    this.#host = host;
  }

  /** The value stored under `key`, or `undefined`. */
  get<K extends SessionKey>(key: K): SessionValue<K> | undefined {
    const json = this.#log.values.get(key);
    return json === undefined ? undefined : (fromJson(json) as SessionValue<K>);
  }

  /**
   * Stores `value` under `key`; saved before the response goes out.
   * @throws TypeError when `value` is not JSON-serialisable or `key` is not well-formed Unicode (nothing changes then).
   */
  set<K extends SessionKey, V extends SessionValue<K>>(key: K, value: V & JsonSafe<V>): void {
    checkKey(key);
    const json = toJson(key, value);
    this.#log.values.set(key, json);
    this.#log.record(key, json);
  }

  /** Removes `key`; answers whether this session had it. */
  delete(key: SessionKey): boolean {
    checkKey(key);
    // Recorded even when absent here: a concurrent request may have set it.
    this.#log.record(key, undefined);
    return this.#log.values.delete(key);
  }

  has(key: string): boolean {
    return this.#log.values.has(key);
  }

  keys(): IterableIterator<string> {
    return this.#log.values.keys();
  }

  /** The current session id. */
  get sessionID(): string {
    return this.#host.id();
  }

  /** True when this request created the session. */
  get isNew(): boolean {
    return this.#host.isNew();
  }

  /**
   * A fresh id for the same data; the old id is dead from now on. Call it at
   * login (session fixation). With `graceSeconds`, the old id still leads to
   * this session for that long, so requests already in flight with it keep
   * it — never for a privilege change such as a login.
   */
  regenerate(options?: { graceSeconds?: number }): Promise<void> {
    const grace = options?.graceSeconds ?? 0;
    if (typeof grace !== 'number' || !Number.isFinite(grace) || grace < 0 || grace > MAX_GRACE_SECONDS) {
      return Promise.reject(new TypeError(`[session-manager] regenerate({ graceSeconds }) takes 0 to ${MAX_GRACE_SECONDS} seconds, got ${String(grace)}`));
    }
    return this.#host.regenerate(grace * 1000);
  }

  /** The stable, non-secret name of this session in the store (safe to log or show), once it is stored. */
  get handle(): string | undefined {
    return this.#host.handle();
  }

  /**
   * Writes pending changes now (normally automatic, before the response).
   * Resolves `false` when the session was destroyed or expired elsewhere
   * meanwhile (this request then goes on as an empty, anonymous session that
   * stores nothing), else `true` (saved, or nothing to save). Rejects when
   * the store fails.
   */
  save(): Promise<boolean> {
    return this.#host.save();
  }

  /** Deletes the session from the store and tells the client to forget it. */
  destroy(): Promise<void> {
    return this.#host.destroy();
  }

  /**
   * This session's idle lifetime in seconds, in place of `maxLifetime`
   * ("remember me"); `null` restores the default. Stored with the session,
   * honoured by every provider and the cookie's Max-Age; `absoluteLifetime`
   * still caps it.
   * @throws TypeError unless a positive number of seconds or null.
   */
  setLifetime(seconds: number | null): void {
    this.#host.setLifetime(seconds);
  }

  /**
   * Records that this session belongs to `userId` (after login, once
   * `regenerate()` gave it a fresh id): `manager.listByUser()` and
   * `destroyByUser()` then find it. Survives `regenerate()`; `null` unbinds.
   */
  bindUser(userId: string | null): void {
    this.#host.bindUser(userId);
  }

  /** The user this session is bound to, if any. */
  get userId(): string | undefined {
    return this.#host.userId();
  }

  /** When this session expires if nothing else happens (its current deadline). */
  get expiresAt(): Date {
    return this.#host.expiresAt();
  }

  /** `path` with the id as query parameter, for the `query` transport (clients without cookies). */
  url(path: string): string {
    return this.#host.url(path);
  }

  toJSON(): Record<string, unknown> {
    return Object.fromEntries([...this.#log.values].map(([key, json]) => [key, JSON.parse(json)]));
  }
}

// A lone surrogate has no UTF-8 form: Redis would store it as U+FFFD (two keys colliding), PostgreSQL rejects it.
const LONE_SURROGATE = /\p{Surrogate}/u;

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw new TypeError(`[session-manager] session key must be a string, got ${typeof key}`);
  if (key.startsWith('\u0000')) throw new TypeError('[session-manager] session keys starting with NUL are reserved');
  if (LONE_SURROGATE.test(key)) throw new TypeError('[session-manager] session key must be well-formed Unicode (it has a lone surrogate)');
}

function toJson(key: string, value: unknown): string {
  // The common values need no replacer (which puts JSON.stringify on its slow path).
  if (typeof value === 'string' || typeof value === 'boolean' || value === null) return JSON.stringify(value);
  if (typeof value === 'number' && Number.isFinite(value)) return JSON.stringify(value);
  let json: string | undefined;
  try {
    json = JSON.stringify(value, rejectLossy);
  } catch (err) {
    throw new TypeError(`[session-manager] session value for "${key}" is not JSON-serialisable: ${(err as Error).message}`);
  }
  if (json === undefined) {
    throw new TypeError(`[session-manager] session value for "${key}" is not JSON-serialisable (use delete() to remove a key)`);
  }
  return json;
}

/** JSON.stringify would silently turn these into null or {}; refuse them instead. */
function rejectLossy(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`${value} has no JSON form`);
  if (typeof value === 'function' || typeof value === 'symbol') throw new TypeError(`a ${typeof value} has no JSON form`);
  if (value instanceof Map || value instanceof Set) throw new TypeError(`a ${value.constructor.name} would be stored as {}`);
  return value;
}

const QUOTE = 0x22;

/** JSON.parse, with the commonest value read directly: a string with no escape in it is its text between the quotes. */
function fromJson(json: string): unknown {
  const last = json.length - 1;
  if (last > 0 && json.charCodeAt(0) === QUOTE && json.charCodeAt(last) === QUOTE && !json.includes('\\')) return json.slice(1, last);
  return JSON.parse(json);
}
