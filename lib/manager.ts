import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { errorMessage, ProviderError, SessionError } from './errors';
import { resolveOptions, SESSION_ID_PATTERN, type ResolvedOptions, type SessionOptions } from './options';
import type { Provider, StoredSession } from './providers/provider';
import { resolveProvider } from './providers/registry';

/** One entry of `manager.sessions()`. */
export interface SessionInfo {
  sessionID: string;
  data: Record<string, unknown>;
  expiresAt: Date;
}

/** Where a stored session stands: its id and lifetimes (milliseconds since the epoch). */
export interface SessionRecord {
  sid: string;
  createdAt: number;
  expiresAt: number;
}

/** Payload of every manager event: `id` is a short hash of the session id, never the id itself. */
export interface SessionEvent {
  id: string;
  error?: Error;
}

const CREATE_ATTEMPTS = 3;

/**
 * Owns ids, lifetimes and the provider: one per app. It turns `maxLifetime`
 * and `absoluteLifetime` into one absolute deadline per session, so providers
 * only store `expiresAt`. It runs the GC loop and reports what happens as
 * events: `created`, `regenerated`, `destroyed`, `expired`, `unknownId`,
 * `error`.
 *
 * @example
 * const manager = createManager({ provider: 'memory' });
 * console.log(await manager.count(), 'users online');
 */
export class Manager extends EventEmitter {
  readonly options: ResolvedOptions;
  readonly provider: Provider;
  #gcTimer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;

  constructor(options: SessionOptions = {}) {
    super();
    this.options = resolveOptions(options);
    this.provider = resolveProvider(this.options.provider, this.options.providerOptions);
    this.#scheduleGc();
  }

  /** The current time in milliseconds (the injectable clock). */
  now(): number {
    return this.options.clock();
  }

  /** A fresh id from `genid`, checked so a bad generator fails loudly instead of issuing weak ids. */
  generateId(): string {
    const sid = this.options.genid();
    if (typeof sid !== 'string' || !SESSION_ID_PATTERN.test(sid)) {
      throw new SessionError(`genid returned ${JSON.stringify(sid)}: ids must be 16–256 characters of [A-Za-z0-9_-]`);
    }
    return sid;
  }

  /** The deadline of a session created at `createdAt` and used at `now`: idle timeout, capped by the absolute one. */
  expiryFor(createdAt: number, now: number): number {
    const idle = now + this.options.maxLifetimeMs;
    const { absoluteLifetimeMs } = this.options;
    return absoluteLifetimeMs === undefined ? idle : Math.min(idle, createdAt + absoluteLifetimeMs);
  }

  /** Whether a read-only use at `now` should refresh the stored expiry (throttled by `touchAfter`). */
  shouldTouch(record: SessionRecord, now: number): boolean {
    const gain = this.expiryFor(record.createdAt, now) - record.expiresAt;
    return gain > 0 && gain >= this.options.touchAfterMs;
  }

  /**
   * The live session stored under `sid`, or undefined (unknown, destroyed or
   * expired: never adopted). Answers synchronously when the provider can
   * (`readNow`), else with a Promise.
   */
  load(sid: string): StoredSession | undefined | Promise<StoredSession | undefined> {
    const { provider } = this;
    if (provider.readNow === undefined) return this.#call('read', () => provider.read(sid)).then((stored) => this.#live(sid, stored));
    try {
      return this.#live(sid, provider.readNow(sid));
    } catch (err) {
      return Promise.reject(this.#wrap('read', err));
    }
  }

  #live(sid: string, stored: StoredSession | undefined): StoredSession | undefined {
    if (stored === undefined) {
      this.#emit('unknownId', sid);
      return undefined;
    }
    if (stored.expiresAt <= this.now()) {
      this.#emit('expired', sid);
      this.provider.destroy(sid).catch((err) => this.reportError(err, sid));
      return undefined;
    }
    return stored;
  }

