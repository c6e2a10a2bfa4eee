import type { IncomingMessage } from 'node:http';
import type { Manager, SessionRecord } from './manager';
import { allValues, hasChanges, resetSession, Session, takeChanges, type SessionHost } from './session';
import { withIdInUrl, type IncomingId, type IdTransport } from './transport';

/** What the response must carry about the id once the session is committed. */
export type IdOutcome =
  | { kind: 'none' }
  | { kind: 'send'; value: string; maxAgeMs: number; idChanged: boolean }
  | { kind: 'clear' };

/**
 * One request's view of its session: binds a `Session` to the manager, decides
 * what to write when (the commit), and what the response must say about the id.
 * Every storage step runs on one queue, so `save()`, `regenerate()`,
 * `destroy()` and the final commit never interleave.
 */
export class RequestSession implements SessionHost {
  readonly session: Session;
  readonly #manager: Manager;
  readonly #transport: IdTransport;
  readonly #req: IncomingMessage;
  /** The stored session this request is bound to; undefined until one exists. */
  #record: SessionRecord | undefined;
  /** The id a new, not yet stored session will get. */
  #pendingId: string | undefined;
  /** The encoded id the client sent, reusable when the id has not changed. */
  #incoming: IncomingId | undefined;
  #idChanged = false;
  #expiryRefreshed = false;
  #clearClient = false;
  #isNew: boolean;
  /** The last queued storage step, while any is in flight. */
  #queue: Promise<unknown> | undefined;

  constructor(manager: Manager, transport: IdTransport, req: IncomingMessage, incoming: IncomingId | undefined, loaded: { record: SessionRecord; values: Map<string, string> } | undefined) {
    this.#manager = manager;
    this.#transport = transport;
    this.#req = req;
    this.#incoming = loaded ? incoming : undefined;
    this.#record = loaded?.record;
    this.#isNew = loaded === undefined;
    this.session = new Session(loaded?.values ?? new Map(), this);
  }

  id(): string {
    if (this.#record) return this.#record.sid;
    this.#pendingId ??= this.#manager.generateId();
    return this.#pendingId;
  }

  isNew(): boolean {
    return this.#isNew;
  }

  url(path: string): string {
    return withIdInUrl(path, this.#manager.options.queryParam, this.#encodedId());
  }

  save(): Promise<void> {
    return this.#enqueue(() => this.#commit(false));
  }

  /** Saves pending changes before the response: `headersSent` when they can no longer carry a new id. */
  commit(headersSent: boolean): Promise<void> {
    return this.#enqueue(() => this.#commit(headersSent));
  }

  regenerate(): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#record === undefined) {
        this.#pendingId = undefined; // never stored: a new id costs nothing
        return;
      }
      // A session destroyed elsewhere (a logout) must not live on under a new id.
      if ((await this.#manager.touch(this.#record)) === undefined) {
        this.#lost();
        resetSession(this.session);
        return;
      }
      takeChanges(this.session); // folded into the values the new id gets
      this.#record = await this.#manager.regenerate(this.#record.sid, allValues(this.session));
      this.#incoming = undefined;
      this.#idChanged = true;
      this.#expiryRefreshed = true;
      this.#isNew = true;
    });
  }

  destroy(): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#record) await this.#manager.destroy(this.#record.sid);
      // Tell the client to forget any id it holds or we sent; a later set() starts a new session.
      this.#clearClient = this.#clearClient || this.#record !== undefined || this.#idChanged;
      this.#record = undefined;
      this.#pendingId = undefined;
      this.#incoming = undefined;
      this.#idChanged = false;
      this.#expiryRefreshed = false;
      this.#isNew = true;
      resetSession(this.session);
    });
  }

  /**
   * Whether committing would do anything: storage to write or a step still in
   * flight. When not, the response goes out at once, with no promise in the way.
   */
  hasPendingWork(): boolean {
    if (this.#queue !== undefined || hasChanges(this.session)) return true;
    const record = this.#record;
    if (record === undefined) return this.#storesEmpty();
    return this.#manager.shouldTouch(record, this.#manager.now());
  }

  /** What the response must carry about the id, after the last commit. */
  outcome(): IdOutcome {
    const record = this.#record;
    if (record !== undefined && (this.#idChanged || this.#expiryRefreshed)) {
      return {
        kind: 'send',
        value: this.#encodedId(),
        maxAgeMs: record.expiresAt - this.#manager.now(),
        idChanged: this.#idChanged,
      };
    }
    return this.#clearClient && record === undefined ? { kind: 'clear' } : { kind: 'none' };
  }

  #encodedId(): string {
    if (this.#incoming?.current && this.#record?.sid === this.#incoming.sid) return this.#incoming.raw;
    return this.#transport.encode(this.id(), this.#req);
  }

  async #commit(headersSent: boolean): Promise<void> {
    const manager = this.#manager;
    const record = this.#record;
    if (record === undefined) {
      if (!hasChanges(this.session) && !this.#storesEmpty()) return;
      if (headersSent) {
        manager.reportError(new Error('[session-manager] a new session got data after the response started; it cannot reach the client and was not saved'));
        return;
      }
      takeChanges(this.session);
      // An id the app already saw (e.g. in links from url()) is the one stored.
      this.#record = await manager.create(allValues(this.session), this.#pendingId);
      this.#pendingId = undefined;
      this.#idChanged = true;
      return;
    }
    if (hasChanges(this.session)) {
      const expiresAt = await manager.update(record, takeChanges(this.session));
      if (expiresAt === undefined) return this.#lost();
      record.expiresAt = expiresAt;
      this.#expiryRefreshed = true;
      return;
    }
    if (!manager.shouldTouch(record, manager.now())) return;
    // Awaited, so a session destroyed meanwhile (a logout elsewhere) is never re-sent.
    // A failed refresh is reported but does not fail a request that only read.
    const expiresAt = await manager.touch(record).catch((err: unknown) => {
      manager.reportError(err, record.sid);
      return null;
    });
    if (expiresAt === null) return;
    if (expiresAt === undefined) return this.#lost();
    record.expiresAt = expiresAt;
    this.#expiryRefreshed = true;
  }

  /** saveUninitialized stores a session with nothing in it — but not right after a logout. */
  #storesEmpty(): boolean {
    return this.#manager.options.saveUninitialized && !this.#clearClient;
  }

  /** The session was destroyed or expired elsewhere: nothing brings it back, and its id is not re-sent. */
  #lost(): void {
    this.#record = undefined;
    this.#incoming = undefined;
    this.#idChanged = false;
    this.#expiryRefreshed = false;
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
