/**
 * The request path over real sockets: what the app sees of its response while
 * the session is being saved, and what the client gets, compared where it
 * matters with the same app without the library (Node's and Express's own
 * behaviour is the reference).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import compression from 'compression';
import connect from 'connect';
import type { NextFunction, Request, Response } from 'express';
import { MemoryProvider, sessions, type SessionMiddleware, type SessionOptions, type SessionRequest } from '../lib/index';
import { storageKey } from '../lib/manager';
import { EXPRESS_VERSIONS, idOf } from './support/http';
import { RecordingProvider } from './support/recording-provider';

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A real memory provider whose writes take 20 ms, so the response is held while the app goes on. */
class SlowMemoryProvider extends MemoryProvider {
  override async create(...args: Parameters<MemoryProvider['create']>): Promise<boolean> {
    await delay(20);
    return super.create(...args);
  }
  override async update(...args: Parameters<MemoryProvider['update']>): Promise<boolean> {
    await delay(20);
    return super.update(...args);
  }
  override async touch(...args: Parameters<MemoryProvider['touch']>): Promise<boolean> {
    await delay(20);
    return super.touch(...args);
  }
  override async destroy(...args: Parameters<MemoryProvider['destroy']>): Promise<void> {
    await delay(20);
    return super.destroy(...args);
  }
}

const PROVIDERS: Array<[string, () => MemoryProvider]> = [
  ['the memory provider', () => new MemoryProvider()],
  ['a provider whose writes take 20 ms', () => new SlowMemoryProvider()],
];

// ---------------------------------------------------------------------------
// Servers, clients, cleanup

const servers: Server[] = [];
const middlewares: SessionMiddleware[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
  await Promise.all(middlewares.splice(0).map((middleware) => middleware.manager.close()));
});

function mw(options: SessionOptions = {}): SessionMiddleware {
  const middleware = sessions({ onError: () => {}, ...options });
  middlewares.push(middleware);
  return middleware;
}

async function serve(listener: RequestListener): Promise<string> {
  const server = http.createServer(listener);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** A GET on a fresh connection, the body as raw bytes (no decompression). */
function get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (message) => {
        const chunks: Buffer[] = [];
        message.on('data', (chunk: Buffer) => chunks.push(chunk));
        message.on('error', reject);
        message.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: message.statusCode!, headers: message.headers, body, text: body.toString() });
        });
      })
      .on('error', reject);
  });
}

function setCookies(reply: Reply): string[] {
  return reply.headers['set-cookie'] ?? [];
}

function sessionCookie(reply: Reply, name = 'sid'): string | undefined {
  return setCookies(reply).find((line) => line.startsWith(`${name}=`));
}

/** `sid=…` for a Cookie header. */
function cookieOf(reply: Reply): string {
  const line = sessionCookie(reply);
  if (line === undefined) throw new Error(`no session cookie (status ${reply.status}, ${JSON.stringify(reply.headers)})`);
  return line.split(';')[0];
}

/** The values stored under the session the reply's cookie names. */
async function stored(middleware: SessionMiddleware, reply: Reply): Promise<Record<string, unknown> | undefined> {
  const session = await middleware.manager.provider.read(storageKey(idOf(cookieOf(reply))));
  return session && Object.fromEntries([...session.values].map(([key, value]) => [key, JSON.parse(value) as unknown]));
}

/** Records what reaches the process's last-resort handlers while it runs. */
async function watchingProcess<T>(run: () => Promise<T>): Promise<{ result: T; uncaught: unknown[] }> {
  const uncaught: unknown[] = [];
  const onError = (err: unknown): void => {
    uncaught.push(err);
  };
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  try {
    const result = await run();
    await delay(30); // anything thrown late (after a held save) lands meanwhile
    return { result, uncaught };
  } finally {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  }
}

type Handler = (req: SessionRequest, res: ServerResponse) => void;

