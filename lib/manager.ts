import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { errorMessage, ProviderError, SessionError } from './errors';
import { resolveOptions, SESSION_ID_PATTERN, type ProviderChoice, type ResolvedOptions, type SessionOptions } from './options';
import { ALIAS_KEY, aliasKey, openAlias, sealAlias } from './id-alias';
import { USER_KEY, userFromJson, type Provider, type StoredEntry, type StoredSession } from './providers/provider';
import type { SessionDataRecord } from './session';
import { resolveProvider } from './providers/registry';

/** One entry of `manager.sessions()`: no raw id, only the handle the store keeps. */
export interface SessionInfo {
  /** The stable, non-secret name of the session (the hash the store keeps): safe for admin pages; `manager.destroy()` takes it. */
  handle: string;
  createdAt: Date;
  expiresAt: Date;
  /** The user the session is bound to (`req.session.bindUser()`), if any. */
  userId?: string;
  data: SessionDataRecord;
}

/**
 * Where a stored session stands (internal): its id, the key the store keeps
 * it under, and its lifetimes (milliseconds since the epoch).
 * @internal
 */
export interface SessionRecord {
  sid: string;
  key: string;
  createdAt: number;
  expiresAt: number;
  /** This session's idle lifetime when it has its own (`setLifetime`), else the manager's `maxLifetime`. */
  idleMs?: number;
  /** The user it is bound to. */
  userId?: string;
  /** When `renewAfter` last gave it a new id (its `createdAt` stays: `absoluteLifetime` still counts from the start). */
  renewedAt?: number;
}

/** How `regenerate()` treats the old id. @internal */
export interface Renewal {
  /** How long the old id still leads to the new session. */
  graceMs: number;
  /** An automatic renewal (`renewAfter`): the same session under a new id, so `createdAt` stays. */
  automatic: boolean;
}

/** An automatic renewal found another request renewing the same session: this one keeps the old id. @internal */
export class RenewalRace extends Error {}

/** Payload of every manager event: `id` is a short hash of the session id, never the id itself. */
export interface SessionEvent {
  id: string;
  error?: Error;
  /** How long the store took for the step that caused the event (created, regenerated, destroyed, unknownId). */
  durationMs?: number;
}

/** The manager's events and their payloads: `manager.on('created', (event) => …)`. */
export interface ManagerEvents {
  created: SessionEvent;
  regenerated: SessionEvent;
  destroyed: SessionEvent;
  expired: SessionEvent;
  evicted: SessionEvent;
  unknownId: SessionEvent;
  error: SessionEvent & { error: Error };
  store: StoreEvent;
}

/** Payload of the `store` event: one provider call, for latency metrics. */
export interface StoreEvent {
  /** `read`, `create`, `update`, `touch`, `regenerate`, `destroy`, `count`, `gc`, `entries`, `ready`. */
  operation: string;
  provider: string;
  durationMs: number;
  ok: boolean;
}

const CREATE_ATTEMPTS = 3;

/**
 * Owns ids, lifetimes and the provider: one per app. It turns `maxLifetime`
 * and `absoluteLifetime` into one absolute deadline per session, so providers
 * only store `expiresAt`. It runs the GC loop and reports what happens as
 * events: `created`, `regenerated`, `destroyed`, `expired`, `evicted`,
 * `unknownId`, `error`, and `store` (every provider call with its duration).
 *
 * @example
 * const manager = createManager({ provider: 'memory' });
 * console.log(await manager.count(), 'users online');
 */
