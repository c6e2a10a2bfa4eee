// Regression tests for the hardening of the request path: each of them failed
// on the behaviour it names, over real HTTP (supertest), on real stores.
import Database from 'better-sqlite3';
import cookieParser from 'cookie-parser';
import { sign } from 'cookie-signature';
import express5, { type Express, type NextFunction, type Request, type Response } from 'express';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { createClient } from 'redis';
import request from 'supertest';
import { OptionError, sessions, type SessionMiddleware, type SessionRequest } from '../lib/index';
import { storageKey } from '../lib/manager';
import type { SessionOptions } from '../lib/options';
import { cookiePair, EXPRESS_VERSIONS, FakeClock, idOf, setCookie } from './support/http';
import { gate } from './support/recording-provider';
import { skipReason } from './support/services';

const redisUrl = process.env.REDIS_URL ?? '';
const pgUrl = process.env.DATABASE_URL ?? '';
let unique = 0;
const tag = (): string => `${process.pid}_${Date.now().toString(36)}_${++unique}`;

// ---------------------------------------------------------------- stores

interface Store {
  options: Partial<SessionOptions>;
  /** Everything the store holds, as text: keys/columns/rows/file names and contents. */
  dump(): Promise<string>;
  cleanup(): Promise<void>;
}

type StoreName = 'memory' | 'file' | 'sqlite' | 'redis' | 'postgres';