/** The same handler mounted on each kind of host, after the middleware when one is given. */
const HOSTS: Array<[string, (middleware: SessionMiddleware | undefined, handler: Handler) => RequestListener]> = [
  ...EXPRESS_VERSIONS.map(([name, express]): [string, (middleware: SessionMiddleware | undefined, handler: Handler) => RequestListener] => [
    name,
    (middleware, handler) => {
      const app = express();
      if (middleware) app.use(middleware);
      app.get('/', handler as unknown as (req: Request, res: Response) => void);
      return app as unknown as RequestListener;
    },
  ]),
  [
    'connect',
    (middleware, handler) => {
      const app = connect();
      if (middleware) app.use(middleware);
      app.use(handler as unknown as connect.SimpleHandleFunction);
      return app as unknown as RequestListener;
    },
  ],
  [
    'plain http',
    (middleware, handler) => (req, res) => {
      if (!middleware) return handler(req as SessionRequest, res);
      middleware(req, res, (err) => {
        if (err) {
          res.statusCode = 500;
          return res.end(String(err));
        }
        handler(req as SessionRequest, res);
      });
    },
  ],
];

// ---------------------------------------------------------------------------
// 1. Respond, then throw

type ErrorSeen = { message: string; headersSent: boolean };

describe.each(EXPRESS_VERSIONS)('respond, then throw, on %s', (name, express) => {
  const throwers: Array<[string, 'sync' | 'async']> = [['a synchronous throw after res.json', 'sync']];
  if (name === 'express 5') throwers.push(['an async route that rejects after res.json', 'async']);

  /** The app, with or without the library; `errors` is what the error handler (or Express's default one) saw. */
  function build(middleware: SessionMiddleware | undefined, kind: 'sync' | 'async', handler: 'app' | 'default', errors: ErrorSeen[]): RequestListener {
    const app = express();
    if (handler === 'default') app.set('env', 'development'); // the default handler logs the error (not under 'test')
    if (middleware) app.use(middleware);
    app.get('/read', (req, res) => {
      res.json({ k: middleware ? (req.session.get('k') ?? null) : null });
    });
    if (kind === 'sync') {
      app.get('/', (req, res) => {
        if (middleware) req.session.set('k', 'v');
        res.json({ ok: true });
        throw new Error('thrown after the response');
      });
    } else {
      app.get('/', async (req, res) => {
        if (middleware) req.session.set('k', 'v');
        res.json({ ok: true });
        await new Promise((resolve) => setImmediate(resolve));
        throw new Error('thrown after the response');
      });
    }
    if (handler === 'app') {
      app.use((err: Error, _req: Request, res: Response, next: NextFunction) => {
        errors.push({ message: err.message, headersSent: res.headersSent });
        if (res.headersSent) return next(err); // as Express's guide says: let the default handler close the connection
        res.status(500).end();
      });
    }
    return app as unknown as RequestListener;
  }

  async function run(middleware: SessionMiddleware | undefined, kind: 'sync' | 'async', handler: 'app' | 'default') {
    const errors: ErrorSeen[] = [];
    const logged = jest.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const url = await serve(build(middleware, kind, handler, errors));
      const { result: reply, uncaught } = await watchingProcess(() => get(url));
      const logs = logged.mock.calls.map((args) => String(args[0]).split('\n')[0]);
      return { url, reply, uncaught, errors, logs };
    } finally {
      logged.mockRestore();
    }
  }

  describe.each(PROVIDERS)('with %s', (_provider, makeProvider) => {
    describe.each(throwers)('%s', (_thrower, kind) => {
      it.each(['app', 'default'] as const)('the client gets the 200, the session is saved, the %s error handler gets the error as without the library', async (handler) => {
        const middleware = mw({ provider: makeProvider() });
        const withLib = await run(middleware, kind, handler);
        const without = await run(undefined, kind, handler);

        for (const outcome of [withLib, without]) {
          expect(outcome.reply.status).toBe(200);
          expect(JSON.parse(outcome.reply.text)).toEqual({ ok: true });
          expect(outcome.uncaught).toEqual([]);
        }
        expect(withLib.errors).toEqual(without.errors);
        expect(withLib.logs).toEqual(without.logs);
        if (handler === 'app') expect(withLib.errors).toEqual([{ message: 'thrown after the response', headersSent: true }]);
        else expect(withLib.logs).toEqual(['Error: thrown after the response']);

        const cookie = cookieOf(withLib.reply);
        const next = await get(`${withLib.url}/read`, { cookie });
        expect(JSON.parse(next.text)).toEqual({ k: 'v' });
      });
    });
  });
});

// ---------------------------------------------------------------------------
// 2. The response after end(), while the save is pending

