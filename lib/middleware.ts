import { IncomingMessage, type ServerResponse } from 'node:http';
import { SessionError } from './errors';
import { Manager } from './manager';
import type { SessionOptions } from './options';
import type { StoredSession } from './providers/provider';
import { RequestSession } from './request-session';
import { ResponseHook } from './response-hook';
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

const bound = new WeakMap<IncomingMessage, RequestSession>();

// `req.session`, `req.sessionID` and `req.destroySession()` are accessors on the
// prototype, defined once, reading a WeakMap: Express swaps every request's
// prototype, and adding an own property to such an object costs microseconds.
Object.defineProperties(IncomingMessage.prototype, {
  session: {
    configurable: true,
    get(this: IncomingMessage) {
      return bound.get(this)?.session;
    },
    set(this: IncomingMessage, value: unknown) {
      ownProperty(this, 'session', value); // an app (or another library) may still assign its own
    },
  },
  sessionID: {
    configurable: true,
    get(this: IncomingMessage) {
      return bound.get(this)?.id();
    },
    set(this: IncomingMessage, value: unknown) {
      ownProperty(this, 'sessionID', value);
    },
  },
  destroySession: {
    configurable: true,
    writable: true,
    value(this: IncomingMessage): Promise<void> {
      const requestSession = bound.get(this);
      if (requestSession === undefined) return Promise.reject(new SessionError('destroySession(): no session middleware ran for this request'));
      return requestSession.destroy();
    },
  },
});

function ownProperty(target: object, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: true });
}

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

  const begin = (req: IncomingMessage, res: ServerResponse, next: NextFunction, requestSession: RequestSession): void => {
    bound.set(req, requestSession);
    new ResponseHook(req, res, requestSession, transport, next, report).install();
    next();
  };

  const middleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction): void => {
    if (bound.has(req)) return next(); // mounted twice: the first one owns the request
    const incoming = transport.read(req);
    if (incoming === undefined) {
      // No valid id: no store round trip at all.
      return begin(req, res, next, new RequestSession(manager, transport, req, undefined, undefined));
    }
    const loaded = (stored: StoredSession | undefined): void => {
      const found = stored && { record: { sid: incoming.sid, createdAt: stored.createdAt, expiresAt: stored.expiresAt }, values: stored.values };
      begin(req, res, next, new RequestSession(manager, transport, req, incoming, found));
    };
    const stored = manager.load(incoming.sid);
    if (!(stored instanceof Promise)) return loaded(stored); // an in-process provider answered at once
    stored.then(loaded, (err) => {
      // A store outage is an error, never a silent "no session"; error handlers still find a req.session.
      bound.set(req, new RequestSession(manager, transport, req, undefined, undefined));
      next(err);
    });
  };
  return Object.assign(middleware, { manager });
}