// Typed events: a misspelt event name or a wrong payload is a type error.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface Manager {
  on<E extends keyof ManagerEvents>(event: E, listener: (payload: ManagerEvents[E]) => void): this;
  once<E extends keyof ManagerEvents>(event: E, listener: (payload: ManagerEvents[E]) => void): this;
  off<E extends keyof ManagerEvents>(event: E, listener: (payload: ManagerEvents[E]) => void): this;
  addListener<E extends keyof ManagerEvents>(event: E, listener: (payload: ManagerEvents[E]) => void): this;
  removeListener<E extends keyof ManagerEvents>(event: E, listener: (payload: ManagerEvents[E]) => void): this;
  emit<E extends keyof ManagerEvents>(event: E, payload: ManagerEvents[E]): boolean;
}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Manager extends EventEmitter {
  readonly options: ResolvedOptions;
  readonly provider: Provider;
  #gcTimer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  /** The count callers of this turn share. */
  #counting: Promise<number> | undefined;

  constructor(options: SessionOptions<ProviderChoice> = {}) {
    super();
    this.options = resolveOptions(options);
    this.provider = resolveProvider(this.options.provider, this.options.providerOptions);
    this.provider.addEvictionListener?.((key) => this.#emit('evicted', key));
    this.#scheduleGc();
  }

  /** The current time in milliseconds (the injectable clock). @internal */
  now(): number {
    return this.options.clock();
  }

  /** A fresh id from `genid`, checked so a bad generator fails loudly instead of issuing weak ids. @internal */
  generateId(): string {
    const sid = this.options.genid();
    if (typeof sid !== 'string' || !SESSION_ID_PATTERN.test(sid)) {
      throw new SessionError(`genid returned ${JSON.stringify(sid)}: ids must be 16–256 characters of [A-Za-z0-9_-]`);
    }
    return sid;
  }

  /** The deadline of a session used at `now`: its idle timeout, capped by the absolute one. @internal */
  expiryFor(session: { createdAt: number; idleMs?: number }, now: number): number {
    const idle = now + (session.idleMs ?? this.options.maxLifetimeMs);
    const { absoluteLifetimeMs } = this.options;
    return absoluteLifetimeMs === undefined ? idle : Math.min(idle, session.createdAt + absoluteLifetimeMs);
  }

  /** The deadline of a session created at `createdAt`: short while `newSessionLifetime` applies. @internal */
  newExpiry(createdAt: number, idleMs: number | undefined): number {
    const full = this.expiryFor({ createdAt, idleMs }, createdAt);
    const probation = this.options.newSessionLifetimeMs;
    return probation === undefined ? full : Math.min(full, createdAt + probation);
  }

  /** Whether a read-only use at `now` should refresh the stored expiry (throttled by `touchAfter`). @internal */
  shouldTouch(record: SessionRecord, now: number): boolean {
    const gain = this.expiryFor(record, now) - record.expiresAt;
    return gain > 0 && (gain >= this.options.touchAfterMs || this.#onProbation(record));
  }

  /** Whether `renewAfter` wants a new id for this session now (its id's age counts from the last renewal). @internal */
  renewalDue(record: SessionRecord): boolean {
    const after = this.options.renewAfterMs;
    return after !== undefined && this.now() - (record.renewedAt ?? record.createdAt) >= after;
  }

  /** A session still on its `newSessionLifetime`: its first reuse must give it the full lifetime. */
  #onProbation(record: SessionRecord): boolean {
    const probation = this.options.newSessionLifetimeMs;
    return probation !== undefined && record.expiresAt <= record.createdAt + probation;
  }

  /**
   * The live session stored for `sid`, or undefined (unknown, destroyed or
   * expired: never adopted). Answers synchronously when the provider can
   * (`readNow`), else with a Promise.
   * @internal
   */
  load(sid: string, key = storageKey(sid), hops = 0): LoadedSession | undefined | Promise<LoadedSession | undefined> {
    const started = performance.now();
    const stored = this.#read(key);
    if (stored instanceof Promise) return stored.then((found) => this.#found(sid, key, found, started, hops));
    return this.#found(sid, key, stored, started, hops);
  }

  #found(sid: string, key: string, stored: StoredSession | undefined, started: number, hops: number): LoadedSession | undefined | Promise<LoadedSession | undefined> {
    if (stored !== undefined) return this.#live(sid, key, stored);
    return then(this.#followAlias(sid, hops), (renamed) => {
      if (renamed === undefined) this.#emit('unknownId', key, started);
      return renamed;
    });
  }

  /**
   * Where the session of `record` went when its id was renewed with a grace
   * window while this request held it: the new session, or undefined.
   * @internal
   */
  async renamedTo(record: SessionRecord): Promise<LoadedSession | undefined> {
    return this.#followAlias(record.sid, 0);
  }

  /** During a grace window an unknown id may lead to the session it was renewed to (at most two hops: renewed twice within one window). */
  #followAlias(sid: string, hops: number): LoadedSession | undefined | Promise<LoadedSession | undefined> {
    if (hops >= MAX_ALIAS_HOPS) return undefined;
    return then(this.#read(aliasKey(sid)), (alias) => {
      const target = alias === undefined || alias.expiresAt <= this.now() ? undefined : openAlias(sid, alias.values.get(ALIAS_KEY));
      return target === undefined || !SESSION_ID_PATTERN.test(target) ? undefined : this.load(target, undefined, hops + 1);
    });
  }

  /** A provider read, synchronous when the provider can (`readNow`). */
  #read(key: string): StoredSession | undefined | Promise<StoredSession | undefined> {
    const { provider } = this;
    if (provider.readNow === undefined) return this.#call('read', () => provider.read(key));
    const started = performance.now();
    try {
      const stored = provider.readNow(key);
      this.#storeEvent('read', started, true);
      return stored;
    } catch (err) {
      this.#storeEvent('read', started, false);
      return Promise.reject(this.#wrap('read', err));
    }
  }

  #live(sid: string, key: string, stored: StoredSession): LoadedSession | undefined {
    if (stored.expiresAt <= this.now()) {
      this.#emit('expired', key);
      this.provider.destroy(key).catch((err) => this.reportError(err, key));
      return undefined;
    }
    return { record: { sid, key, createdAt: stored.createdAt, expiresAt: stored.expiresAt, ...takeReserved(stored.values) }, values: stored.values };
  }

  /** Stores a new session with `values` under `preferredSid` when given and free, else a fresh id. @internal */
  async create(values: ReadonlyMap<string, string>, preferredSid?: string, idleMs?: number, userId?: string): Promise<SessionRecord> {
    const stored = new Map(values);
    if (idleMs !== undefined) stored.set(LIFETIME_KEY, String(idleMs));
    if (userId !== undefined) stored.set(USER_KEY, JSON.stringify(userId));
    const started = performance.now();
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      const sid = attempt === 0 && preferredSid !== undefined ? preferredSid : this.generateId();
      const key = storageKey(sid);
      const createdAt = this.now();
      const expiresAt = this.newExpiry(createdAt, idleMs);
      if (await this.#call('create', () => this.provider.create(key, stored, createdAt, expiresAt))) {
        this.#emit('created', key, started);
        return { sid, key, createdAt, expiresAt, idleMs, userId };
      }
    }
    throw new SessionError(`genid produced ${CREATE_ATTEMPTS} ids in a row that were already in use`);
  }

  /**
   * Applies per-key changes; resolves the expiry stored, or undefined when the
   * session is gone. The expiry slides as a touch does (`touchAfter`), unless
   * the lifetime changed or the deadline must come closer: between slides the
   * client's cookie needs no new Max-Age.
   * @internal
   */
  async update(record: SessionRecord, changes: ReadonlyMap<string, string | undefined>): Promise<number | undefined> {
    const now = this.now();
    const expiresAt = this.#updatedExpiry(record, changes, now);
    const updated = await this.#call('update', () => this.provider.update(record.key, changes, expiresAt, now));
    return updated ? expiresAt : undefined;
  }

  /**
   * `update`, synchronously, when the provider writes in-process (`updateNow`):
   * the expiry stored, or false when it cannot answer now (no `updateNow`, the
   * session is gone, or it threw): then `update` must run, which says why.
   * @internal
   */
  updateNow(record: SessionRecord, changes: ReadonlyMap<string, string | undefined>): number | false {
    const { provider } = this;
    if (provider.updateNow === undefined) return false;
    const now = this.now();
    const expiresAt = this.#updatedExpiry(record, changes, now);
    const started = performance.now();
    let updated = false;
    try {
      updated = provider.updateNow(record.key, changes, expiresAt, now);
    } catch {
      return false;
    }
    this.#storeEvent('update', started, true);
    return updated && expiresAt;
  }

  /** A write's new expiry: it slides as a touch does, or at once when the lifetime changed or the deadline must come closer. */
  #updatedExpiry(record: SessionRecord, changes: ReadonlyMap<string, string | undefined>, now: number): number {
    const fresh = this.expiryFor(record, now);
    return fresh < record.expiresAt || changes.has(LIFETIME_KEY) || this.shouldTouch(record, now) ? fresh : record.expiresAt;
  }

  /** Slides the expiry; resolves the new expiry, or undefined when the session is gone. @internal */
  async touch(record: SessionRecord): Promise<number | undefined> {
    const now = this.now();
    const expiresAt = this.expiryFor(record, now);
    const touched = await this.#call('touch', () => this.#touch(record.key, expiresAt, now));
    return touched ? expiresAt : undefined;
  }

  /**
   * Moves a live session to a fresh id: the new session starts from the values
   * stored *now* plus `changes`, and the old id is dead — at once, or after
   * `renewal.graceMs`, during which it leads to the new session. Resolves
   * undefined, creating nothing, when the old session is gone (destroyed or
   * expired elsewhere: a logout that landed first stays a logout).
   * @throws RenewalRace when an automatic renewal finds another one under way.
   * @internal
   */
  async regenerate(record: SessionRecord, changes: ReadonlyMap<string, string | undefined>, renewal?: Renewal): Promise<LoadedSession | undefined> {
    const started = performance.now();
    const moved = new Map(changes);
    if (renewal?.automatic) moved.set(RENEWED_KEY, String(this.now()));
    else if (record.renewedAt !== undefined) moved.set(RENEWED_KEY, undefined);
    let linked = false;
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      const sid = this.generateId();
      const key = storageKey(sid);
      const now = this.now();
      const createdAt = renewal?.automatic ? record.createdAt : now;
      const expiresAt = this.expiryFor({ createdAt, idleMs: record.idleMs }, now);
      if (renewal !== undefined && renewal.graceMs > 0) {
        // Linked before the move: from the moment the old session is gone, its id leads to the new one.
        linked = await this.#link(record.sid, sid, now + renewal.graceMs, linked);
        if (!linked && renewal.automatic) throw new RenewalRace();
      }
      const values = await this.#call('regenerate', () => this.#move(record.key, key, moved, createdAt, expiresAt, now));
      if (values === undefined) {
        if (linked) await this.#call('regenerate', () => this.provider.destroy(aliasKey(record.sid)));
        return undefined;
      }
      if (values === false) continue; // the new id was taken: draw another
      this.#emit('regenerated', key, started);
      return { record: { sid, key, createdAt, expiresAt, ...takeReserved(values) }, values };
    }
    throw new SessionError(`genid produced ${CREATE_ATTEMPTS} ids in a row that were already in use`);
  }

  /** Stores the alias leading from `oldSid` to `newSid` until `until`; false when another renewal holds it. */
  #link(oldSid: string, newSid: string, until: number, replace: boolean): Promise<boolean> {
    const { provider } = this;
    const key = aliasKey(oldSid);
    const values = new Map([[ALIAS_KEY, sealAlias(oldSid, newSid)]]);
    const now = this.now();
    return this.#call('regenerate', () => (replace ? provider.update(key, values, until, now) : provider.create(key, values, now, until)));
  }

  /**
   * `provider.move`, or, for a provider without it, read → create → check
   * that the old session survived → destroy it. The fallback catches a logout
   * that lands before its last step, not one that lands during it.
   */
  async #move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    const { provider } = this;
    if (provider.move) return provider.move(from, to, changes, createdAt, expiresAt, now);
    const stored = await provider.read(from);
    if (stored === undefined || stored.expiresAt <= now) return undefined;
    const values = new Map(stored.values);
    for (const [name, json] of changes) {
      if (json === undefined) values.delete(name);
      else values.set(name, json);
    }
    if (!(await provider.create(to, values, createdAt, expiresAt))) return false;
    if (!(await this.#touch(from, stored.expiresAt, now))) {
      await provider.destroy(to); // the old session died meanwhile: so does the new one
      return undefined;
    }
    await provider.destroy(from);
    return values;
  }

  /**
   * Ends a session (log out): give its raw id, or its handle (from
   * `sessions()` or `req.session.handle`). An unknown one is a no-op.
   */
  async destroy(handleOrId: string): Promise<void> {
    const asId = storageKey(handleOrId);
    // A default id has the shape of a handle too; the one the store holds is the one that ends.
    if (HANDLE_PATTERN.test(handleOrId) && (await this.#call('read', () => this.provider.read(handleOrId))) !== undefined) {
      return this.destroyKey(handleOrId);
    }
    return this.destroyKey(asId);
  }

  /** @internal */
  async destroyKey(key: string): Promise<void> {
    const started = performance.now();
    await this.#call('destroy', () => this.provider.destroy(key));
    this.#emit('destroyed', key, started);
  }

  /**
   * Connects and round-trips the store once: call it at start-up to fail fast
   * on a wrong URL, bad credentials or a missing table.
   * @throws ProviderError saying what is wrong.
   */
  async ready(): Promise<void> {
    await this.#call('ready', () => Promise.resolve(this.provider.read(storageKey('session-manager:ready'))));
  }

  /** The live sessions of a user (`req.session.bindUser()`), from the provider's index. */
  async listByUser(userId: string): Promise<SessionInfo[]> {
    const { provider } = this;
    if (typeof userId !== 'string' || userId === '') throw new TypeError('[session-manager] listByUser() takes a non-empty user id');
    if (provider.listByUser === undefined) throw this.#cannot('listByUser()');
    const entries = await this.#call('listByUser', () => provider.listByUser!(userId, this.now()));
    return entries.map(sessionInfo);
  }

  /**
   * Ends every session of a user ("log out everywhere"), except the one named
   * by `except` (a raw id or a handle: "log out my other devices"). Resolves
   * how many ended.
   */
  async destroyByUser(userId: string, options: { except?: string } = {}): Promise<number> {
    const keep = options.except === undefined ? undefined : [options.except, storageKey(options.except)];
    let ended = 0;
    for (const info of await this.listByUser(userId)) {
      if (keep?.includes(info.handle)) continue;
      await this.destroyKey(info.handle);
      ended++;
    }
    return ended;
  }

  /** Ends a user's oldest sessions beyond `maxSessionsPerUser`, never `current` (a storage key). @internal */
  async enforceUserCap(userId: string, current: string): Promise<void> {
    const cap = this.options.maxSessionsPerUser;
    if (cap === undefined) return;
    const others = (await this.listByUser(userId)).filter((info) => info.handle !== current);
    others.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
    for (const info of others.slice(0, Math.max(0, others.length - (cap - 1)))) await this.destroyKey(info.handle);
  }

  /** How many sessions are live now: the online-users count. */
  count(): Promise<number> {
    const { provider } = this;
    if (provider.count === undefined) return Promise.reject(this.#cannot('count()'));
    // Callers in one turn of the event loop, or while a count runs, share one: "users online"
    // on every page costs one store count per turn, not one per request (SQLite's blocks the loop).
    if (this.#counting !== undefined) return this.#counting;
    const counting = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#call('count', () => provider.count!(this.now())));
    this.#counting = counting;
    const done = (): void => {
      if (this.#counting === counting) this.#counting = undefined;
    };
    counting.then(done, done);
    return counting;
  }

  /** Deletes expired sessions now; resolves how many. */
  async gc(): Promise<number> {
    const onExpired = this.listenerCount('expired') > 0 ? (key: string) => this.#emit('expired', key) : undefined;
    const { provider } = this;
    if (provider.gc === undefined) return 0; // its backend expires sessions by itself
    return this.#call('gc', () => provider.gc!(this.now(), onExpired));
  }

  /** Every live session, for admin pages and "log out everywhere" tools. */
  async *sessions(): AsyncIterable<SessionInfo> {
    if (this.provider.entries === undefined) throw this.#cannot('sessions()');
    const iterator = this.provider.entries(this.now())[Symbol.asyncIterator]();
    for (;;) {
      const next = await this.#call('entries', () => iterator.next());
      if (next.done) return;
      if (!next.value.values.has(ALIAS_KEY)) yield sessionInfo(next.value);
    }
  }

  /** Stops the GC loop and closes the provider; afterwards the process can exit. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      clearTimeout(this.#gcTimer);
      await this.provider.close();
    })();
    return this.#closed;
  }

  /** Routes an error that has no request to go to: `onError` and the `error` event. @internal */
  reportError(err: unknown, key?: string): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.options.onError(error);
    if (this.listenerCount('error') > 0) this.emit('error', { id: key === undefined ? '' : eventId(key), error });
  }

  #scheduleGc(): void {
    // Chained timeouts, not setInterval: a slow sweep never overlaps the next.
    this.#gcTimer = setTimeout(() => {
      this.gc()
        .catch((err) => this.reportError(err))
        .finally(() => {
          if (this.#closed === undefined) this.#scheduleGc();
        });
    }, this.options.gcIntervalMs);
    this.#gcTimer.unref();
  }

  /** Emits `event` for the session stored under `key`; `started` (performance.now()) adds the store time. */
  #emit(event: Exclude<keyof ManagerEvents, 'error' | 'store'>, key: string, started?: number): void {
    if (this.listenerCount(event) === 0) return;
    const payload: SessionEvent = { id: eventId(key) };
    if (started !== undefined) payload.durationMs = performance.now() - started;
    this.emit(event, payload);
  }

  /** Runs a provider call; a failure becomes a 503 `ProviderError` naming the provider and the operation. */
  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    const timed = this.listenerCount('store') > 0;
    const started = timed ? performance.now() : 0;
    let ok = false;
    try {
      const result = await run();
      ok = true;
      return result;
    } catch (err) {
      throw this.#wrap(operation, err);
    } finally {
      if (timed) this.#storeEvent(operation, started, ok);
    }
  }

  #storeEvent(operation: string, started: number, ok: boolean): void {
    if (this.listenerCount('store') > 0) this.emit('store', { operation, provider: this.provider.name, durationMs: performance.now() - started, ok } satisfies StoreEvent);
  }

  /** A provider without `touch` refreshes a session with an update that changes no key. */
  #touch(key: string, expiresAt: number, now: number): Promise<boolean> {
    const { provider } = this;
    return provider.touch ? provider.touch(key, expiresAt, now) : provider.update(key, new Map(), expiresAt, now);
  }

  #cannot(what: 'count()' | 'sessions()' | 'listByUser()'): SessionError {
    const method = { 'count()': 'count', 'sessions()': 'entries', 'listByUser()': 'listByUser' }[what];
    return new SessionError(`${what} is not available: the ${this.provider.name} provider has no ${method}()`, { status: 501 });
  }

  #wrap(operation: string, err: unknown): ProviderError {
    if (err instanceof ProviderError) return err;
    return new ProviderError(this.provider.name, `${operation} failed: ${errorMessage(err)}`, err);
  }
}