function makeStore(name: StoreName): Store {
  switch (name) {
    case 'memory':
      return { options: { provider: 'memory' }, dump: async () => '', cleanup: async () => {} };
    case 'file': {
      const dir = mkdtempSync(join(tmpdir(), 'sm-hardening-file-'));
      const dump = async (): Promise<string> => {
        const out: string[] = [];
        const walk = (at: string): void => {
          for (const entry of readdirSync(at, { withFileTypes: true })) {
            const full = join(at, entry.name);
            out.push(full);
            if (entry.isDirectory()) walk(full);
            else out.push(readFileSync(full, 'utf8'));
          }
        };
        walk(dir);
        return out.join('\n');
      };
      return { options: { provider: 'file', providerOptions: { dir } }, dump, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    }
    case 'sqlite': {
      const dir = mkdtempSync(join(tmpdir(), 'sm-hardening-sqlite-'));
      const path = join(dir, 'sessions.db');
      const dump = async (): Promise<string> => {
        const db = new Database(path, { readonly: true });
        try {
          return JSON.stringify(db.prepare('SELECT * FROM sessions').all());
        } finally {
          db.close();
        }
      };
      return { options: { provider: 'sqlite', providerOptions: { path } }, dump, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    }
    case 'redis': {
      const prefix = `hardening:${tag()}:`;
      const withClient = async <T>(run: (client: ReturnType<typeof createClient>) => Promise<T>): Promise<T> => {
        const client = createClient({ url: redisUrl });
        await client.connect();
        try {
          return await run(client);
        } finally {
          client.destroy();
        }
      };
      const dump = () =>
        withClient(async (client) => {
          const out: unknown[] = [];
          for (const key of await client.keys(`${prefix}*`)) {
            const type = await client.type(key);
            out.push(key, type);
            if (type === 'hash') out.push(await client.hGetAll(key));
            else if (type === 'string') out.push(await client.get(key));
            else if (type === 'set') out.push(await client.sMembers(key));
            else if (type === 'zset') out.push(await client.zRange(key, 0, -1));
            else if (type === 'list') out.push(await client.lRange(key, 0, -1));
          }
          return JSON.stringify(out);
        });
      const cleanup = () =>
        withClient(async (client) => {
          const keys = await client.keys(`${prefix}*`);
          if (keys.length > 0) await client.del(keys);
        });
      return { options: { provider: 'redis', providerOptions: { url: redisUrl, prefix } }, dump, cleanup };
    }
    case 'postgres': {
      const table = `hardening_${tag()}`;
      const withPool = async <T>(run: (pool: Pool) => Promise<T>): Promise<T> => {
        const pool = new Pool({ connectionString: pgUrl, max: 1 });
        try {
          return await run(pool);
        } finally {
          await pool.end();
        }
      };
      const dump = () => withPool(async (pool) => JSON.stringify((await pool.query(`SELECT * FROM "${table}"`)).rows));
      const cleanup = () => withPool(async (pool) => void (await pool.query(`DROP TABLE IF EXISTS "${table}"`)));
      return { options: { provider: 'postgres', providerOptions: { connectionString: pgUrl, table } }, dump, cleanup };
    }
  }
}

function unavailable(name: StoreName): string | undefined {
  if (name !== 'redis' && name !== 'postgres') return undefined;
  const reason = skipReason(name);
  if (reason !== undefined && process.env.CI) throw new Error(`${name}: ${reason}`);
  return reason;
}

/** `describe` for the store, or a skip that says why. */
function describeStore(name: StoreName, body: (current: () => Store) => void): void {
  const reason = unavailable(name);
  if (reason !== undefined) {
    describe(`on ${name}`, () => it.skip(`skipped: ${reason}`, () => {}));
    return;
  }
  describe(`on ${name}`, () => {
    let store: Store;
    beforeEach(() => {
      store = makeStore(name);
    });
    afterEach(async () => {
      await closeAll();
      await store.cleanup();
    });
    body(() => store);
  });
}

// ---------------------------------------------------------------- apps

const opened: SessionMiddleware[] = [];
async function closeAll(): Promise<void> {
  await Promise.all(opened.splice(0).map((middleware) => middleware.manager.close()));
}
afterEach(closeAll);

/** A route's stopping point: the test learns the session id there and lets the route go on when it likes. */
function checkpoint(): { reached: Promise<string>; arrive: (sid: string) => Promise<void>; release: () => void } {
  let arrived!: (sid: string) => void;
  const reached = new Promise<string>((resolve) => (arrived = resolve));
  const released = gate();
  return { reached, arrive: (sid) => (arrived(sid), released.promise), release: released.open };
}

interface App {
  app: Express;
  middleware: SessionMiddleware;
}

/** An app with the session middleware, the routes `routes` adds, a few common ones and an error handler showing `err.status`. */
function makeApp(express: typeof express5, options: SessionOptions, routes: (app: Express) => void = () => {}): App {
  const app = express();
  const middleware = sessions({ onError: () => {}, ...options });
  opened.push(middleware);
  app.use(middleware);
  routes(app);
  app.get('/whoami', (req, res) => res.json({ sessionID: req.sessionID, isNew: req.session.isNew, keys: [...req.session.keys()] }));
  app.get('/read', (req, res) => res.json({ username: req.session.get('username') ?? null }));
  app.get('/set/:key/:value', (req, res) => {
    req.session.set(String(req.params.key), req.params.value);
    res.json({ ok: true });
  });
  app.get('/delete/:key', (req, res) => {
    req.session.delete(String(req.params.key));
    res.json({ ok: true });
  });
  app.post('/login', async (req, res) => {
    await req.session.regenerate();
    req.session.set('username', 'alice');
    res.json({ ok: true });
  });
  app.post('/logout', async (req, res) => {
    await req.destroySession();
    res.json({ ok: true });
  });
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err.status ?? 500).json({ error: err.message });
  });
  return { app, middleware };
}

/** A request started now (supertest sends on `then`), to be awaited later. */
function start(test: request.Test): Promise<request.Response> {
  return new Promise((resolve, reject) => test.then(resolve, reject));
}

async function expectFreshSession(app: Express, sid: string): Promise<void> {
  const res = await request(app).get('/whoami').set('Cookie', `sid=${sid}`).expect(200);
  expect(res.body.isNew).toBe(true);
  expect(res.body.keys).toEqual([]);
  expect(res.body.sessionID).not.toBe(sid);
}

// ---------------------------------------------------------------- 1. no resurrection

