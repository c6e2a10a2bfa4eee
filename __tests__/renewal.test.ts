// Renewal with a grace window: regenerate({ graceSeconds }) and renewAfter.
// During the window the old id leads to the new session (reads, writes,
// logouts, requests already in flight); afterwards it is unknown. Over real
// HTTP, on every provider.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { Pool } from 'pg';
import request from 'supertest';
import { OptionError, sessions, type SessionMiddleware } from '../lib/index';
import type { SessionOptions } from '../lib/options';
import { cookiePair, FakeClock, setCookie } from './support/http';
import { skipReason } from './support/services';

const dirs: string[] = [];
const tables: string[] = [];
afterAll(async () => {
  dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true }));
  if (tables.length === 0) return;
  const pool = new Pool({ connectionString: process.env.DATABASE_URL });
  for (const table of tables) await pool.query(`DROP TABLE IF EXISTS ${table}`);
  await pool.end();
});

function store(name: string): Pick<SessionOptions, 'provider' | 'providerOptions'> {
  if (name === 'memory') return { provider: 'memory' };
  const unique = `renewal_${process.pid}_${Math.random().toString(36).slice(2)}`;
  if (name === 'redis') return { provider: 'redis', providerOptions: { url: process.env.REDIS_URL, prefix: `${unique}:` } };
  if (name === 'postgres') tables.push(unique);
  if (name === 'postgres') return { provider: 'postgres', providerOptions: { connectionString: process.env.DATABASE_URL, table: unique } };
  const dir = mkdtempSync(join(tmpdir(), 'sm-renewal-'));
  dirs.push(dir);
  return name === 'file' ? { provider: 'file', providerOptions: { dir } } : { provider: 'sqlite', providerOptions: { path: join(dir, 's.db') } };
}

interface Harness {
  app: express.Express;
  middleware: SessionMiddleware;
  clock: FakeClock;
  /** Routes under /held/ wait for this before they act. */
  gate: { wait?: Promise<void> };
}

function harness(name: string, options: SessionOptions = {}): Harness {
  const clock = new FakeClock(Date.now()); // real time: Redis expires keys by its own clock
  const gate: Harness['gate'] = {};
  const app = express();
  const middleware = sessions({ onError: () => undefined, clock: clock.now, ...store(name), ...options });
  app.use(middleware);
  app.post('/login', async (req, res) => {
    await req.session.regenerate();
    req.session.set('user', 'ann');
    res.json({ ok: true });
  });
  app.post('/renew', async (req, res) => {
    await req.session.regenerate({ graceSeconds: Number(req.query.grace ?? 10) });
    res.json({ user: req.session.get('user') ?? null });
  });
  app.get('/me', (req, res) => res.json({ user: req.session.get('user') ?? null, note: req.session.get('note') ?? null }));
  app.post('/note/:value', (req, res) => {
    req.session.set('note', req.params.value);
    res.json({ ok: true });
  });
  app.post('/held/note/:value', async (req, res) => {
    await gate.wait;
    req.session.set('note', req.params.value);
    res.json({ ok: true });
  });
  app.post('/held/regenerate', async (req, res) => {
    await gate.wait;
    req.session.set('note', 'set before regenerate');
    await req.session.regenerate();
    res.json({ user: req.session.get('user') ?? null });
  });
  app.post('/held/logout', async (req, res) => {
    await gate.wait;
    await req.destroySession();
    res.json({ ok: true });
  });
  return { app, middleware, clock, gate };
}

/** Starts a request now (supertest is lazy) and resolves its response later. */
function started(test: request.Test): Promise<request.Response> {
  return new Promise((resolve, reject) => test.end((err, res) => (err ? reject(err) : resolve(res))));
}

/** Lets the event loop run until `predicate` holds (bounded). */
async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !predicate(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!predicate()) throw new Error('condition not reached');
}

const STORES = ['memory', 'file', 'sqlite', 'redis', 'postgres'].filter((name) => (name !== 'redis' && name !== 'postgres') || skipReason(name) === undefined);