type Observed = {
  headersSent: boolean;
  writableEnded: boolean;
  finished: boolean;
  setHeader: string | undefined;
  secondEndReturnsRes: boolean;
  secondEndCallback: string | undefined;
  write: unknown;
  emitted: string[];
};

describe.each(HOSTS)('after end() while the save is pending, on %s', (_name, host) => {
  function handler(seen: Observed[]): Handler {
    return (req, res) => {
      req.session?.set('k', 'v');
      const emitted: string[] = [];
      // Node emits a late end()'s error on the response; listened to here (in both runs) so it is observed, not uncaught.
      res.on('error', (err: NodeJS.ErrnoException) => emitted.push(String(err.code)));
      res.end('a');
      let setHeader: string | undefined;
      try {
        res.setHeader('X', '1');
      } catch (err) {
        setHeader = (err as NodeJS.ErrnoException).code;
      }
      const observed: Observed = {
        headersSent: res.headersSent,
        writableEnded: res.writableEnded,
        finished: res.finished,
        setHeader,
        secondEndReturnsRes: false,
        secondEndCallback: undefined,
        write: undefined,
        emitted,
      };
      observed.secondEndReturnsRes = res.end('x', (err?: NodeJS.ErrnoException | null) => (observed.secondEndCallback = String(err?.code))) === res;
      observed.write = res.write('y', () => {});
      seen.push(observed);
    };
  }

  it('the app sees what a plain Node response shows it, and the client gets the first body', async () => {
    const middleware = mw({ provider: new SlowMemoryProvider() });
    const seenWith: Observed[] = [];
    const seenWithout: Observed[] = [];
    const { result, uncaught } = await watchingProcess(async () => {
      const withLib = await get(await serve(host(middleware, handler(seenWith))));
      const without = await get(await serve(host(undefined, handler(seenWithout))));
      return { withLib, without };
    });
    expect(uncaught).toEqual([]);
    expect(seenWith).toHaveLength(1);
    expect(seenWith[0]).toMatchObject({ headersSent: true, writableEnded: true, finished: true, setHeader: 'ERR_HTTP_HEADERS_SENT' });
    expect(seenWith).toEqual(seenWithout);
    expect(result.withLib.text).toBe('a');
    expect(result.without.text).toBe('a');
    expect(result.withLib.headers.x).toBeUndefined();
    expect(await stored(middleware, result.withLib)).toEqual({ k: 'v' });
  });
});

// ---------------------------------------------------------------------------
// 3. Set-Cookie given to writeHead

describe.each(HOSTS)('a Set-Cookie passed to writeHead, on %s', (_name, host) => {
  it.each([
    ['a string', 'app=1', ['app=1']],
    ['an array', ['app=1', 'b=2'], ['app=1', 'b=2']],
  ])('as %s reaches the client along with the session cookie', async (_kind, value, expected) => {
    const middleware = mw();
    const url = await serve(
      host(middleware, (req, res) => {
        req.session.set('k', 'v');
        res.writeHead(200, { 'Set-Cookie': value, 'Content-Type': 'text/plain' });
        res.end('ok');
      }),
    );
    const reply = await get(url);
    expect(reply.text).toBe('ok');
    expect(setCookies(reply).filter((line) => !line.startsWith('sid='))).toEqual(expected);
    expect(sessionCookie(reply)).toBeDefined();
    expect(await stored(middleware, reply)).toEqual({ k: 'v' });
  });
});

// ---------------------------------------------------------------------------
// 4. Code that wraps write/end, compression, sendFile

describe.each(HOSTS)('a handler that wraps res.write/res.end itself, on %s', (_name, host) => {
  it.each(PROVIDERS)('with %s: the body goes out once and the wrapper is called once per call', async (_provider, makeProvider) => {
    const middleware = mw({ provider: makeProvider() });
    const counts = { write: 0, end: 0 };
    const url = await serve(
      host(middleware, (req, res) => {
        const write = res.write;
        const end = res.end;
        res.write = function (this: ServerResponse, ...args: unknown[]) {
          counts.write++;
          return (write as (...a: unknown[]) => boolean).apply(this, args);
        } as typeof res.write;
        res.end = function (this: ServerResponse, ...args: unknown[]) {
          counts.end++;
          return (end as (...a: unknown[]) => ServerResponse).apply(this, args);
        } as typeof res.end;
        req.session.set('streamed', true);
        res.setHeader('Content-Type', 'text/plain');
        res.write('one;');
        setTimeout(() => {
          res.write('two;');
          res.end();
        }, 5);
      }),
    );
    const { result: reply, uncaught } = await watchingProcess(() => get(url));
    expect(uncaught).toEqual([]);
    expect(reply.text).toBe('one;two;');
    expect(counts).toEqual({ write: 2, end: 1 });
    expect(await stored(middleware, reply)).toEqual({ streamed: true });
  });
});

