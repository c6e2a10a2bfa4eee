// Sessions by user over HTTP: bindUser at login, the binding survives
// regenerate, "log out everywhere" and "log out other devices", and the
// concurrent-session cap, on the embedded default and on a persistent store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import request from 'supertest';
import { sessions, type CompatSession, type SessionMiddleware } from '../lib/index';
import type { SessionOptions } from '../lib/options';
import { cookiePair, FakeClock } from './support/http';

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function store(name: string): Pick<SessionOptions, 'provider' | 'providerOptions'> {
  if (name === 'memory') return { provider: 'memory' };
  const dir = mkdtempSync(join(tmpdir(), 'sm-by-user-'));
  dirs.push(dir);
  return { provider: 'sqlite', providerOptions: { path: join(dir, 's.db') } };
}

function app(options: SessionOptions): { app: express.Express; middleware: SessionMiddleware } {
  const server = express();
  const middleware = sessions({ onError: () => undefined, ...options });
  server.use(middleware);
  server.post('/login/:user', async (req, res) => {
    req.session.set('cart', ['book']);
    await req.session.regenerate();
    req.session.bindUser(req.params.user);
    res.json({ user: req.session.userId });
  });
  server.post('/renew', async (req, res) => {
    await req.session.regenerate();
    res.json({ user: req.session.userId ?? null });
  });
  server.get('/me', async (req, res) => {
    const userId = req.session.userId;
    res.json({ user: userId ?? null, handle: req.session.handle ?? null, devices: userId ? (await middleware.manager.listByUser(userId)).length : 0 });
  });
  server.post('/logout-others', async (req, res) => {
    res.json({ ended: await middleware.manager.destroyByUser(req.session.userId!, { except: req.sessionID }) });
  });
  return { app: server, middleware };
}

describe.each(['memory', 'sqlite'])('sessions by user on %s', (name) => {
  it('binds at login, survives regenerate, lists and ends a user\'s sessions', async () => {
    const { app: server, middleware } = app(store(name));
    try {
      const phone = cookiePair(await request(server).post('/login/ann'));
      const laptop = cookiePair(await request(server).post('/login/ann'));
      const bob = cookiePair(await request(server).post('/login/bob'));
      expect((await request(server).get('/me').set('Cookie', laptop)).body).toMatchObject({ user: 'ann', devices: 2 });

      const renewed = await request(server).post('/renew').set('Cookie', phone);
      expect(renewed.body).toEqual({ user: 'ann' }); // the binding moved with the data
      const phoneNow = cookiePair(renewed);
      const listed = await middleware.manager.listByUser('ann');
      expect(listed).toHaveLength(2);
      expect(listed.every((info) => info.userId === 'ann' && info.data.cart !== undefined)).toBe(true);
      expect(JSON.stringify(listed)).not.toContain(phoneNow.split('=')[1]); // handles only, no raw ids

      // "Log out my other devices" from the laptop.
      expect((await request(server).post('/logout-others').set('Cookie', laptop)).body).toEqual({ ended: 1 });
      expect((await request(server).get('/me').set('Cookie', phoneNow)).body.user).toBeNull();
      expect((await request(server).get('/me').set('Cookie', laptop)).body).toMatchObject({ user: 'ann', devices: 1 });

      // "Log out everywhere".
      await expect(middleware.manager.destroyByUser('ann')).resolves.toBe(1);
      expect((await request(server).get('/me').set('Cookie', laptop)).body.user).toBeNull();
      expect((await request(server).get('/me').set('Cookie', bob)).body.user).toBe('bob');
    } finally {
      await middleware.manager.close();
    }
  });

  it('maxSessionsPerUser ends the oldest sessions beyond the cap at bindUser', async () => {
    const clock = new FakeClock(Date.now());
    const { app: server, middleware } = app({ ...store(name), maxSessionsPerUser: 2, clock: clock.now });
    try {
      const cookies = [];
      for (let i = 0; i < 3; i++) {
        cookies.push(cookiePair(await request(server).post('/login/ann')));
        clock.advance(1);
      }
      expect((await request(server).get('/me').set('Cookie', cookies[0])).body.user).toBeNull(); // the oldest ended
      expect((await request(server).get('/me').set('Cookie', cookies[1])).body.user).toBe('ann');
      expect((await request(server).get('/me').set('Cookie', cookies[2])).body).toMatchObject({ user: 'ann', devices: 2 });
    } finally {
      await middleware.manager.close();
    }
  });
});

it('bindUser refuses what is not a non-empty string', async () => {
  const server = express();
  const middleware = sessions({ onError: () => undefined, maxSessionsPerUser: 1 });
  server.use(middleware);
  server.get('/', (req, res) => {
    const outcomes = ['', 42 as never, undefined as never].map((value) => {
      try {
        req.session.bindUser(value);
        return 'accepted';
      } catch (err) {
        return (err as Error).name;
      }
    });
    res.json(outcomes);
  });
  expect((await request(server).get('/')).body).toEqual(['TypeError', 'TypeError', 'TypeError']);
  expect(() => sessions({ maxSessionsPerUser: 0 })).toThrow(/option maxSessionsPerUser is invalid/);
  await middleware.manager.close();
});

it('in compat mode, regenerate (as Passport logs out) leaves the new session bound to no one', async () => {
  const server = express();
  const middleware = sessions({ onError: () => undefined, compat: 'express-session' });
  server.use(middleware);
  server.post('/login', async (req, res) => {
    await req.session.regenerate();
    req.session.bindUser('ann');
    res.end();
  });
  server.post('/logout', (req, res) => {
    (req.session as unknown as CompatSession).regenerate((err?: unknown) => {
      if (err) throw err;
      res.json({ user: req.session.userId ?? null });
    });
  });
  try {
    const cookie = cookiePair(await request(server).post('/login'));
    expect((await request(server).post('/logout').set('Cookie', cookie)).body).toEqual({ user: null });
  } finally {
    await middleware.manager.close();
  }
});
