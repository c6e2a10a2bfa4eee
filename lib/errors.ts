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