describe.each(STORES)('renewal with a grace window on %s', (name) => {
  let h: Harness;
  afterEach(() => h.middleware.manager.close());

  it('during the window the old id is served the new session, its writes land there and its response names the new id; afterwards it is unknown', async () => {
    h = harness(name);
    const old = cookiePair(await request(h.app).post('/login'));
    const renewed = await request(h.app).post('/renew').set('Cookie', old);
    expect(renewed.body).toEqual({ user: 'ann' });
    const fresh = cookiePair(renewed);
    expect(fresh).not.toBe(old);

    const viaOld = await request(h.app).get('/me').set('Cookie', old);
    expect(viaOld.body).toEqual({ user: 'ann', note: null });
    expect(cookiePair(viaOld)).toBe(fresh); // the client moves to the new id
    expect(cookiePair(await request(h.app).post('/note/from-old').set('Cookie', old))).toBe(fresh);
    expect((await request(h.app).get('/me').set('Cookie', fresh)).body).toEqual({ user: 'ann', note: 'from-old' });

    h.clock.advance(11);
    const late = await request(h.app).get('/me').set('Cookie', old);
    expect(late.body).toEqual({ user: null, note: null });
    expect(setCookie(late)).toBeUndefined();
    expect((await request(h.app).get('/me').set('Cookie', fresh)).body.user).toBe('ann');
    // The link is not a session: listings show the one session there is.
    const listed = [];
    for await (const info of h.middleware.manager.sessions()) listed.push(info);
    expect(listed.map((info) => info.data)).toEqual([{ user: 'ann', note: 'from-old' }]);
  });

  it('the default grace is none: the old id is unknown at once', async () => {
    h = harness(name);
    const old = cookiePair(await request(h.app).post('/login'));
    await request(h.app).post('/renew?grace=0').set('Cookie', old);
    expect((await request(h.app).get('/me').set('Cookie', old)).body.user).toBeNull();
  });

  it('a request already in flight with the old id: its write follows to the new session and its response names the new id', async () => {
    h = harness(name);
    const old = cookiePair(await request(h.app).post('/login'));
    let release!: () => void;
    h.gate.wait = new Promise((resolve) => (release = resolve));
    let arrived = false;
    const inFlight = started(request(h.app).post('/held/note/in-flight').set('Cookie', old).on('request', () => (arrived = true)));
    await until(() => arrived);
    await new Promise((resolve) => setTimeout(resolve, 20)); // it has loaded the old session and waits in the route
    const fresh = cookiePair(await request(h.app).post('/renew').set('Cookie', old));
    release();
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(cookiePair(response)).toBe(fresh);
    expect((await request(h.app).get('/me').set('Cookie', fresh)).body).toEqual({ user: 'ann', note: 'in-flight' });
  });

  it('a regenerate already in flight with the old id regenerates the renewed session', async () => {
    h = harness(name);
    const old = cookiePair(await request(h.app).post('/login'));
    let release!: () => void;
    h.gate.wait = new Promise((resolve) => (release = resolve));
    const inFlight = started(request(h.app).post('/held/regenerate').set('Cookie', old));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const renewed = cookiePair(await request(h.app).post('/renew').set('Cookie', old));
    release();
    const response = await inFlight;
    expect(response.body).toEqual({ user: 'ann' });
    const third = cookiePair(response);
    expect(new Set([old, renewed, third]).size).toBe(3);
    expect((await request(h.app).get('/me').set('Cookie', third)).body).toEqual({ user: 'ann', note: 'set before regenerate' });
    expect((await request(h.app).get('/me').set('Cookie', renewed)).body.user).toBeNull(); // regenerate with no grace: dead at once
  });

  it('a logout already in flight with the old id ends the renewed session too', async () => {
    h = harness(name);
    const old = cookiePair(await request(h.app).post('/login'));
    let release!: () => void;
    h.gate.wait = new Promise((resolve) => (release = resolve));
    const inFlight = started(request(h.app).post('/held/logout').set('Cookie', old));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const fresh = cookiePair(await request(h.app).post('/renew').set('Cookie', old));
    release();
    expect((await inFlight).status).toBe(200);
    expect((await request(h.app).get('/me').set('Cookie', fresh)).body.user).toBeNull();
    expect((await request(h.app).get('/me').set('Cookie', old)).body.user).toBeNull();
  });

  it('renewAfter gives an old id a new one on its next request, keeps the data and the absolute deadline, and the old id lasts renewGrace', async () => {
    h = harness(name, { renewAfter: 60, renewGrace: 5, absoluteLifetime: 200, maxLifetime: 3600 });
    const first = cookiePair(await request(h.app).post('/login'));
    h.clock.advance(30);
    expect(setCookie(await request(h.app).get('/me').set('Cookie', first))).toBeUndefined(); // young: no renewal

    h.clock.advance(31);
    const renewing = await request(h.app).get('/me').set('Cookie', first);
    expect(renewing.body.user).toBe('ann');
    const second = cookiePair(renewing);
    expect(second).not.toBe(first);
    expect(cookiePair(await request(h.app).get('/me').set('Cookie', first))).toBe(second); // within renewGrace
    h.clock.advance(6);
    expect((await request(h.app).get('/me').set('Cookie', first)).body.user).toBeNull();
    expect(setCookie(await request(h.app).get('/me').set('Cookie', second))).toBeUndefined(); // the new id is young again

    // Renewal is not a new login: absoluteLifetime still counts from the first one.
    let current = second;
    for (const step of [60, 60]) {
      h.clock.advance(step);
      const response = await request(h.app).get('/me').set('Cookie', current);
      expect(response.body.user).toBe('ann');
      current = setCookie(response) ? cookiePair(response) : current;
    }
    h.clock.advance(200 - 67 - 120 + 1); // just past 200 s after login
    expect((await request(h.app).get('/me').set('Cookie', current)).body.user).toBeNull();
  });

  it('parallel requests that all find the id due for renewal make one new id', async () => {
    h = harness(name, { renewAfter: 60 });
    const old = cookiePair(await request(h.app).post('/login'));
    h.clock.advance(61);
    const responses = await Promise.all(Array.from({ length: 8 }, () => started(request(h.app).get('/me').set('Cookie', old))));
    expect(responses.map((response) => response.body.user)).toEqual(Array(8).fill('ann'));
    const sent = new Set(responses.map((response) => setCookie(response)?.split(';')[0]).filter((pair) => pair !== undefined));
    expect(sent.size).toBe(1);
    const [fresh] = sent;
    expect(fresh).not.toBe(old);
    expect((await request(h.app).get('/me').set('Cookie', fresh!)).body.user).toBe('ann');
    await expect(h.middleware.manager.count()).resolves.toBeGreaterThanOrEqual(1);
    let live = 0;
    for await (const info of h.middleware.manager.sessions()) if (info.data.user === 'ann') live++;
    expect(live).toBe(1);
  });
});