describe('a session destroyed or expired during a request is never brought back', () => {
  for (const name of ['memory', 'file', 'sqlite', 'redis', 'postgres'] as const) {
    describeStore(name, (store) => {
      function slowSaveApp(options: SessionOptions = {}) {
        const point = checkpoint();
        const built = makeApp(express5, { ...store().options, ...options }, (app) => {
          app.get('/slow-save', async (req, res) => {
            req.session.set('a', 1);
            await req.session.save();
            await point.arrive(req.sessionID);
            req.session.set('b', 2);
            res.json({ saved: await req.session.save() });
          });
          app.get('/slow-respond', async (req, res) => {
            req.session.set('a', 1);
            await req.session.save();
            await point.arrive(req.sessionID);
            res.json({ ok: true });
          });
        });
        return { ...built, point };
      }

      it('destroyed between two saves: the second save answers false and creates nothing', async () => {
        const { app, middleware, point } = slowSaveApp();
        const pending = start(request(app).get('/slow-save'));
        const sid = await point.reached;
        expect(await middleware.manager.count()).toBe(1);
        await middleware.manager.destroy(sid);
        point.release();
        const res = await pending;
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ saved: false });
        expect(res.headers['set-cookie']).toBeUndefined();
        expect(await middleware.manager.count()).toBe(0);
        await expectFreshSession(app, sid);
      });

      it('destroyed before the response with saveUninitialized: nothing is stored again', async () => {
        const { app, middleware, point } = slowSaveApp({ saveUninitialized: true });
        const pending = start(request(app).get('/slow-respond'));
        const sid = await point.reached;
        await middleware.manager.destroy(sid);
        point.release();
        const res = await pending;
        expect(res.status).toBe(200);
        // The final commit checks that the session save() stored still exists: the dead id is not sent.
        expect(res.headers['set-cookie']).toBeUndefined();
        expect(await middleware.manager.count()).toBe(0);
        for await (const info of middleware.manager.sessions()) throw new Error(`a session was stored: ${JSON.stringify(info.data)}`);
        await expectFreshSession(app, sid);
      });

      it('past absoluteLifetime between two saves: not recreated', async () => {
        const clock = new FakeClock(Date.now());
        const { app, middleware, point } = slowSaveApp({ clock: clock.now, maxLifetime: 3600, absoluteLifetime: 60 });
        const pending = start(request(app).get('/slow-save'));
        const sid = await point.reached;
        clock.advance(61);
        point.release();
        const res = await pending;
        expect(res.body).toEqual({ saved: false });
        expect(res.headers['set-cookie']).toBeUndefined();
        expect(await middleware.manager.count()).toBe(0);
        await expectFreshSession(app, sid);
      });
    });
  }
});

// ---------------------------------------------------------------- 2. atomic regenerate

describe('regenerate() is atomic against concurrent requests', () => {
  for (const name of ['memory', 'sqlite'] as const) {
    describeStore(name, (store) => {
      function regenApp() {
        const point = checkpoint();
        const built = makeApp(express5, store().options, (app) => {
          app.get('/setup', (req, res) => {
            req.session.set('user', 'alice');
            req.session.set('sudo', true);
            res.json({ ok: true });
          });
          app.get('/hold-regenerate', async (req, res) => {
            expect(req.session.get('sudo')).toBe(true); // loaded before the other request changed it
            await point.arrive(req.sessionID);
            await req.session.regenerate();
            res.json({ user: req.session.get('user') ?? null, sudo: req.session.get('sudo') ?? null });
          });
        });
        return { ...built, point };
      }

      it('a key deleted by another request before the regenerate stays deleted under the new id', async () => {
        const { app, middleware, point } = regenApp();
        const cookie = cookiePair(await request(app).get('/setup').expect(200));
        const pending = start(request(app).get('/hold-regenerate').set('Cookie', cookie));
        await point.reached;
        await request(app).get('/delete/sudo').set('Cookie', cookie).expect(200);
        point.release();
        const res = await pending;
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ user: 'alice', sudo: null });
        const newId = idOf(cookiePair(res));
        expect(newId).not.toBe(idOf(cookie));
        const stored = await middleware.manager.provider.read(storageKey(newId));
        expect(stored).toBeDefined();
        expect(stored!.values.has('sudo')).toBe(false);
        expect(stored!.values.get('user')).toBe('"alice"');
        expect(await middleware.manager.count()).toBe(1);
        await expectFreshSession(app, idOf(cookie));
      });

      it('a logout landing before the regenerate: nothing is created, no new id is sent', async () => {
        const { app, middleware, point } = regenApp();
        const cookie = cookiePair(await request(app).get('/setup').expect(200));
        const pending = start(request(app).get('/hold-regenerate').set('Cookie', cookie));
        await point.reached;
        await request(app).post('/logout').set('Cookie', cookie).expect(200);
        point.release();
        const res = await pending;
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ user: null, sudo: null });
        expect(res.headers['set-cookie']).toBeUndefined();
        expect(await middleware.manager.count()).toBe(0);
      });
    });
  }
});

