import type { IncomingMessage, ServerResponse } from 'node:http';
import { SessionError } from './errors';
import type { IdOutcome, RequestSession } from './request-session';
import type { IdTransport } from './transport';

type Method = 'writeHead' | 'write' | 'end';
type Args = unknown[];
type AnyMethod = (this: ServerResponse, ...args: Args) => unknown;

const METHODS: readonly Method[] = ['writeHead', 'write', 'end'];
const hooks = new WeakMap<ServerResponse, ResponseHook>();
const patchedPrototypes = new WeakSet<object>();

/**
 * Holds a response back until its session is committed: the first
 * `writeHead`/`write`/`end` starts the commit, and nothing reaches the client
 * until it succeeds. On failure the handler's response is discarded and the
 * error goes to `next(err)`; once streaming has begun, a failed final commit
 * aborts the response instead of completing it. A response with nothing to
 * commit goes out at once, with no promise in the way.
 */
export class ResponseHook {
  #state: 'open' | 'committing' | 'streaming' | 'failed' = 'open';
  /** Calls go straight to the real methods: while we forward one, and for good once released. */
  #passing = false;
  #deferredHead: Args | undefined;
  #pendingEnd: Args | undefined;
  #endedWhileOpen = false;
  /** Writes held back until the commit is done (created on the first one). */
  #queued: Args[] | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly session: RequestSession,
    readonly transport: IdTransport,
    readonly next: (err?: unknown) => void,
    readonly report: (err: unknown) => void,
  ) {}

  /** Starts intercepting `res`. */
  install(): void {
    hooks.set(this.res, this);
    interceptMethods(this.res);
  }

  get passing(): boolean {
    return this.#passing;
  }

  intercept(method: Method, args: Args): unknown {
    switch (method) {
      case 'writeHead':
        return this.#onWriteHead(args);
      case 'write':
        return this.#onWrite(args);
      case 'end':
        return this.#onEnd(args);
    }
  }

  #onWriteHead(args: Args): unknown {
    if (this.#state === 'streaming') return this.#forward('writeHead', args);
    this.#deferredHead = args;
    return this.res;
  }

  #onWrite(args: Args): unknown {
    if (this.#state === 'streaming') return this.#forward('write', args);
    if (this.#state === 'failed') return false;
    (this.#queued ??= []).push(args);
    this.#start();
    return false; // ask streams to wait for 'drain' until the commit is done
  }

  #onEnd(args: Args): unknown {
    switch (this.#state) {
      case 'open':
        if (!this.session.hasPendingWork()) {
          this.#sendHeaders();
          this.#release();
          return this.#forward('end', args);
        }
        this.#pendingEnd = args;
        this.#endedWhileOpen = true;
        this.#start();
        break;
      case 'committing':
        this.#pendingEnd = args;
        break;
      case 'streaming':
        this.#finish(args);
        break;
      case 'failed':
        break;
    }
    return this.res;
  }

  #start(): void {
    if (this.#state !== 'open') return;
    this.#state = 'committing';
    this.session.commit(false).then(
      () => this.#committed(),
      (err: unknown) => this.#failed(err),
    );
  }

  #committed(): void {
    this.#state = 'streaming';
    this.#sendHeaders();
    let writable = true;
    for (const args of this.#queued ?? []) writable = this.#forward('write', args) as boolean;
    this.#queued = undefined;
    if (this.#pendingEnd === undefined) {
      if (writable) this.res.emit('drain');
    } else if (this.#endedWhileOpen) {
      this.#release();
      this.#forward('end', this.#pendingEnd);
    } else {
      this.#finish(this.#pendingEnd);
    }
  }

  #failed(err: unknown): void {
    this.#state = 'failed';
    // A handler that is still streaming cannot be stopped, only cut off.
    if (!this.#endedWhileOpen) return this.#abort(err);
    this.#release();
    // Nothing was sent: drop what the handler wrote (a redirect must not survive a failed save).
    const res = this.res;
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.statusCode = 200;
    this.next(err instanceof SessionError ? err : new SessionError('saving the session failed', { cause: err, status: 503 }));
  }

  /** Changes made while streaming are saved before the final chunk. */
  #finish(args: Args): void {
    this.session.commit(true).then(
      () => {
        this.#release();
        this.#forward('end', args);
      },
      (err: unknown) => this.#abort(err),
    );
  }

  /** The client must not take a response whose session was not saved for a complete one. */
  #abort(err: unknown): void {
    this.report(err);
    this.#release();
    this.res.destroy();
  }

  #sendHeaders(): void {
    if (!this.res.headersSent) writeIdHeaders(this.req, this.res, this.session.outcome(), this.transport);
    if (this.#deferredHead) this.#forward('writeHead', this.#deferredHead);
  }

  #release(): void {
    this.#passing = true;
  }

  /** Calls the real method (through anything else that wrapped it), bypassing this hook. */
  #forward(method: Method, args: Args): unknown {
    const passing = this.#passing;
    this.#passing = true;
    try {
      return (this.res[method] as AnyMethod).apply(this.res, args);
    } finally {
      this.#passing = passing;
    }
  }
}

/**
 * Routes `writeHead`/`write`/`end` of `res` through its hook. Express gives
 * every response a swapped prototype, and adding an own property to such an
 * object costs microseconds (a new hidden class each time), so the methods are
 * wrapped once on the response's prototype and find the hook in a WeakMap;
 * responses without a hook pass straight through. Only when another middleware
 * already wrapped a method on this very response (compression, say) is the
 * response wrapped on its own, above that wrapper.
 */
function interceptMethods(res: ServerResponse): void {
  if (METHODS.some((method) => Object.hasOwn(res, method))) {
    for (const method of METHODS) res[method] = interceptor(method, res[method] as AnyMethod) as never;
    return;
  }
  const prototype = Object.getPrototypeOf(res) as Record<Method, AnyMethod>;
  if (patchedPrototypes.has(prototype)) return;
  for (const method of METHODS) {
    Object.defineProperty(prototype, method, { value: interceptor(method, prototype[method]), writable: true, configurable: true });
  }
  patchedPrototypes.add(prototype);
}

function interceptor(method: Method, underlying: AnyMethod): AnyMethod {
  return function (this: ServerResponse, ...args: Args): unknown {
    const hook = hooks.get(this);
    return hook === undefined || hook.passing ? underlying.apply(this, args) : hook.intercept(method, args);
  };
}

function writeIdHeaders(req: IncomingMessage, res: ServerResponse, outcome: IdOutcome, transport: IdTransport): void {
  let wrote = false;
  if (outcome.kind === 'send') wrote = transport.send(req, res, outcome.value, outcome.maxAgeMs, outcome.idChanged);
  else if (outcome.kind === 'clear') wrote = transport.clear(req, res);
  // Responses that set or clear an id must not be cached (or replayed to someone else).
  if (wrote && !res.hasHeader('cache-control')) res.setHeader('Cache-Control', 'no-store');
}
