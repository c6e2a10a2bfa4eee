// newSessionLifetime: what one-shot visitors (a flood of anonymous writes)
// leave in a persistent store is bounded by their rate × newSessionLifetime,
// while a visitor who comes back gets the full maxLifetime.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import request from 'supertest';
import { sessions } from '../lib/index';
import type { SessionOptions } from '../lib/options';
import { cookiePair, FakeClock } from './support/http';

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function store(name: string): Pick<SessionOptions, 'provider' | 'providerOptions'> {
  if (name === 'memory') return { provider: 'memory' };
  const dir = mkdtempSync(join(tmpdir(), 'sm-bound-'));
  dirs.push(dir);
  return name === 'sqlite' ? { provider: 'sqlite', providerOptions: { path: join(dir, 's.db') } } : { provider: 'file', providerOptions: { dir } };
}

describe.each(['memory', 'sqlite', 'file'])('newSessionLifetime on %s', (name) => {
  it('lets one-shot sessions expire soon and gives a returning visitor the full lifetime', async () => {
    const clock = new FakeClock(Date.now());
    const app = express();
    const middleware = sessions({ ...store(name), clock: clock.now, maxLifetime: 3600, newSessionLifetime: 60, onError: () => undefined });
    app.use(middleware);
    app.get('/cart/:item', (req, res) => {
      req.session.set('cart', req.params.item);
      res.json({ expiresIn: Math.round((req.session.expiresAt.getTime() - clock.now()) / 1000) });
    });
    app.get('/cart', (req, res) => res.json({ cart: req.session.get('cart') ?? null }));
    try {
      const flood = [];
      for (let i = 0; i < 40; i++) flood.push(await request(app).get(`/cart/${i}`));
      expect(flood[0].body.expiresIn).toBe(60);
      expect(flood[0].headers['set-cookie'][0]).toMatch(/Max-Age=60;/);

      const returning = cookiePair(await request(app).get('/cart/kept'));
      clock.advance(30);
      const back = await request(app).get('/cart').set('Cookie', returning);
      expect(back.body.cart).toBe('kept');
      expect(back.headers['set-cookie'][0]).toMatch(/Max-Age=3600;/); // first reuse: the full lifetime

      clock.advance(31);
      await expect(middleware.manager.gc()).resolves.toBe(40); // every one-shot session
      await expect(middleware.manager.count()).resolves.toBe(1); // only the returning visitor is left
      clock.advance(3000);
      expect((await request(app).get('/cart').set('Cookie', returning)).body.cart).toBe('kept');
    } finally {
      await middleware.manager.close();
    }
  });
});

it('refuses a newSessionLifetime that is not a positive number of seconds', () => {
  expect(() => sessions({ newSessionLifetime: 0 })).toThrow(/option newSessionLifetime is invalid/);
});