describe('renewal options', () => {
  it.each([
    [{ renewAfter: 0 }, 'renewAfter'],
    [{ renewAfter: 'soon' }, 'renewAfter'],
    [{ renewGrace: -1 }, 'renewGrace'],
    [{ renewGrace: 301 }, 'renewGrace'],
  ])('%j throws naming the option', (options, option) => {
    expect(() => sessions(options as SessionOptions)).toThrow(OptionError);
    expect(() => sessions(options as SessionOptions)).toThrow(option);
  });

  it('regenerate({ graceSeconds }) refuses a negative or too long window and changes nothing', async () => {
    const app = express();
    const middleware = sessions({ onError: () => undefined });
    app.use(middleware);
    app.post('/login', (req, res) => {
      req.session.set('user', 'ann');
      res.json({ ok: true });
    });
    app.post('/bad', async (req, res) => {
      const errors = [];
      for (const graceSeconds of [-1, 301, Number.NaN]) {
        errors.push(await req.session.regenerate({ graceSeconds }).then(() => 'resolved', (err: Error) => err.name));
      }
      res.json({ errors, same: req.session.isNew });
    });
    try {
      const old = cookiePair(await request(app).post('/login'));
      const response = await request(app).post('/bad').set('Cookie', old);
      expect(response.body).toEqual({ errors: ['TypeError', 'TypeError', 'TypeError'], same: false });
      expect(setCookie(response)).toBeUndefined();
    } finally {
      await middleware.manager.close();
    }
  });
});