describe.each(EXPRESS_VERSIONS)('with other response-path code on %s', (_name, express) => {
  const BIG = Array.from({ length: 400 }, (_, i) => `line ${i} of a body well over a kilobyte\n`).join('');

  it.each(['before', 'after'] as const)('compression mounted %s sessions(): the gzip body decompresses to the original', async (where) => {
    for (const [, makeProvider] of PROVIDERS) {
      const middleware = mw({ provider: makeProvider() });
      const app = express();
      if (where === 'before') app.use(compression());
      app.use(middleware);
      if (where === 'after') app.use(compression());
      app.get('/', (req, res) => {
        req.session.set('k', 'v');
        res.type('text').send(BIG);
      });
      app.get('/stream', (req, res) => {
        req.session.set('k', 'streamed');
        res.type('text');
        res.write(BIG.slice(0, 3000));
        setTimeout(() => res.end(BIG.slice(3000)), 5);
      });
      const url = await serve(app as unknown as RequestListener);
      const { result, uncaught } = await watchingProcess(async () => [await get(url, { 'accept-encoding': 'gzip' }), await get(`${url}/stream`, { 'accept-encoding': 'gzip' })]);
      expect(uncaught).toEqual([]);
      for (const [reply, value] of [
        [result[0], 'v'],
        [result[1], 'streamed'],
      ] as const) {
        expect(reply.status).toBe(200);
        expect(reply.headers['content-encoding']).toBe('gzip');
        expect(gunzipSync(reply.body).toString()).toBe(BIG);
        expect(await stored(middleware, reply)).toEqual({ k: value });
      }
    }
  });

  it('res.sendFile of a 100 KB file in a route that sets a key: body intact, cookie present', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'request-path-'));
    try {
      const file = join(dir, 'payload.bin');
      const content = randomBytes(100 * 1024);
      writeFileSync(file, content);
      for (const [, makeProvider] of PROVIDERS) {
        const middleware = mw({ provider: makeProvider() });
        const app = express();
        app.use(middleware);
        app.get('/file', (req, res, next) => {
          req.session.set('downloaded', true);
          res.sendFile(file, (err) => err && next(err));
        });
        const { result: reply, uncaught } = await watchingProcess(async () => get(`${await serve(app as unknown as RequestListener)}/file`));
        expect(uncaught).toEqual([]);
        expect(reply.status).toBe(200);
        expect(reply.body.equals(content)).toBe(true);
        expect(await stored(middleware, reply)).toEqual({ downloaded: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------
// 5. A failed save before anything was sent

describe.each(EXPRESS_VERSIONS)('a failed save before anything was sent, on %s', (_name, express) => {
  function build(provider: RecordingProvider): { app: RequestListener; middleware: SessionMiddleware } {
    const middleware = mw({ provider });
    const app = express();
    app.use((_req, res, next) => {
      res.setHeader('Access-Control-Allow-Origin', 'https://app.example');
      next();
    });
    app.use(middleware);
    app.get('/login', (req, res) => {
      req.session.set('user', 'alice');
      res.setHeader('X-Route', '1');
      res.redirect('/home');
    });
    app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
      res.status(err.status ?? 500).json({ error: err.message });
    });
    return { app: app as unknown as RequestListener, middleware };
  }

  it.each(['create', 'update'] as const)('(%s) goes to the error handler as a 503 with the earlier middleware’s headers and none of the route’s', async (method) => {
    const provider = new RecordingProvider();
    const { app, middleware } = build(provider);
    const url = await serve(app);
    const headers: Record<string, string> = {};
    if (method === 'update') {
      const first = await get(`${url}/login`);
      expect(first.status).toBe(302);
      headers.cookie = cookieOf(first);
    }
    provider.failing.add(method);
    const reply = await get(`${url}/login`, headers);
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.text)).toEqual({ error: expect.stringContaining(`${method}: connection refused (injected)`) });
    expect(reply.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(reply.headers.location).toBeUndefined();
    expect(reply.headers['x-route']).toBeUndefined();
    expect(sessionCookie(reply)).toBeUndefined();
    expect(await middleware.manager.count()).toBe(method === 'create' ? 0 : 1);
  });
});

// ---------------------------------------------------------------------------
// 6. sessions() in a sub-app, the response made by the parent

describe.each(EXPRESS_VERSIONS)('sessions() in a mounted sub-app, the parent responding, on %s', (_name, express) => {
  async function setup() {
    const middleware = mw();
    const parent = express();
    const sub = express();
    sub.use(middleware);
    sub.use((req, _res, next) => {
      req.session.set('visited', req.path);
      if (req.path === '/sub-error') return next(Object.assign(new Error('from the sub-app'), { status: 418 }));
      next();
    });
    parent.use('/area', sub);
    parent.get('/area/after', (_req, res) => {
      res.send('parent route');
    });
    parent.get('/area/throws', () => {
      throw Object.assign(new Error('from the parent'), { status: 409 });
    });
    parent.get('/area/not-here', (_req, _res, next) => next()); // falls through to the parent's 404
    parent.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
      res.status(err.status ?? 500).send(`handled: ${err.message}`);
    });
    const url = await serve(parent as unknown as RequestListener);
    return { url, middleware, parent };
  }

  it.each([
    ['a later parent route', '/area/after', 200, 'parent route'],
    ['the parent’s 404', '/area/nowhere', 404, undefined],
    ['the parent’s 404 after a route that passes', '/area/not-here', 404, undefined],
    ['the parent’s error handler (a parent route throws)', '/area/throws', 409, 'handled: from the parent'],
    ['the parent’s error handler (the sub-app passes an error)', '/area/sub-error', 418, 'handled: from the sub-app'],
  ])('%s: the session is saved and its cookie sent', async (_case, path, status, body) => {
    const { url, middleware } = await setup();
    const reply = await get(`${url}${path}`);
    expect(reply.status).toBe(status);
    if (body !== undefined) expect(reply.text).toBe(body);
    expect(sessionCookie(reply)).toBeDefined();
    expect(await stored(middleware, reply)).toEqual({ visited: path.slice('/area'.length) });
  });
});