// ---------------------------------------------------------------- 3–7, 10: cheap on both Express majors

describe.each(EXPRESS_VERSIONS)('on %s', (_name, express) => {
  describe('an id that came by URL', () => {
    it('is not written into a cookie by a refresh', async () => {
      const clock = new FakeClock();
      const { app, middleware } = makeApp(express, { transports: ['cookie', 'query'], touchAfter: 0, clock: clock.now });
      // A cookie-less client: it keeps the id from the URL only.
      const created = await request(app).get('/set/username/alice').expect(200);
      const sid = idOf(cookiePair(created));
      clock.advance(10); // a refresh is due

      const res = await request(app).get(`/read?sid=${sid}`).expect(200);
      expect(res.body).toEqual({ username: 'alice' });
      expect(res.headers['set-cookie']).toBeUndefined();
      // The refresh did happen (so the test is not vacuous): the stored expiry moved.
      const expiries: number[] = [];
      for await (const info of middleware.manager.sessions()) expiries.push(info.expiresAt.getTime());
      expect(expiries).toEqual([clock.time + 3600_000]);

      // The same refresh by cookie re-sends the cookie.
      clock.advance(10);
      const byCookie = await request(app).get('/read').set('Cookie', `sid=${sid}`).expect(200);
      expect(setCookie(byCookie)).toBeDefined();
    });
  });

  describe('Cache-Control on a response that carries the session cookie', () => {
    function cacheApp(clock: FakeClock, staticDir: string) {
      return makeApp(express, { touchAfter: 0, clock: clock.now }, (app) => {
        app.get('/public', (req, res) => {
          res.set('Cache-Control', 'public, max-age=60');
          res.json({ username: req.session.get('username') ?? null });
        });
        app.use('/static', express.static(staticDir));
      });
    }

    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'sm-hardening-static-'));
      writeFileSync(join(dir, 'a.txt'), 'hello');
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it("narrows the app's public Cache-Control to private", async () => {
      const clock = new FakeClock();
      const { app } = cacheApp(clock, dir);
      const cookie = cookiePair(await request(app).get('/set/username/alice'));
      clock.advance(10);
      const res = await request(app).get('/public').set('Cookie', cookie).expect(200);
      expect(setCookie(res)).toBeDefined();
      expect(res.headers['cache-control']).not.toMatch(/public/i);
      expect(res.headers['cache-control']).toMatch(/(^|,\s*)private(,|$)/);
      expect(res.headers['cache-control']).toMatch(/max-age=60/);
    });

    it("narrows express.static's Cache-Control to private", async () => {
      const clock = new FakeClock();
      const { app } = cacheApp(clock, dir);
      const cookie = cookiePair(await request(app).get('/set/username/alice'));
      clock.advance(10);
      const res = await request(app).get('/static/a.txt').set('Cookie', cookie).expect(200);
      expect(res.text).toBe('hello');
      expect(setCookie(res)).toBeDefined();
      expect(res.headers['cache-control']).not.toMatch(/public/i);
      expect(res.headers['cache-control']).toMatch(/private/);
    });

    it('is no-store when the app set none', async () => {
      const clock = new FakeClock();
      const { app } = cacheApp(clock, dir);
      const created = await request(app).get('/set/username/alice');
      expect(created.headers['cache-control']).toBe('no-store');
      clock.advance(10);
      const res = await request(app).get('/read').set('Cookie', cookiePair(created)).expect(200);
      expect(setCookie(res)).toBeDefined();
      expect(res.headers['cache-control']).toBe('no-store');
    });
  });

  describe("cookie-parser's secret rotation", () => {
    const NEW_SECRET = 'the-new-cookie-parser-secret-0123456789abcdef';
    const OLD_SECRET = 'the-old-cookie-parser-secret-0123456789abcdef';

    it('accepts a cookie signed with the old secret and re-signs it with the new one', async () => {
      const app = express();
      app.use(cookieParser([NEW_SECRET, OLD_SECRET]));
      const middleware = sessions({ onError: () => {} });
      opened.push(middleware);
      app.use(middleware);
      app.get('/whoami', (req, res) => res.json({ sessionID: req.sessionID, isNew: req.session.isNew, username: req.session.get('username') ?? null }));
      app.get('/set/:key/:value', (req, res) => {
        req.session.set(String(req.params.key), req.params.value);
        res.json({ ok: true });
      });

      const created = cookiePair(await request(app).get('/set/username/alice').expect(200));
      const sid = idOf(created);
      expect(decodeURIComponent(created.slice('sid='.length))).toBe(`s:${sign(sid, NEW_SECRET)}`);

      const oldCookie = `sid=${encodeURIComponent(`s:${sign(sid, OLD_SECRET)}`)}`;
      const read = await request(app).get('/whoami').set('Cookie', oldCookie).expect(200);
      expect(read.body).toEqual({ sessionID: sid, isNew: false, username: 'alice' });

      const written = await request(app).get('/set/k/v').set('Cookie', oldCookie).expect(200);
      expect(decodeURIComponent(cookiePair(written).slice('sid='.length))).toBe(`s:${sign(sid, NEW_SECRET)}`);
    });
  });

  describe('two sessions() middlewares on one request', () => {
    it('fails the request with a 500 that says so', async () => {
      const app = express();
      const a = sessions({ onError: () => {} });
      const b = sessions({ onError: () => {} });
      opened.push(a, b);
      app.use(a);
      app.use(b);
      app.get('/', (_req, res) => res.send('reached'));
      app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
        res.status(err.status ?? 500).json({ error: err.message });
      });
      const res = await request(app).get('/');
      expect(res.status).toBe(500);
      expect(res.body.error).toMatch(/two different sessions\(\) middlewares ran/);
    });

    it('the same instance mounted twice is fine', async () => {
      const app = express();
      const a = sessions({ onError: () => {} });
      opened.push(a);
      app.use(a);
      app.use(a);
      app.get('/incr', (req, res) => {
        const n = ((req.session.get('n') as number | undefined) ?? 0) + 1;
        req.session.set('n', n);
        res.json({ n });
      });
      const agent = request.agent(app);
      expect((await agent.get('/incr').expect(200)).body).toEqual({ n: 1 });
      expect((await agent.get('/incr').expect(200)).body).toEqual({ n: 2 });
    });
  });

  describe('manager.destroy()', () => {
    it('takes a handle from manager.sessions()', async () => {
      const { app, middleware } = makeApp(express, {});
      const cookie = cookiePair(await request(app).post('/login').expect(200));
      const other = cookiePair(await request(app).get('/set/username/bob').expect(200));
      const handles: string[] = [];
      for await (const info of middleware.manager.sessions()) if (info.data.username === 'alice') handles.push(info.handle);
      expect(handles).toHaveLength(1);
      expect(handles[0]).not.toBe(idOf(cookie));
      await middleware.manager.destroy(handles[0]);
      await expectFreshSession(app, idOf(cookie));
      expect((await request(app).get('/read').set('Cookie', other)).body).toEqual({ username: 'bob' });
      expect(await middleware.manager.count()).toBe(1);
    });

    it('takes a raw id', async () => {
      const { app, middleware } = makeApp(express, {});
      const cookie = cookiePair(await request(app).post('/login').expect(200));
      await middleware.manager.destroy(idOf(cookie));
      expect(await middleware.manager.count()).toBe(0);
      await expectFreshSession(app, idOf(cookie));
    });
  });
});

