// Remember-me: req.session.setLifetime(seconds) and req.session.expiresAt, on
// an in-process provider and two persistent ones (the lifetime is stored with
// the session, so a new process honours it too).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import request from 'supertest';
import { sessions, type SessionMiddleware } from '../lib/index';
import type { SessionOptions } from '../lib/options';
import { cookiePair, FakeClock, setCookie } from './support/http';
import { skipReason } from './support/services';

const DAY = 86_400;
const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function store(name: string): Pick<SessionOptions, 'provider' | 'providerOptions'> {
  if (name === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'sm-lifetime-'));
    dirs.push(dir);
    return { provider: 'sqlite', providerOptions: { path: join(dir, 'sessions.db') } };
  }
  if (name === 'redis') return { provider: 'redis', providerOptions: { url: process.env.REDIS_URL, prefix: `lifetime:${process.pid}:${Date.now()}:` } };
  return { provider: 'memory' };
}

function app(options: SessionOptions): { app: express.Express; middleware: SessionMiddleware } {
  const server = express();
  const middleware = sessions({ onError: () => undefined, maxLifetime: 3600, ...options });
  server.use(middleware);
  server.post('/login', async (req, res) => {
    await req.session.regenerate();
    req.session.set('user', 'ann');
    if (req.query.remember) req.session.setLifetime(30 * DAY);
    res.json({ expiresAt: req.session.expiresAt.getTime() });
  });
  server.post('/forget', (req, res) => {
    req.session.setLifetime(null);
    res.json({ expiresAt: req.session.expiresAt.getTime() });
  });
  server.get('/me', (req, res) => res.json({ user: req.session.get('user') ?? null, keys: [...req.session.keys()], expiresAt: req.session.expiresAt.getTime() }));
  return { app: server, middleware };
}

const maxAge = (line: string | undefined): number => Number(/Max-Age=(\d+)/.exec(line ?? '')?.[1]);

describe.each(['memory', 'sqlite', 'redis'])('setLifetime on %s', (name) => {
  const skip = name === 'redis' ? skipReason('redis') : undefined;
  const maybe = skip ? it.skip : it;

  maybe('a remembered session lives 30 days: in the store, the cookie and expiresAt; null restores the default', async () => {
    // Redis keeps its own TTL by the real clock, so the persistent stores run on real time here.
    const clock = name === 'memory' ? new FakeClock(Date.now()) : undefined;
    const { app: server, middleware } = app({ ...store(name), ...(clock && { clock: clock.now }) });
    try {
      const login = await request(server).post('/login?remember=1');
      const now = Date.now();
      expect(login.body.expiresAt).toBeGreaterThan(now + 29 * DAY * 1000);
      expect(maxAge(setCookie(login))).toBeGreaterThan(29 * DAY);
      const cookie = cookiePair(login);

      if (clock) clock.advance(2 * 3600); // past maxLifetime: still logged in
      const me = await request(server).get('/me').set('Cookie', cookie);
      expect(me.body.user).toBe('ann');
      expect(me.body.keys).toEqual(['user']); // the stored lifetime is not a session key

      // A fresh manager over the same store (another process) honours it.
      let second: SessionMiddleware | undefined;
      if (name !== 'memory') {
        second = app({ ...store(name), providerOptions: middleware.manager.options.providerOptions }).middleware;
        const other = express().use(second).get('/me', (req, res) => res.json({ expiresAt: req.session.expiresAt.getTime() }));
        expect((await request(other).get('/me').set('Cookie', cookie)).body.expiresAt).toBeGreaterThan(now + 29 * DAY * 1000);
        await second.manager.close();
      }

      const forget = await request(server).post('/forget').set('Cookie', cookie);
      expect(forget.body.expiresAt).toBeLessThanOrEqual((clock?.now() ?? Date.now()) + 3600 * 1000);
      expect(maxAge(setCookie(forget))).toBeLessThanOrEqual(3600);
    } finally {
      await middleware.manager.close();
    }
  });

  maybe('absoluteLifetime still caps a remembered session', async () => {
    const { app: server, middleware } = app({ ...store(name), absoluteLifetime: 7200 });
    try {
      const login = await request(server).post('/login?remember=1');
      expect(login.body.expiresAt).toBeLessThanOrEqual(Date.now() + 7200 * 1000);
      expect(maxAge(setCookie(login))).toBeLessThanOrEqual(7200);
    } finally {
      await middleware.manager.close();
    }
  });
});

it('setLifetime refuses what is not a positive number of seconds or null', async () => {
  const server = express();
  const middleware = sessions({ onError: () => undefined });
  server.use(middleware);
  server.get('/', (req, res) => {
    const errors = [0, -1, NaN, Infinity, '60' as never, undefined as never].map((value) => {
      try {
        req.session.setLifetime(value);
        return 'accepted';
      } catch (err) {
        return (err as Error).name;
      }
    });
    res.json(errors);
  });
  expect((await request(server).get('/')).body).toEqual(Array(6).fill('TypeError'));
  await middleware.manager.close();
});

it('keys that start with NUL are the library\'s own: set() and delete() refuse them', async () => {
  const server = express();
  const middleware = sessions({ onError: () => undefined });
  server.use(middleware);
  server.get('/', (req, res) => {
    const attempts = [() => req.session.set('\u0000lifetime', '1'), () => req.session.delete('\u0000user')].map((attempt) => {
      try {
        attempt();
        return 'accepted';
      } catch (err) {
        return (err as Error).name;
      }
    });
    res.json(attempts);
  });
  expect((await request(server).get('/')).body).toEqual(['TypeError', 'TypeError']);
  await middleware.manager.close();
});