// ---------------------------------------------------------------------------
// 7. Nothing global

describe('nothing global', () => {
  it('Node’s prototypes are untouched after importing the package and serving on plain http, connect and Express (in a fresh process)', async () => {
    const script = join(__dirname, 'support', 'nothing-global.ts');
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['-r', 'ts-node/register/transpile-only', '-e', `require(${JSON.stringify(script)})`],
        { cwd: join(__dirname, '..'), timeout: 20_000 },
        (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)),
      );
    });
    const report = JSON.parse(stdout.trim().split('\n').pop()!) as {
      changes: string[];
      bodies: string[];
      clientSession: boolean[];
      unboundRequestSession: boolean;
      stored: number;
    };
    expect(report.bodies).toEqual(['plain http 1', 'plain http 2', 'connect 1', 'connect 2', 'express 5 1', 'express 5 2', 'express 4 1', 'express 4 2']);
    expect(report.stored).toBe(4);
    expect(report.clientSession).toEqual(report.bodies.map(() => false));
    expect(report.unboundRequestSession).toBe(false);
    expect(report.changes).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// 8. Destroying a session this request created

describe.each(EXPRESS_VERSIONS)('destroying a session this request created, on %s', (_name, express) => {
  describe.each([false, true])('saveUninitialized %s', (saveUninitialized) => {
    it.each([
      ['sets a key', 'set'],
      ['sets nothing', 'nothing'],
      ['sets a key and saves it first', 'save'],
    ] as const)('a route that %s then destroys: no Set-Cookie at all, nothing stored', async (_case, what) => {
      const middleware = mw({ saveUninitialized });
      const app = express();
      app.use(middleware);
      app.get('/', async (req, res) => {
        if (what !== 'nothing') req.session.set('k', 'v');
        if (what === 'save') await req.session.save();
        await req.session.destroy();
        res.send('bye');
      });
      const reply = await get(await serve(app as unknown as RequestListener));
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('bye');
      expect(reply.headers['set-cookie']).toBeUndefined();
      expect(await middleware.manager.count()).toBe(0);
    });
  });
});
