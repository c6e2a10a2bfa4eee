/**
 * The demo app: the classic session pages (home, login, counter, logout) and
 * "Your sessions" (sessions by user) on Express 5, using only
 * session-manager's public API. `createDemoApp()` builds the app without
 * listening, so tests start it on any port with any session options;
 * `server.ts` runs it from the environment.
 */
import express, { type ErrorRequestHandler, type Request, type RequestHandler, type Response } from 'express';
import { sessions, type Manager, type SessionInfo, type SessionOptions } from '../lib';
import { deviceLabel, UNKNOWN_DEVICE } from './device';
import * as views from './views';

/// <reference path="./session-data.d.ts" />
// The demo declares its session keys (session-data.d.ts): a misspelt key is a type error.

/** Seconds after which /count replaces the session, as in the classic Go example. */
export const DEFAULT_REPLACE_AFTER_SECONDS = 360;
export const MAX_USERNAME_LENGTH = 64;
/** The cookie name of the classic Go example. */
export const DEMO_COOKIE_NAME = 'gosessionid';

export interface DemoOptions {
  /**
   * Passed to `sessions()`. The demo only changes the default `cookieName`
   * (`'gosessionid'`). With `transports` including `'query'`, every link, form
   * and redirect carries the id (URL rewriting); `clock` also drives the
   * counter's replace-after-age check.
   */
  session?: SessionOptions;
  /** Seconds after its start when /count replaces a session (new id, count reset). @default 360 */
  replaceAfter?: number;
}

export interface DemoApp {
  app: express.Express;
  /** The session manager: `count()` for "users online", `close()` on shutdown. */
  manager: Manager;
}

// Control characters (C0, DEL, C1) would make a name that looks like another one.
const CONTROL_CHARACTERS = /\p{Cc}/u;

/**
 * Builds the demo app and its session manager; the caller listens and, when
 * done, calls `manager.close()`.
 *
 * @example
 * const { app, manager } = createDemoApp({ session: { transports: ['query'] } });
 * const server = app.listen(0, '127.0.0.1');
 * @throws OptionError (from `sessions()`) for invalid session options, RangeError for an invalid `replaceAfter`.
 */
