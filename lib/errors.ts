/** Base class of every error this package throws or passes to `next(err)`. */
export class SessionError extends Error {
  /** HTTP status an error handler should answer with. */
  status: number;

  constructor(message: string, options: { cause?: unknown; status?: number } = {}) {
    super(`[session-manager] ${message}`, { cause: options.cause });
    this.name = new.target.name;
    this.status = options.status ?? 500;
  }
}

/** A configuration mistake, thrown once at `sessions()` / `createManager()` time. */
export class OptionError extends SessionError {
  constructor(message: string) {
    super(message);
  }
}

/**
 * A store failed. Answers 503: the request cannot be served without its session,
 * and a silent "no session" would look like a logout.
 */
export class ProviderError extends SessionError {
  readonly provider: string;

  constructor(provider: string, message: string, cause?: unknown) {
    super(`[${provider}] ${message}`, { cause, status: 503 });
    this.provider = provider;
  }
}

/**
 * The message of an error we did not make (a driver's, the file system's), or
 * `String(err)` when it has none: for composing our own messages.
 *
 * @example new ProviderError('sqlite', `read failed: ${errorMessage(err)}`, err)
 */
export function errorMessage(err: unknown): string {
  // Not `instanceof Error`: errors made in another realm (vm contexts, jest) fail that test.
  const message = typeof err === 'object' && err !== null ? (err as { message?: unknown }).message : undefined;
  return typeof message === 'string' ? message : String(err);
}

/** The Node.js error code (`'ENOENT'`, `'EEXIST'`…) of a system error, or `undefined`. */
export function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}