// ---------------------------------------------------------------- 5. cookie prefixes

describe('cookie name prefixes are matched case-insensitively', () => {
  it('__host-sid with a domain throws naming cookie.domain', () => {
    expect(() => sessions({ cookieName: '__host-sid', cookie: { domain: 'example.com', secure: true } })).toThrow(OptionError);
    expect(() => sessions({ cookieName: '__host-sid', cookie: { domain: 'example.com', secure: true } })).toThrow(/cookie\.domain/);
  });

  it("__SECURE-sid with secure 'auto' throws naming cookie.secure", () => {
    expect(() => sessions({ cookieName: '__SECURE-sid', cookie: { secure: 'auto' } })).toThrow(OptionError);
    expect(() => sessions({ cookieName: '__SECURE-sid', cookie: { secure: 'auto' } })).toThrow(/cookie\.secure/);
  });
});

// ---------------------------------------------------------------- 8. HTTP/2

describe('over HTTP/2 (h2c)', () => {
  it('sends the cookie back and keeps the session across two requests', async () => {
    const middleware = sessions({ onError: () => {} });
    opened.push(middleware);
    const server = http2.createServer((req, res) => {
      const fail = (err: unknown) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: String(err) }));
      };
      try {
        middleware(req as unknown as IncomingMessage, res as unknown as ServerResponse, (err) => {
          if (err) return fail(err);
          const { session } = req as unknown as SessionRequest;
          const n = ((session.get('n') as number | undefined) ?? 0) + 1;
          session.set('n', n);
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ n }));
        });
      } catch (err) {
        fail(err);
      }
    });
    const serverSessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (session) => serverSessions.add(session));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const get = (cookie?: string) =>
        new Promise<{ status: number; setCookie: string[] | undefined; body: unknown }>((resolve, reject) => {
          const stream = client.request({ ':path': '/', ...(cookie ? { cookie } : {}) });
          let status = 0;
          let setCookies: string[] | undefined;
          let text = '';
          stream.on('response', (headers) => {
            status = Number(headers[':status']);
            setCookies = headers['set-cookie'];
          });
          stream.setEncoding('utf8');
          stream.on('data', (chunk: string) => (text += chunk));
          stream.on('end', () => resolve({ status, setCookie: setCookies, body: JSON.parse(text) }));
          stream.on('error', reject);
          stream.setTimeout(3000, () => {
            reject(new Error('no HTTP/2 response within 3 s'));
            stream.close();
          });
          stream.end();
        });
      const first = await get();
      expect(first.status).toBe(200);
      expect(first.body).toEqual({ n: 1 });
      const line = first.setCookie?.find((each) => each.startsWith('sid='));
      expect(line).toBeDefined();
      const second = await get(line!.split(';')[0]);
      expect(second.body).toEqual({ n: 2 });
      expect(await middleware.manager.count()).toBe(1);
    } finally {
      client.destroy();
      for (const session of serverSessions) session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

// ---------------------------------------------------------------- 9. ids at rest

describe('session ids at rest', () => {
  for (const name of ['file', 'sqlite', 'redis', 'postgres'] as const) {
    describeStore(name, (store) => {
      it('the store holds storageKey(id), never the raw id', async () => {
        const { app } = makeApp(express5, store().options);
        const cookie = cookiePair(await request(app).post('/login').expect(200));
        await request(app).get('/set/theme/dark').set('Cookie', cookie).expect(200);
        const sid = idOf(cookie);
        const raw = await store().dump();
        expect(raw).toContain(storageKey(sid));
        expect(raw).toContain('alice');
        expect(raw).not.toContain(sid);
      });
    });
  }

  describeStore('sqlite', (store) => {
    it('the database file, -wal and -shm are mode 0600', async () => {
      const { app } = makeApp(express5, store().options);
      await request(app).post('/login').expect(200);
      const path = (store().options.providerOptions as { path: string }).path;
      for (const file of [path, `${path}-wal`, `${path}-shm`]) {
        expect({ file, mode: (statSync(file).mode & 0o777).toString(8) }).toEqual({ file, mode: '600' });
      }
    });
  });
});
