import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The Express fast path. Adding a property to a request or response whose
 * prototype Express swapped costs about 2 µs (V8 makes a new hidden class each
 * time), so on an Express app the per-request plumbing goes on the app's own
 * `app.request`/`app.response` (set up on first use, never Node's classes nor
 * Express's shared objects) and finds its request's state in a WeakMap.
 *
 * Only where that is safe: the root app, with no sub-app mounted anywhere in
 * its router (a sub-app swaps the prototypes to its own while it runs), and a
 * response whose methods no earlier middleware wrapped on the response itself
 * (such a wrapper may hold the unwrapped method). Everything else gets
 * per-request own properties, which work everywhere.
 */

type AnyMethod = (this: ServerResponse, ...args: unknown[]) => unknown;
export type Routed = 'writeHead' | 'write' | 'end' | 'flushHeaders';
export const ROUTED: readonly Routed[] = ['writeHead', 'write', 'end', 'flushHeaders'];

/** What the prototype methods route to: the response's gate. */
export interface Routable {
  call(method: Routed, args: unknown[]): unknown;
}

/** What the request accessors read. */
export interface RequestState {
  /** What `req.session` is: the session, or its express-session-compatible view. */
  exposed: unknown;
  id(): string;
  destroy(): Promise<void>;
}

/** What a request is bound to: one entry per request (a WeakMap entry is dear to the garbage collector). */
export class Binding {
  /** Set once the session is loaded. */
  state: RequestState | undefined;
  /** Set when the response is gated through the app's prototype (the fast path). */
  gate: Routable | undefined;
  constructor(readonly owner: object) {}
}

/** Request → its binding; the response finds it through `res.req`. */
export const bindings = new WeakMap<object, Binding>();

interface ExpressApp {
  parent?: unknown;
  request?: object;
  response?: object;
  _router?: { stack?: Layer[] };
  router?: { stack?: Layer[] };
}
interface Layer {
  name?: string;
  handle?: { stack?: Layer[]; request?: unknown; response?: unknown; handle?: unknown };
}

/** Per app: the methods below our wrappers on its response prototype. */
const installed = new WeakMap<object, Record<Routed, AnyMethod>>();
/** Per app: whether its router holds a sub-app, and when that was last looked at. */
const scanned = new WeakMap<object, { layers: number; at: number; subApps: boolean }>();
const RESCAN_MS = 10_000;

/**
 * The methods below the app's response wrappers when this request may use
 * the app's prototypes (installing them on first use), else undefined.
 */
export function appPrototypes(req: IncomingMessage, res: ServerResponse, now: number): Record<Routed, AnyMethod> | undefined {
  const app = (req as { app?: ExpressApp }).app;
  if (app === undefined || app.parent !== undefined || app.request === undefined || app.response === undefined) return undefined;
  if (Object.getPrototypeOf(req) !== app.request || Object.getPrototypeOf(res) !== app.response) return undefined;
  if (Object.hasOwn(res, 'writeHead') || Object.hasOwn(res, 'write') || Object.hasOwn(res, 'end') || Object.hasOwn(res, 'flushHeaders')) return undefined;
  if (hasSubApps(app, now)) return undefined;
  return installed.get(app) ?? install(app);
}

function install(app: ExpressApp): Record<Routed, AnyMethod> {
  const response = app.response as Record<Routed, AnyMethod>;
  const below = {} as Record<Routed, AnyMethod>;
  for (const method of ROUTED) {
    const original = response[method];
    below[method] = original;
    Object.defineProperty(response, method, {
      configurable: true,
      writable: true,
      value: function (this: ServerResponse, ...args: unknown[]): unknown {
        const gate = bindings.get(this.req)?.gate;
        return gate === undefined ? original.apply(this, args) : gate.call(method, args);
      },
    });
  }
  Object.defineProperties(app.request, REQUEST_ACCESSORS);
  installed.set(app, below);
  return below;
}

/** `req.session`, `req.sessionID`, `req.destroySession()` for requests of this app; another library may still assign its own. */
const REQUEST_ACCESSORS: PropertyDescriptorMap = {
  session: {
    configurable: true,
    get(this: IncomingMessage) {
      return bindings.get(this)?.state?.exposed;
    },
    set(this: IncomingMessage, value: unknown) {
      ownProperty(this, 'session', value);
    },
  },
  sessionID: {
    configurable: true,
    get(this: IncomingMessage) {
      return bindings.get(this)?.state?.id();
    },
    set(this: IncomingMessage, value: unknown) {
      ownProperty(this, 'sessionID', value);
    },
  },
  destroySession: {
    configurable: true,
    writable: true,
    value(this: IncomingMessage): Promise<void> | undefined {
      return bindings.get(this)?.state?.destroy();
    },
  },
};

function ownProperty(target: object, name: string, value: unknown): void {
  Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: true });
}

function hasSubApps(app: ExpressApp, now: number): boolean {
  const stack = (app._router ?? app.router)?.stack ?? [];
  const seen = scanned.get(app);
  if (seen && seen.layers === stack.length && now - seen.at < RESCAN_MS) return seen.subApps;
  const subApps = stack.some(holdsSubApp);
  scanned.set(app, { layers: stack.length, at: now, subApps });
  return subApps;
}

/** A mounted app (app.use(path, subApp)), an app used as a plain handler, or either inside a nested router. */
function holdsSubApp(layer: Layer): boolean {
  const handle = layer.handle;
  if (layer.name === 'mounted_app') return true;
  if (handle === undefined) return false;
  if (handle.request !== undefined && handle.response !== undefined && typeof handle.handle === 'function') return true;
  return Array.isArray(handle.stack) && handle.stack.some(holdsSubApp);
}
