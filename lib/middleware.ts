import type { IncomingMessage, ServerResponse } from 'node:http';
import { compatSession } from './compat';
import { debug } from './debug';
import { SessionError } from './errors';
import { Manager, type LoadedSession } from './manager';
import type { ProviderChoice, SessionOptions } from './options';
import { RequestSession } from './request-session';
import { appPrototypes, Binding, bindings } from './app-prototypes';
import { ResponseGate } from './response-gate';
import type { Session } from './session';
import { IdTransport, type IncomingId } from './transport';

/** What the middleware adds to a request. */
export interface SessionFields {
  /** This request's session (session-manager). Always defined in routes after the middleware. */
  session: Session;
  /** Mirrors `req.session.sessionID`. */
  readonly sessionID: string;
  /** Deletes the session from the store and clears the cookie: log out. */
  destroySession(): Promise<void>;
}

/** A plain Node/Connect request after the middleware ran: `(req: SessionRequest, res) => req.session.get('user')`. */
export type SessionRequest = IncomingMessage & SessionFields;

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace SessionManager {
    /**
     * Type switches an app sets by merging. An app that also has
     * `@types/express-session` installed (say, in `compat: 'express-session'`
     * mode) declares `interface TypeConfig { expressSessionTypes: true }`:
     * `req.session` then keeps express-session's type, and both compile.
     */
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface TypeConfig {}
  }
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    // Merged into Express's Request, the way every session library does it.
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface Request extends SessionProperty, Omit<SessionFields, 'session'> {}
  }
}

type SessionProperty = SessionManager.TypeConfig extends { expressSessionTypes: true } ? object : Pick<SessionFields, 'session'>;

export type NextFunction = (err?: unknown) => void;

/** A Connect middleware that also carries its manager. */
export interface SessionMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void;
  readonly manager: Manager;
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
export function sessions<P extends ProviderChoice = 'memory'>(options?: SessionOptions<P>): SessionMiddleware {
  const manager = new Manager(options as SessionOptions<ProviderChoice>);
  const transport = new IdTransport(manager.options);
  const report = (err: unknown): void => manager.reportError(err);

  const begin = (req: IncomingMessage, res: ServerResponse, next: NextFunction, binding: Binding, incoming: IncomingId | undefined, loaded: LoadedSession | undefined): void => {
    const requestSession = new RequestSession(manager, transport, req, incoming, loaded);
    const prototypes = appPrototypes(req, res, Date.now());
    bindRequest(req, binding, requestSession, manager, prototypes !== undefined);
    const gate = new ResponseGate(req, res, requestSession, (err) => next(asStoreError(err)), report, prototypes);
    if (prototypes !== undefined) binding.gate = gate; // the app's response prototype routes to it
    next();
  };

  const middleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction): void => {
    const owner = bindings.get(req)?.owner;
    if (owner === manager) return next(); // the same middleware mounted twice: the first run owns the request
    if (owner !== undefined) {
      return next(new SessionError('two different sessions() middlewares ran for one request; mount one (use one instance for every route), or give each its own routes', { status: 500 }));
    }
    const binding = new Binding(manager);
    bindings.set(req, binding);
    const candidates = transport.candidates(req);
    // No valid id (no store round trip at all), or an in-process provider answered at once: the route
    // still starts on the loop's next check phase. Under load, the requests read in one poll are then
    // handled back to back, which measured 4–6% more throughput than answering each as it is parsed.
    if (candidates.length === 0) return void setImmediate(begin, req, res, next, binding, undefined, undefined);
    const found = firstKnown(manager, candidates, 0);
    if (!(found instanceof Promise)) {
      if (debug.enabled) debugLoad(candidates.length, found);
      return void setImmediate(begin, req, res, next, binding, found?.incoming, found?.loaded);
    }
    found.then(
      (result) => {
        if (debug.enabled) debugLoad(candidates.length, result);
        begin(req, res, next, binding, result?.incoming, result?.loaded);
      },
      (err: unknown) => {
        // A store outage is an error, never a silent "no session"; error handlers still find a req.session.
        bindRequest(req, binding, new RequestSession(manager, transport, req, undefined, undefined), manager, appPrototypes(req, res, Date.now()) !== undefined);
        next(err);
      },
    );
  };
  return Object.assign(middleware, { manager });
}

type Found = { incoming: IncomingId; loaded: LoadedSession } | undefined;

function debugLoad(candidates: number, found: Found): void {
  if (found) debug('loaded %s (via %s)', found.loaded.record.key.slice(0, 12), found.incoming.via);
  else debug('unknown id (%d candidate(s)): a new session', candidates);
}

/** The first candidate id the store knows, in order; synchronous while the provider answers synchronously. */
function firstKnown(manager: Manager, candidates: IncomingId[], from: number): Found | Promise<Found> {
  for (let i = from; i < candidates.length; i++) {
    const loaded = manager.load(candidates[i].sid, candidates[i].key);
    if (loaded instanceof Promise) {
      return loaded.then((result) => (result ? { incoming: candidates[i], loaded: result } : firstKnown(manager, candidates, i + 1)));
    }
    if (loaded) return { incoming: candidates[i], loaded };
  }
  return undefined;
}

/**
 * `req.session`, `req.sessionID` and `req.destroySession()` as own properties
 * of this request: Node's classes and Express's shared prototypes stay as they are.
 * With `compat: 'express-session'`, `req.session` is the express-session-like view.
 */
function bindRequest(req: IncomingMessage, binding: Binding, requestSession: RequestSession, manager: Manager, onAppPrototypes: boolean): void {
  requestSession.exposed = manager.options.compat === 'express-session' ? compatSession(requestSession, manager, req) : requestSession.session;
  if (onAppPrototypes) {
    binding.state = requestSession; // the app's request prototype reads it
    return;
  }
  Object.defineProperties(req, {
    session: { configurable: true, enumerable: true, writable: true, value: requestSession.exposed },
    sessionID: {
      configurable: true,
      enumerable: true,
      get: () => requestSession.id(),
      // Another library may assign its own.
      set: (value: unknown) => Object.defineProperty(req, 'sessionID', { configurable: true, enumerable: true, writable: true, value }),
    },
    destroySession: { configurable: true, writable: true, value: () => requestSession.destroy() },
  });
}

function asStoreError(err: unknown): SessionError {
  return err instanceof SessionError ? err : new SessionError('saving the session failed', { cause: err, status: 503 });
}

