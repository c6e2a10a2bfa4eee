import type { IncomingMessage, ServerResponse } from 'node:http';
import { SessionError } from './errors';
import { Manager } from './manager';
import type { SessionOptions } from './options';
import { RequestSession, type IdOutcome } from './request-session';
import type { Session } from './session';
import { IdTransport } from './transport';

declare module 'http' {
  interface IncomingMessage {
    /** This request's session (session-manager). Always defined in routes after the middleware. */
    session: Session;
    /** Mirrors `req.session.sessionID`. */
    readonly sessionID: string;
    /** Deletes the session from the store and clears the cookie: log out. */
    destroySession(): Promise<void>;
  }
}

export type NextFunction = (err?: unknown) => void;

/** A Connect middleware that also carries its manager. */
export interface SessionMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
  readonly manager: Manager;
}

const ATTACHED = Symbol('session-manager.attached');

/**
 * Server-side sessions as Connect/Express middleware: loads `req.session`
 * before the route, saves its changes before the response leaves.
 *
 * @example
 * app.use(sessions({ provider: 'memory', cookieName: 'gosessionid', maxLifetime: 3600 }));
 * app.get('/', (req, res) => res.send(req.session.get('username') ?? 'guest'));
 * @throws OptionError at call time for an unknown option or an invalid value.
 */
export function sessions(options?: SessionOptions): SessionMiddleware {
  const manager = new Manager(options);
  const transport = new IdTransport(manager.options);
  const report = (err: unknown): void => manager.reportError(err);

  const middleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction): void => {
    const marked = req as IncomingMessage & { [ATTACHED]?: true };
    if (marked[ATTACHED]) return next(); // mounted twice: the first one owns the request
    marked[ATTACHED] = true;

    const incoming = transport.read(req);
    if (incoming === undefined) {
      // No valid id: no store round trip at all.
      attach(req, new RequestSession(manager, transport, req, undefined, undefined));
      hookResponse(req, res, attachedSession(req), transport, next, report);
      return next();
    }
    manager.load(incoming.sid).then(
      (stored) => {
        const loaded = stored && { record: { sid: incoming.sid, createdAt: stored.createdAt, expiresAt: stored.expiresAt }, values: stored.values };
        attach(req, new RequestSession(manager, transport, req, incoming, loaded));
        hookResponse(req, res, attachedSession(req), transport, next, report);
        next();
      },
      (err) => {
        // A store outage is an error, never a silent "no session"; error handlers still find a req.session.
        attach(req, new RequestSession(manager, transport, req, undefined, undefined));
        next(err);
      },
    );
  };
  return Object.assign(middleware, { manager });
}

const SESSIONS = new WeakMap<IncomingMessage, RequestSession>();

function attachedSession(req: IncomingMessage): RequestSession {
  return SESSIONS.get(req)!;
}

function attach(req: IncomingMessage, requestSession: RequestSession): void {
  SESSIONS.set(req, requestSession);
  req.session = requestSession.session;
  req.destroySession = () => requestSession.destroy();
  Object.defineProperty(req, 'sessionID', { get: () => requestSession.id(), configurable: true, enumerable: true });
}

type Args = unknown[];

/**
 * Holds the response back until the session is committed: the first
 * `writeHead`/`write`/`end` starts the commit, and nothing reaches the client
 * until it succeeds. On failure the handler's response is discarded and the
 * error goes to `next(err)`; once streaming has begun, a failed final commit
 * aborts the response instead of completing it.
 */
function hookResponse(
  req: IncomingMessage,
  res: ServerResponse,
  session: RequestSession,
  transport: IdTransport,
  next: NextFunction,
  report: (err: unknown) => void,
): void {
  const { writeHead, write, end } = res;
  let state: 'open' | 'committing' | 'streaming' | 'failed' = 'open';
  let deferredHead: Args | undefined;
  let pendingEnd: Args | undefined;
  let endedWhileOpen = false;
  const queued: Args[] = [];

  const release = (): void => {
    res.writeHead = writeHead;
    res.write = write;
    res.end = end;
  };

  const abort = (err: unknown): void => {
    // The client must not take a response whose session was not saved for a complete one.
    report(err);
    res.destroy();
  };

  const finish = (args: Args): void => {
    // Changes made while streaming are saved before the final chunk.
    session.commit(true).then(() => {
      release();
      end.apply(res, args as Parameters<typeof end>);
    }, abort);
  };

  const start = (): void => {
    if (state !== 'open') return;
    state = 'committing';
    session.commit(false).then(
      () => {
        state = 'streaming';
        if (!res.headersSent) writeIdHeaders(req, res, session.outcome(), transport);
        if (deferredHead) writeHead.apply(res, deferredHead as Parameters<typeof writeHead>);
        let writable = true;
        for (const args of queued.splice(0)) writable = write.apply(res, args as Parameters<typeof write>);
        if (pendingEnd === undefined) {
          if (writable) res.emit('drain');
        } else if (endedWhileOpen) {
          release();
          end.apply(res, pendingEnd as Parameters<typeof end>);
        } else {
          finish(pendingEnd);
        }
      },
      (err: unknown) => {
        state = 'failed';
        // A handler that is still streaming cannot be stopped, only cut off.
        if (!endedWhileOpen) return abort(err);
        release();
        // Nothing was sent: drop what the handler wrote (a redirect must not survive a failed save).
        for (const name of res.getHeaderNames()) res.removeHeader(name);
        res.statusCode = 200;
        next(err instanceof SessionError ? err : new SessionError('saving the session failed', { cause: err, status: 503 }));
      },
    );
  };

  res.writeHead = function (this: ServerResponse, ...args: Args) {
    if (state === 'streaming') return writeHead.apply(this, args as Parameters<typeof writeHead>);
    deferredHead = args;
    return this;
  } as typeof res.writeHead;

  res.write = function (this: ServerResponse, ...args: Args) {
    if (state === 'streaming') return write.apply(this, args as Parameters<typeof write>);
    if (state === 'failed') return false;
    queued.push(args);
    start();
    return false; // ask streams to wait for 'drain' until the commit is done
  } as typeof res.write;

  res.end = function (this: ServerResponse, ...args: Args) {
    if (state === 'failed') return this;
    if (state === 'streaming') finish(args);
    else if (state === 'open') {
      pendingEnd = args;
      endedWhileOpen = true;
      start();
    } else pendingEnd = args;
    return this;
  } as typeof res.end;
}

function writeIdHeaders(req: IncomingMessage, res: ServerResponse, outcome: IdOutcome, transport: IdTransport): void {
  let wrote = false;
  if (outcome.kind === 'send') wrote = transport.send(req, res, outcome.value, outcome.maxAgeMs, outcome.idChanged);
  else if (outcome.kind === 'clear') wrote = transport.clear(req, res);
  // Responses that set or clear an id must not be cached (or replayed to someone else).
  if (wrote && !res.hasHeader('cache-control')) res.setHeader('Cache-Control', 'no-store');
}