/**
 * Where a session's own idle lifetime (milliseconds, `setLifetime`) is kept:
 * a value key no app can use (`Session` refuses keys that start with NUL), so
 * every provider stores, moves and updates it like any other key.
 * @internal
 */
export const LIFETIME_KEY = '\u0000lifetime';

/** When `renewAfter` last renewed the id (milliseconds): id age counts from it instead of `createdAt`. @internal */
export const RENEWED_KEY = '\u0000renewed';

/** How many renewals in a row one request follows within a grace window. */
const MAX_ALIAS_HOPS = 2;

/** `next(value)`, synchronously when `value` is not a promise: in-process providers answer without a tick. */
function then<T, R>(value: T | Promise<T>, next: (value: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/** Takes the manager's own entries (lifetime, user) out of stored values; answers them. */
function takeReserved(values: Map<string, string>): { idleMs?: number; userId?: string; renewedAt?: number } {
  const lifetime = values.get(LIFETIME_KEY);
  const user = values.get(USER_KEY);
  const renewed = values.get(RENEWED_KEY);
  values.delete(LIFETIME_KEY);
  values.delete(USER_KEY);
  values.delete(RENEWED_KEY);
  const idleMs = lifetime === undefined ? undefined : Number(lifetime);
  const renewedAt = renewed === undefined ? undefined : Number(renewed);
  return {
    idleMs: idleMs !== undefined && Number.isFinite(idleMs) && idleMs > 0 ? idleMs : undefined,
    userId: userFromJson(user),
    renewedAt: renewedAt !== undefined && Number.isFinite(renewedAt) ? renewedAt : undefined,
  };
}

/** A stored entry as listings show it: a handle, Dates, the user, the app's data only. */
function sessionInfo(entry: StoredEntry): SessionInfo {
  const values = new Map(entry.values);
  const { userId } = takeReserved(values);
  const data = Object.fromEntries([...values].map(([key, json]) => [key, JSON.parse(json)])) as SessionDataRecord;
  const info: SessionInfo = { handle: entry.sid, createdAt: new Date(entry.createdAt), expiresAt: new Date(entry.expiresAt), data };
  if (userId !== undefined) info.userId = userId;
  return info;
}

/** A stored session as the manager hands it to a request. @internal */
export interface LoadedSession {
  record: SessionRecord;
  values: Map<string, string>;
}

/** What `storageKey` produces: 43 characters of base64url. */
const HANDLE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * The key a session is stored under, which is also its handle: the SHA-256 of
 * its id. A copy of the store (a backup, a replica) then holds no usable id,
 * and 256 random bits need no key to be safe from guessing.
 */
export function storageKey(sid: string): string {
  // Returning visitors skip this: the transport keeps the key with each cookie value it verified.
  return createHash('sha256').update(sid).digest('base64url');
}

/** The short tag events and logs carry: the start of the storage key. */
function eventId(key: string): string {
  return key.slice(0, 12);
}

/** A short, stable, one-way tag for a session id, safe to log (the same as events carry). */
export function hashId(sid: string): string {
  return eventId(storageKey(sid));
}