  /** Stores a new session with `values` under `preferredSid` when given and free, else a fresh id. */
  async create(values: ReadonlyMap<string, string>, preferredSid?: string): Promise<SessionRecord> {
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      const sid = attempt === 0 && preferredSid !== undefined ? preferredSid : this.generateId();
      const createdAt = this.now();
      const expiresAt = this.expiryFor(createdAt, createdAt);
      if (await this.#call('create', () => this.provider.create(sid, values, createdAt, expiresAt))) {
        this.#emit('created', sid);
        return { sid, createdAt, expiresAt };
      }
    }
    throw new SessionError(`genid produced ${CREATE_ATTEMPTS} ids in a row that were already in use`);
  }

  /** Applies per-key changes and slides the expiry; resolves the new expiry, or undefined when the session is gone. */
  async update(record: SessionRecord, changes: ReadonlyMap<string, string | undefined>): Promise<number | undefined> {
    const now = this.now();
    const expiresAt = this.expiryFor(record.createdAt, now);
    const updated = await this.#call('update', () => this.provider.update(record.sid, changes, expiresAt, now));
    return updated ? expiresAt : undefined;
  }

  /** Slides the expiry; resolves the new expiry, or undefined when the session is gone. */
  async touch(record: SessionRecord): Promise<number | undefined> {
    const now = this.now();
    const expiresAt = this.expiryFor(record.createdAt, now);
    const touched = await this.#call('touch', () => this.provider.touch(record.sid, expiresAt, now));
    return touched ? expiresAt : undefined;
  }

  /** Moves a session's data to a fresh id; the old id is dead afterwards. */
  async regenerate(oldSid: string, values: ReadonlyMap<string, string>): Promise<SessionRecord> {
    const record = await this.create(values);
    await this.destroy(oldSid);
    this.#emit('regenerated', record.sid);
    return record;
  }

  /** Deletes a session (log out). A missing id is a no-op. */
  async destroy(sid: string): Promise<void> {
    await this.#call('destroy', () => this.provider.destroy(sid));
    this.#emit('destroyed', sid);
  }

  /** How many sessions are live now: the online-users count. */
  count(): Promise<number> {
    return this.#call('count', () => this.provider.count(this.now()));
  }

  /** Deletes expired sessions now; resolves how many. */
  async gc(): Promise<number> {
    const onExpired = this.listenerCount('expired') > 0 ? (sid: string) => this.#emit('expired', sid) : undefined;
    return this.#call('gc', () => this.provider.gc(this.now(), onExpired));
  }

  /** Every live session, for admin pages and "log out everywhere" tools. */
  async *sessions(): AsyncIterable<SessionInfo> {
    const iterator = this.provider.entries(this.now())[Symbol.asyncIterator]();
    for (;;) {
      const next = await this.#call('entries', () => iterator.next());
      if (next.done) return;
      const { sid, values, expiresAt } = next.value;
      const data = Object.fromEntries([...values].map(([key, json]) => [key, JSON.parse(json)]));
      yield { sessionID: sid, data, expiresAt: new Date(expiresAt) };
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

  /** Routes an error that has no request to go to: `onError` and the `error` event. */
  reportError(err: unknown, sid?: string): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.options.onError(error);
    if (this.listenerCount('error') > 0) this.emit('error', { id: sid === undefined ? '' : hashId(sid), error });
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

  #emit(event: string, sid: string): void {
    if (this.listenerCount(event) > 0) this.emit(event, { id: hashId(sid) } satisfies SessionEvent);
  }

  /** Runs a provider call; a failure becomes a 503 `ProviderError` naming the provider and the operation. */
  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.#wrap(operation, err);
    }
  }

  #wrap(operation: string, err: unknown): ProviderError {
    if (err instanceof ProviderError) return err;
    return new ProviderError(this.provider.name, `${operation} failed: ${errorMessage(err)}`, err);
  }
}

/** A short, stable, one-way tag for a session id, safe to log. */
export function hashId(sid: string): string {
  return createHash('sha256').update(sid).digest('base64url').slice(0, 12);
}
