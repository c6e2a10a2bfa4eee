import { errorMessage, ProviderError } from '../errors';

interface Pending {
  deadline: number;
  operation: string;
  fail: (error: ProviderError) => void;
}

/** Longest driver message kept: enough to diagnose, too short to carry a whole row. */
const MAX_MESSAGE = 300;

/**
 * A driver's error (pg, better-sqlite3, redis), rebuilt without what may quote
 * session data: only its `name`, its `code` and its message with every
 * double-quoted span blanked (servers quote the offending value there:
 * `invalid input syntax for type uuid: "<sid>"`). pg's `detail`
 * (`Key (sid)=(...) already exists`), `where`, `query`, `parameters` and the
 * original stack are dropped: an error goes to logs, a session id or value must not.
 *
 * @example redactedDriverError(pgError) // Error { name: 'error', code: '23505', message: 'duplicate key value violates unique constraint "…"' }
 */
export function redactedDriverError(error: unknown): Error {
  const message = errorMessage(error).replace(/"[^"]*(?:"|$)/g, '"…"');
  const redacted = new Error(message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message);
  const { name, code } = (typeof error === 'object' && error !== null ? error : {}) as { name?: unknown; code?: unknown };
  if (typeof name === 'string' && /^\w{1,64}$/.test(name)) redacted.name = name;
  // Codes are fixed identifiers ('23505', 'SQLITE_BUSY', 'ECONNRESET'), never data.
  if ((typeof code === 'string' && /^[\w.-]{1,64}$/.test(code)) || typeof code === 'number') Object.assign(redacted, { code });
  return redacted;
}

/**
 * The `ProviderError` for a failed driver call: `"<operation> failed: <redacted
 * message>"`, with {@link redactedDriverError} as `cause`. A `ProviderError` is returned unchanged.
 */
export function driverFailure(provider: string, operation: string, error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  const cause = redactedDriverError(error);
  return new ProviderError(provider, `${operation} failed: ${cause.message}`, cause);
}

/**
 * Bounds the calls to a networked backend (redis, postgres) in time, so a hung
 * server or a dropped packet turns into an error instead of a request that
 * never ends. Every failure comes out as a `ProviderError` of `provider`:
 * `"<operation> timed out after <timeoutMs> ms"`, or the {@link driverFailure}
 * of the driver's error (redacted: no id or value in it). A
 * `ProviderError` thrown by `work` passes through unchanged.
 *
 * One coarse, unref'd timer serves every call in flight (checking a tenth of
 * `timeoutMs` apart) instead of a timer per call, which the hot path would pay
 * for on every request. A call may so run up to 10% past its timeout. The
 * timer only stops the wait: the driver may still complete the call later.
 *
 * @example
 * const deadlines = new Deadlines('redis', 5000);
 * const reply = await deadlines.run('read', () => client.sendCommand(['HGETALL', key]));
 */
export class Deadlines {
  readonly #pending = new Set<Pending>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly provider: string,
    readonly timeoutMs: number,
  ) {}

  run<T>(operation: string, work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { deadline: Date.now() + this.timeoutMs, operation, fail: reject };
      this.#pending.add(pending);
      this.#timer ??= setTimeout(() => this.#sweep(), this.#interval()).unref();
      let call: Promise<T>;
      try {
        call = work();
      } catch (error) {
        call = Promise.reject(error);
      }
      call.then(
        (value) => {
          this.#pending.delete(pending);
          resolve(value);
        },
        (error: unknown) => {
          this.#pending.delete(pending);
          reject(driverFailure(this.provider, operation, error));
        },
      );
    });
  }

  /** Stops the timer (at close: nothing is waited for any more). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #interval(): number {
    return Math.max(1, Math.ceil(this.timeoutMs / 10));
  }

  #sweep(): void {
    this.#timer = undefined;
    const now = Date.now();
    for (const pending of this.#pending) {
      if (pending.deadline > now) continue;
      this.#pending.delete(pending);
      pending.fail(new ProviderError(this.provider, `${pending.operation} timed out after ${this.timeoutMs} ms`));
    }
    if (this.#pending.size > 0) this.#timer = setTimeout(() => this.#sweep(), this.#interval()).unref();
  }
}
