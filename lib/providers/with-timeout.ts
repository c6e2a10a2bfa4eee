import { errorMessage, ProviderError } from '../errors';

interface Pending {
  deadline: number;
  operation: string;
  fail: (error: ProviderError) => void;
}

/**
 * Bounds the calls to a networked backend (redis, postgres) in time, so a hung
 * server or a dropped packet turns into an error instead of a request that
 * never ends. Every failure comes out as a `ProviderError` of `provider`:
 * `"<operation> timed out after <timeoutMs> ms"`, or `"<operation> failed:
 * <the driver's message>"` with the driver's error as `cause`. A
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
          reject(error instanceof ProviderError ? error : new ProviderError(this.provider, `${operation} failed: ${errorMessage(error)}`, error));
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
