import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestState } from './app-prototypes';
import type { GateSession } from './response-gate';
import { LIFETIME_KEY, RenewalRace, type LoadedSession, type Manager, type SessionRecord } from './manager';
import { USER_KEY } from './providers/provider';
import { debug } from './debug';
import { SessionError } from './errors';
import { ChangeLog, Session, type SessionHost } from './session';
import { withIdInUrl, type IdOutcome, type IncomingId, type IdTransport } from './transport';

/** What a regenerate rejects with when the session is gone (destroyed, expired or renewed elsewhere). */
const GONE = Symbol('session gone');

/**
 * Where this request's session stands; every step below moves between these.
 * - `new`: nothing stored (a new visitor, or after a logout: `clearClient`
 *   says the client holds an id it must forget, `destroyed` that no empty
 *   session may be stored in this request any more).
 * - `stored`: bound to a stored session. `idChanged`: this request created or
 *   regenerated it, so the id must be sent; `refreshed`: its expiry moved, so
 *   the cookie's Max-Age must be re-sent.
 * - `lost`: the session was destroyed or expired elsewhere during this
 *   request. Terminal: nothing is stored or sent for it any more.
 */
type IdState =
  | { kind: 'new'; pendingId: string | undefined; clearClient: boolean; destroyed: boolean }
  | { kind: 'stored'; record: SessionRecord; idChanged: boolean; refreshed: boolean }
  | { kind: 'lost'; throwawayId: string | undefined };

/**
 * One request's view of its session: binds a `Session` to the manager, decides
 * what to write when (the commit), and what the response must say about the id.
 * Every storage step runs on one queue, so `save()`, `regenerate()`,
 * `destroy()` and the final commit never interleave.
 */
export class RequestSession implements SessionHost, GateSession, RequestState {
  readonly session: Session;
  /** What `req.session` is: `session`, or its express-session-compatible view. */
  exposed: unknown;
  readonly #log: ChangeLog;
  readonly #manager: Manager;
  readonly #transport: IdTransport;
  readonly #req: IncomingMessage;
  #state: IdState;
  /** The id as the client sent it (reusable when the id has not changed), and by which transport. */
  readonly #incoming: IncomingId | undefined;
  /** The last queued storage step, while any is in flight. */
  #queue: Promise<unknown> | undefined;
  /** Runs first in every commit: lets a compatibility layer turn in-place edits into per-key changes. */
  beforeCommit: (() => void) | undefined;
  /**
   * An explicit `save()` stored the session: before the response carries its
   * id, the final commit checks it still exists (a logout may have landed since).
   */
  #recheck = false;
  /** A lifetime set by `setLifetime()` and not stored yet: milliseconds, or null for the default. */
  #lifetimeChange: number | null | undefined;
  /** A user bound by `bindUser()` and not stored yet. */
  #userChange: string | null | undefined;
  /** A user whose binding the last write stored. */
  #newlyBound: string | undefined;
  /** `renewAfter` wants a new id for this session: the commit gives it one. */
  #renewDue: boolean;