export function createDemoApp(options: DemoOptions = {}): DemoApp {
  const replaceAfter = options.replaceAfter ?? DEFAULT_REPLACE_AFTER_SECONDS;
  if (typeof replaceAfter !== 'number' || !Number.isFinite(replaceAfter) || replaceAfter <= 0) {
    throw new RangeError(`replaceAfter must be a positive number of seconds, got ${String(replaceAfter)}`);
  }
  const sessionOptions: SessionOptions = { cookieName: DEMO_COOKIE_NAME, ...options.session };
  const middleware = sessions(sessionOptions);
  const { manager } = middleware;
  const clock = sessionOptions.clock ?? Date.now;
  const transport = (sessionOptions.transports ?? ['cookie']).includes('query') ? 'query' : 'cookie';

  /**
   * A same-site URL that keeps the session: in URL-rewrite mode it carries
   * the id, but only once there is a session to keep (an anonymous visitor's
   * links would otherwise carry ids that were never stored). In cookie mode
   * the id never goes into a URL, where it would leak into logs and history.
   */
  const link = (req: Request) => (path: string): string => {
    const session = req.session as typeof req.session | undefined; // undefined only for errors raised before the middleware
    if (transport !== 'query' || session === undefined) return path;
    const hasSession = !session.isNew || !session.keys().next().done;
    return hasSession ? session.url(path) : path;
  };

  const pageContext = async (req: Request): Promise<views.PageContext> => ({
    username: req.session.get('username'),
    online: await manager.count(),
    link: link(req),
    transport,
  });

  const app = express();
  app.disable('x-powered-by');
  app.use(securityHeaders);
  // Browsers ask for it on every first visit; answer before any session work.
  app.get('/favicon.ico', (_req, res) => {
    res.status(204).end();
  });
  app.use(middleware);
  app.use(express.urlencoded({ extended: false, limit: '4kb', parameterLimit: 20 }));

  app.get('/', async (req, res) => {
    res.send(views.homePage(await pageContext(req)));
  });

  app.get('/login', async (req, res) => {
    res.send(views.loginPage(await pageContext(req), { maxLength: MAX_USERNAME_LENGTH }));
  });

  app.post('/login', async (req, res) => {
    const raw: unknown = (req.body as Record<string, unknown> | undefined)?.username;
    const username = typeof raw === 'string' ? raw.trim() : '';
    const problem = usernameProblem(username);
    if (problem !== undefined) {
      const value = typeof raw === 'string' ? raw : '';
      res.status(400).send(views.loginPage(await pageContext(req), { value, error: problem, maxLength: MAX_USERNAME_LENGTH }));
      return;
    }
    // A fresh id at login, so an id planted before it is worthless (session fixation, OWASP Session Management Cheat Sheet).
    await req.session.regenerate();
    req.session.set('username', username);
    // Bound to its user, the session shows up in manager.listByUser(): "Your sessions", "log out other sessions".
    req.session.bindUser(username);
    req.session.set('device', deviceLabel(req.get('user-agent')));
    // 303: the browser follows with a GET; the session is saved before the redirect leaves.
    res.redirect(303, link(req)('/'));
  });

  app.post('/logout', async (req, res) => {
    await req.destroySession();
    res.redirect(303, '/');
  });

  /** Only a logged-in visitor has sessions to manage: anyone else gets a 403 page. */
  const loggedIn = async (req: Request, res: Response): Promise<string | undefined> => {
    const username = req.session.get('username');
    if (username !== undefined) return username;
    res.status(403).send(views.errorPage(await pageContext(req), 403, 'Please log in', 'Log in to see and end your sessions.'));
    return undefined;
  };

  app.get('/sessions', async (req, res) => {
    const username = await loggedIn(req, res);
    if (username === undefined) return;
    const current = req.session.handle;
    const rows = (await manager.listByUser(username)).map((info: SessionInfo): views.SessionRow => ({
      handle: info.handle,
      device: typeof info.data.device === 'string' ? info.data.device : UNKNOWN_DEVICE,
      createdAt: info.createdAt,
      expiresAt: info.expiresAt,
      current: info.handle === current,
    }));
    // This device first, then the newest logins.
    rows.sort((a, b) => Number(b.current) - Number(a.current) || b.createdAt.getTime() - a.createdAt.getTime());
    const ended = typeof req.query.ended === 'string' && /^\d{1,6}$/.test(req.query.ended) ? Number(req.query.ended) : undefined;
    res.send(views.sessionsPage(await pageContext(req), { sessions: rows, ended }));
  });

  app.post('/sessions/logout-others', async (req, res) => {
    const username = await loggedIn(req, res);
    if (username === undefined) return;
    // `except` takes the raw id (or a handle): this very session stays.
    const ended = await manager.destroyByUser(username, { except: req.sessionID });
    res.redirect(303, link(req)(`/sessions?ended=${ended}`));
  });

  app.post('/sessions/:handle/logout', async (req, res) => {
    const username = await loggedIn(req, res);
    if (username === undefined) return;
    const { handle } = req.params;
    if (handle === req.session.handle) {
      // This device's own row has no button; a hand-made post is a plain logout.
      await req.destroySession();
      res.redirect(303, '/');
      return;
    }
    // Only a handle from this user's own list ends anything: a guessed or copied
    // handle of someone else's session gets the same 404 as one that does not exist.
    const own = (await manager.listByUser(username)).some((info) => info.handle === handle);
    if (!own) {
      res.status(404).send(views.errorPage(await pageContext(req), 404, 'No such session', 'None of your sessions has that name. It may have ended already.'));
      return;
    }
    await manager.destroy(handle);
    res.redirect(303, link(req)('/sessions?ended=1'));
  });

  app.get('/count', async (req, res) => {
    const now = clock();
    let createtime = req.session.get('createtime');
    let replaced = false;
    if (createtime === undefined) {
      createtime = now;
      req.session.set('createtime', createtime);
    } else if (createtime + replaceAfter * 1000 < now) {
      // Too old: a new id for the same visitor, and the count starts over.
      await req.session.regenerate();
      req.session.delete('countnum');
      createtime = now;
      req.session.set('createtime', createtime);
      replaced = true;
    }
    const count = (req.session.get('countnum') ?? 0) + 1;
    req.session.set('countnum', count);
    // Store it now, so "Users online" on this very page includes a first-time visitor.
    await req.session.save();
    res.send(views.countPage(await pageContext(req), { count, createdAt: createtime, replaceAfterSeconds: replaceAfter, replaced }));
  });

  app.use(async (req, res) => {
    res.status(404).send(views.errorPage(await pageContext(req), 404, 'Page not found', `There is no page at ${req.path}.`));
  });

  const onError: ErrorRequestHandler = async (err, req, res, next) => {
    const status = errorStatus(err);
    // 501: the store cannot do what the page needs (no per-user index for "Your sessions"); nothing broke.
    if (status >= 500 && status !== 501) console.error(err);
    if (res.headersSent) return next(err);
    // A failed session save discards the headers the route had set.
    setSecurityHeaders(res);
    // The store may be what failed: the page still renders, without the count.
    const online = await manager.count().catch(() => undefined);
    // After a server-side failure the session in hand may be one that was never saved: claim no login.
    const username = status < 500 || status === 501 ? req.session?.get('username') : undefined;
    const ctx: views.PageContext = { username, online, link: link(req), transport };
    const [title, message] = status === 503
      ? ['Sessions are unavailable', 'The session store did not answer. Please try again in a moment.']
      : status === 501
        ? ['Not available with this session store', 'This session store cannot list sessions by user, so this page cannot be shown.']
        : status >= 500
          ? ['Something went wrong', 'The server failed to answer this request.']
          : ['Bad request', (err as { expose?: boolean }).expose ? String((err as Error).message) : 'The request could not be understood.'];
    res.status(status).send(views.errorPage(ctx, status, title, message));
  };
  app.use(onError);

  return { app, manager };
}

/** Why `username` (already trimmed) is refused, or undefined when it is fine. */
function usernameProblem(username: string): string | undefined {
  if (username === '') return 'Please enter a username.';
  if (username.length > MAX_USERNAME_LENGTH) return `A username has at most ${MAX_USERNAME_LENGTH} characters.`;
  if (CONTROL_CHARACTERS.test(username)) return 'A username cannot contain control characters.';
  return undefined;
}

function errorStatus(err: unknown): number {
  const status = (err as { status?: unknown; statusCode?: unknown } | undefined)?.status ?? (err as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof status === 'number' && status >= 400 && status <= 599 ? status : 500;
}

function setSecurityHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', views.CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // In URL-rewrite mode the address holds the session id: never send it to another site.
  res.setHeader('Referrer-Policy', 'no-referrer');
  // Every page shows one visitor's session: no shared cache may keep it.
  res.setHeader('Cache-Control', 'no-store');
}

const securityHeaders: RequestHandler = (_req, res, next) => {
  setSecurityHeaders(res);
  next();
};