  constructor(manager: Manager, transport: IdTransport, req: IncomingMessage, incoming: IncomingId | undefined, loaded: LoadedSession | undefined) {
    this.#manager = manager;
    this.#transport = transport;
    this.#req = req;
    this.#incoming = loaded ? incoming : undefined;
    // An id renewed moments ago (within its grace window) loads the new session, whose id the response carries.
    const renamed = loaded !== undefined && loaded.record.sid !== incoming?.sid;
    this.#state = loaded
      ? { kind: 'stored', record: loaded.record, idChanged: renamed, refreshed: false }
      : { kind: 'new', pendingId: undefined, clearClient: false, destroyed: false };
    this.#renewDue = loaded !== undefined && !renamed && manager.renewalDue(loaded.record); // the clock is read only when renewAfter is set
    this.#log = new ChangeLog(loaded?.values ?? new Map());
    this.session = new Session(this.#log, this);
  }

  id(): string {
    const state = this.#state;
    switch (state.kind) {
      case 'stored':
        return state.record.sid;
      case 'new':
        // Drawn on first use, and kept: an id the app already saw (e.g. in links from url()) is the one stored.
        return (state.pendingId ??= this.#manager.generateId());
      case 'lost':
        return (state.throwawayId ??= this.#manager.generateId()); // never stored, never sent
    }
  }

  isNew(): boolean {
    return this.#state.kind !== 'stored' || this.#state.idChanged;
  }

  handle(): string | undefined {
    return this.#state.kind === 'stored' ? this.#state.record.key : undefined;
  }

  url(path: string): string {
    return withIdInUrl(path, this.#manager.options.queryParam, this.#encodedId());
  }

  setLifetime(seconds: number | null): void {
    if (seconds !== null && (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0)) {
      throw new TypeError(`[session-manager] setLifetime() takes a positive number of seconds or null, got ${String(seconds)}`);
    }
    if (seconds !== null && seconds * 1000 > 2 ** 47) throw new SessionError('setLifetime(): lifetime too long');
    this.#lifetimeChange = seconds === null ? null : seconds * 1000;
  }

  bindUser(userId: string | null): void {
    if (userId !== null && (typeof userId !== 'string' || userId === '' || userId.length > 1024)) {
      throw new TypeError('[session-manager] bindUser() takes a non-empty string user id (at most 1024 characters), or null to unbind');
    }
    this.#userChange = userId;
  }

  userId(): string | undefined {
    if (this.#userChange !== undefined) return this.#userChange ?? undefined;
    return this.#state.kind === 'stored' ? this.#state.record.userId : undefined;
  }

  expiresAt(): Date {
    const state = this.#state;
    const now = this.#manager.now();
    if (state.kind !== 'stored') return new Date(this.#manager.newExpiry(now, this.#idleMs()));
    if (this.#lifetimeChange === undefined) return new Date(state.record.expiresAt);
    return new Date(this.#manager.expiryFor({ createdAt: state.record.createdAt, idleMs: this.#idleMs() }, now));
  }

  /** This session's idle lifetime after pending changes (undefined: the manager's default). */
  #idleMs(): number | undefined {
    if (this.#lifetimeChange !== undefined) return this.#lifetimeChange ?? undefined;
    return this.#state.kind === 'stored' ? this.#state.record.idleMs : undefined;
  }

  /** This request's changes, the lifetime included; the log starts empty again. */
  #takeChanges(): Map<string, string | undefined> {
    const changes = this.#log.take();
    if (this.#userChange !== undefined) {
      changes.set(USER_KEY, this.#userChange === null ? undefined : JSON.stringify(this.#userChange));
      if (this.#state.kind === 'stored') this.#state.record.userId = this.#userChange ?? undefined;
      this.#userChange = undefined;
    }
    if (this.#lifetimeChange !== undefined) {
      changes.set(LIFETIME_KEY, this.#lifetimeChange === null ? undefined : String(this.#lifetimeChange));
      if (this.#state.kind === 'stored') this.#state.record.idleMs = this.#lifetimeChange ?? undefined;
      this.#lifetimeChange = undefined;
    }
    return changes;
  }

  /**
   * Runs a store write of this request's changes. When it fails, nothing is
   * lost: the changes wait for the next commit (which fails the request in
   * turn if the store is still down) instead of vanishing.
   */
  async #storing<T>(write: (changes: Map<string, string | undefined>) => Promise<T>): Promise<T> {
    const lifetime = this.#lifetimeChange;
    const user = this.#userChange;
    const record = this.#state.kind === 'stored' ? this.#state.record : undefined;
    const before = { idleMs: record?.idleMs, userId: record?.userId };
    const changes = this.#takeChanges();
    let result: T;
    try {
      result = await write(changes);
    } catch (err) {
      changes.delete(LIFETIME_KEY);
      changes.delete(USER_KEY);
      this.#log.restore(changes);
      this.#lifetimeChange ??= lifetime;
      this.#userChange ??= user;
      if (record) Object.assign(record, before);
      throw err;
    }
    if (typeof user === 'string') this.#newlyBound = user;
    return result;
  }

  /** A binding just stored may take the user past maxSessionsPerUser: the oldest of the others end. */
  async #enforceUserCap(): Promise<void> {
    const user = this.#newlyBound;
    this.#newlyBound = undefined;
    if (user !== undefined && this.#state.kind === 'stored') await this.#manager.enforceUserCap(user, this.#state.record.key);
  }

  #hasChanges(): boolean {
    return this.#log.hasChanges() || this.#lifetimeChange !== undefined || this.#userChange !== undefined;
  }

  save(): Promise<boolean> {
    return this.#enqueue(async () => {
      await this.#commit(false);
      if (this.#newlyBound !== undefined) await this.#enforceUserCap();
      this.#recheck = this.#state.kind === 'stored';
    }).then(() => this.#state.kind !== 'lost');
  }

  /** Saves pending changes before the response: `headersSent` when they can no longer carry a new id. */
  commit(headersSent: boolean): Promise<void> {
    return this.#enqueue(async () => {
      await this.#commit(headersSent);
      if (this.#newlyBound !== undefined) await this.#enforceUserCap();
    });
  }

  regenerate(graceMs = 0): Promise<void> {
    return this.#enqueue(async () => {
      const state = this.#state;
      if (state.kind === 'new') {
        state.pendingId = undefined; // never stored: a new id costs nothing
        return;
      }
      if (state.kind === 'lost') return;
      this.#renewDue = false;
      await this.#move(state, graceMs, false);
      if (this.#newlyBound !== undefined) await this.#enforceUserCap();
    });
  }

  /**
   * One atomic step: the stored values as they are now, plus this request's
   * changes, under a new id. The old id dies, or leads to the new session for
   * `graceMs`. Resolves false when an automatic renewal lost a race to another.
   */
  async #move(state: { record: SessionRecord }, graceMs: number, automatic: boolean): Promise<boolean> {
    let moved: LoadedSession;
    try {
      // A session found gone rejects too, so that #storing puts this request's changes back.
      moved = await this.#storing(async (changes) => (await this.#manager.regenerate(state.record, changes, { graceMs, automatic })) ?? Promise.reject(GONE));
    } catch (err) {
      if (err instanceof RenewalRace) return false; // the changes were put back: the caller saves them under the old id
      if (err !== GONE) throw err;
      // Renewed by another request meanwhile (grace window): regenerate the session it became.
      const renamed = await this.#manager.renamedTo(state.record);
      if (renamed === undefined) {
        this.#lose(); // destroyed elsewhere: it must not live on under a new id
        return true;
      }
      this.#state = { kind: 'stored', record: renamed.record, idChanged: true, refreshed: false };
      return this.#move(this.#state, graceMs, automatic);
    }
    this.#log.reset(moved.values);
    this.#state = { kind: 'stored', record: moved.record, idChanged: true, refreshed: true };
    debug('regenerated %s as %s', state.record.key.slice(0, 12), moved.record.key.slice(0, 12));
    return true;
  }

  /**
   * Reads the session from the store again, dropping this request's unsaved
   * changes (express-session's `reload`). A session gone meanwhile is lost.
   */
  reload(): Promise<void> {
    return this.#enqueue(async () => {
      const state = this.#state;
      if (state.kind !== 'stored') return;
      const loaded = await this.#manager.load(state.record.sid);
      if (loaded === undefined) return this.#lose();
      this.#lifetimeChange = undefined;
      this.#log.reset(loaded.values);
      if (loaded.record.sid !== state.record.sid) this.#adopt(state, loaded.record); // renewed meanwhile
      else Object.assign(state.record, { expiresAt: loaded.record.expiresAt, idleMs: loaded.record.idleMs });
    });
  }

  destroy(): Promise<void> {
    return this.#enqueue(async () => {
      const state = this.#state;
      if (state.kind === 'stored') {
        await this.#manager.destroyKey(state.record.key);
        // Renewed by another request meanwhile: the logout ends the session it became.
        const renamed = await this.#manager.renamedTo(state.record);
        if (renamed !== undefined) await this.#manager.destroyKey(renamed.record.key);
        debug('destroyed %s', state.record.key.slice(0, 12));
      }
      // The client forgets an id it sent us; an id created in this request never reached it.
      this.#state = { kind: 'new', pendingId: undefined, clearClient: this.#incoming !== undefined, destroyed: true };
      this.#lifetimeChange = undefined;
      this.#log.reset();
    });
  }

  /**
   * Whether committing would do anything: storage to write or a step still in
   * flight. When not, the response goes out at once, with no promise in the way.
   */
  hasPendingWork(): boolean {
    if (this.#queue !== undefined) return true;
    this.beforeCommit?.();
    const state = this.#state;
    switch (state.kind) {
      case 'stored':
        return this.#recheck || this.#renewDue || this.#hasChanges() || this.#manager.shouldTouch(state.record, this.#manager.now());
      case 'new':
        return this.#hasChanges() || this.#storesEmpty(state);
      case 'lost':
        return false;
    }
  }

  /**
   * The common commit done at once, with no promise: this request's changes
   * to a session it loaded, on a provider that writes in-process. True when
   * done; false leaves everything to `commit()`.
   */
  commitNow(): boolean {
    const state = this.#state;
    if (state.kind !== 'stored' || this.#queue !== undefined || this.#renewDue || this.#recheck) return false;
    if (this.#userChange !== undefined || this.#lifetimeChange !== undefined || !this.#log.hasChanges()) return false;
    const changes = this.#log.take();
    const expiresAt = this.#manager.updateNow(state.record, changes);
    if (expiresAt === false) {
      this.#log.restore(changes);
      return false;
    }
    if (debug.enabled) debug('saved %s', state.record.key.slice(0, 12));
    if (expiresAt !== state.record.expiresAt || this.#incoming?.current === false) {
      state.record.expiresAt = expiresAt;
      state.refreshed = true;
    }
    return true;
  }

  /** Sets the id headers on `res` (cookie, header transport, Cache-Control), just before its headers go out. */
  writeIdHeaders(res: ServerResponse): void {
    this.#transport.writeOutcome(this.#req, res, this.outcome());
  }

  /** What the response must carry about the id, after the last commit. */
  outcome(): IdOutcome {
    const state = this.#state;
    switch (state.kind) {
      case 'stored':
        if (!state.idChanged && !state.refreshed) return { kind: 'none' };
        return {
          kind: 'send',
          value: this.#encodedId(),
          maxAgeMs: state.record.expiresAt - this.#manager.now(),
          idChanged: state.idChanged,
          via: state.idChanged ? undefined : this.#incoming?.via,
        };
      case 'new':
        return state.clearClient ? { kind: 'clear' } : { kind: 'none' };
      case 'lost':
        return { kind: 'none' };
    }
  }

  #encodedId(): string {
    const state = this.#state;
    const incoming = this.#incoming;
    if (state.kind === 'stored' && !state.idChanged && incoming?.current) return incoming.raw;
    return this.#transport.encode(this.id(), this.#req);
  }

  async #commit(headersSent: boolean): Promise<void> {
    this.beforeCommit?.();
    const manager = this.#manager;
    const state = this.#state;
    switch (state.kind) {
      case 'lost':
        return;
      case 'new': {
        if (!this.#hasChanges() && !this.#storesEmpty(state)) return;
        if (headersSent) {
          manager.reportError(new Error('[session-manager] a new session got data after the response started; it cannot reach the client and was not saved'));
          return;
        }
        const idleMs = this.#idleMs();
        const userId = this.#userChange ?? undefined;
        // The changes are folded into the values stored.
        const record = await this.#storing(() => manager.create(new Map(this.#log.values), state.pendingId, idleMs, userId));
        this.#state = { kind: 'stored', record, idChanged: true, refreshed: true };
        debug('created %s', record.key.slice(0, 12));
        return;
      }
      case 'stored': {
        if (this.#renewDue && !headersSent) {
          this.#renewDue = false;
          if (await this.#move(state, manager.options.renewGraceMs, true)) return;
        }
        let expiresAt: number | null | undefined;
        if (this.#hasChanges()) {
          this.#recheck = false; // the update checks the session exists
          expiresAt = await this.#storing((changes) => this.#following(state, (record) => manager.update(record, changes)));
        } else {
          // An expiry this request already wrote needs no refresh, unless a save() wrote it and the id is about to go out.
          const recheck = this.#recheck;
          this.#recheck = false;
          if (!recheck && (state.refreshed || !manager.shouldTouch(state.record, manager.now()))) return;
          // Awaited, so a session destroyed meanwhile (a logout elsewhere) is never re-sent.
          // A failed refresh is reported but does not fail a request that only read.
          expiresAt = await this.#following(state, (record) => manager.touch(record)).catch((err: unknown) => {
            manager.reportError(err, state.record.key);
            return null;
          });
          if (expiresAt === null) return;
        }
        if (expiresAt === undefined) return this.#lose();
        debug('saved %s', state.record.key.slice(0, 12));
        // The expiry did not slide: the client's cookie still holds, unless it is signed with an old secret.
        if (expiresAt === state.record.expiresAt && this.#incoming?.current !== false) return;
        state.record.expiresAt = expiresAt;
        state.refreshed = true;
      }
    }
  }

  /**
   * Runs a write on the stored session; when the session is gone because
   * another request renewed its id with a grace window, runs it again on the
   * session it became, which this response then names.
   */
  async #following(state: Extract<IdState, { kind: 'stored' }>, write: (record: SessionRecord) => Promise<number | undefined>): Promise<number | undefined> {
    const expiresAt = await write(state.record);
    if (expiresAt !== undefined) return expiresAt;
    const renamed = await this.#manager.renamedTo(state.record);
    if (renamed === undefined) return undefined;
    const { userId, idleMs } = state.record; // this request's own changes to them
    this.#adopt(state, Object.assign(renamed.record, { userId, idleMs }));
    return write(state.record);
  }

  /** Another request renewed this session's id: this one goes on with the new id, which its response sends. */
  #adopt(state: Extract<IdState, { kind: 'stored' }>, record: SessionRecord): void {
    debug('followed a renewed id to %s', record.key.slice(0, 12));
    state.record = record;
    state.idChanged = true;
  }

  /** saveUninitialized stores a session with nothing in it — but not once this request logged out. */
  #storesEmpty(state: { destroyed: boolean }): boolean {
    return this.#manager.options.saveUninitialized && !state.destroyed;
  }

  /**
   * The session was destroyed or expired elsewhere: nothing brings it back.
   * This request goes on as an empty, anonymous session that stores nothing
   * and never re-sends the dead id.
   */
  #lose(): void {
    if (debug.enabled) debug('lost %s: destroyed or expired elsewhere during the request', this.handle()?.slice(0, 12));
    this.#state = { kind: 'lost', throwawayId: undefined };
    this.#lifetimeChange = undefined;
    this.#log.reset();
  }

  #enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.#queue === undefined ? step() : this.#queue.then(step);
    const settled: Promise<void> = run.then(
      () => this.#settle(settled),
      () => this.#settle(settled),
    );
    this.#queue = settled;
    return run;
  }

  #settle(step: Promise<unknown>): void {
    if (this.#queue === step) this.#queue = undefined;
  }
}
