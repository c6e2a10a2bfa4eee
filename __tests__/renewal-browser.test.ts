/**
 * Renewal with a grace window in a real Chromium: a page fires 10 parallel
 * fetches while the id is renewed (by one of them, or by `renewAfter`); every
 * one sees the logged-in session, every write lands, and the browser ends
 * with the new id. The routes answer after a random few milliseconds so the
 * requests really overlap the renewal: some load the session before it, some
 * write after it.
 *
 * Without Chromium the suite is skipped with a printed reason, unless CI is
 * set: then it fails (the demo suite reports that).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { sessions, type SessionMiddleware } from '../lib/index';
import type { SessionOptions } from '../lib/options';
import { FakeClock, idOf, listen } from './support/http';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const PARALLEL = 10;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

(existsSync(CHROMIUM_PATH) ? describe : describe.skip)('renewal with a grace window in Chromium', () => {
  let browser: Browser;
  let context: BrowserContext | undefined;
  let server: Server | undefined;
  let middleware: SessionMiddleware | undefined;
  const dirs: string[] = [];

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
  }, 40_000);
  afterAll(async () => {
    await browser?.close();
    dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true }));
  });
  afterEach(async () => {
    await context?.close();
    server?.close();
    await middleware?.manager.close();
  });

  /** A small SPA backend on a real SQLite file; every API route answers after 0–30 ms. */
  async function start(options: SessionOptions): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'sm-renewal-browser-'));
    dirs.push(dir);
    const app = express();
    middleware = sessions({ provider: 'sqlite', providerOptions: { path: join(dir, 's.db') }, onError: () => undefined, ...options });
    app.use(middleware);
    app.get('/', (_req, res) => res.type('html').send('<!doctype html><title>spa</title><p>spa</p>'));
    app.post('/api/login', async (req, res) => {
      await req.session.regenerate();
      req.session.set('user', 'ann');
      res.json({ ok: true });
    });
    app.post('/api/renew', async (req, res) => {
      await pause(Math.random() * 10);
      await req.session.regenerate({ graceSeconds: 10 });
      res.json({ user: req.session.get('user') ?? null, id: req.sessionID });
    });
    app.post('/api/note/:n', async (req, res) => {
      await pause(Math.random() * 30);
      req.session.set(`note${req.params.n}`, true);
      res.json({ user: req.session.get('user') ?? null });
    });
    app.get('/api/me', (req, res) => res.json({ user: req.session.get('user') ?? null, keys: [...req.session.keys()].sort(), id: req.sessionID }));
    const listening = await listen(app);
    server = listening.server;
    context = await browser.newContext();
    context.setDefaultTimeout(10_000);
    return listening.url;
  }

  async function sessionId(): Promise<string> {
    const cookies = (await context!.cookies()).filter((cookie) => cookie.name === 'sid');
    expect(cookies).toHaveLength(1);
    return idOf(`sid=${cookies[0].value}`);
  }

  /** In the page: fires `paths` at once (POST) and resolves their JSON bodies. */
  const burst = (paths: string[]): string =>
    `Promise.all(${JSON.stringify(paths)}.map((path) => fetch(path, { method: 'POST' }).then((response) => response.json())))`;

  test('one of 10 parallel fetches renews the id: all 10 see the session, every write lands, the browser ends with the new id', async () => {
    const url = await start({});
    const page = await context!.newPage();
    await page.goto(url);
    await page.evaluate(`fetch('/api/login', { method: 'POST' })`);
    const before = await sessionId();

    const paths = Array.from({ length: PARALLEL - 1 }, (_, n) => `/api/note/${n}`);
    paths.splice(4, 0, '/api/renew');
    const bodies = (await page.evaluate(burst(paths))) as Array<{ user: string | null; id?: string }>;
    expect(bodies.map((body) => body.user)).toEqual(Array(PARALLEL).fill('ann'));

    const renewedTo = bodies[4].id!;
    expect(renewedTo).not.toBe(before);
    expect(await sessionId()).toBe(renewedTo);
    const me = (await page.evaluate(`fetch('/api/me').then((response) => response.json())`)) as { user: string; keys: string[] };
    expect(me.user).toBe('ann');
    expect(me.keys).toEqual([...Array.from({ length: PARALLEL - 1 }, (_, n) => `note${n}`), 'user'].sort());
  });

  test('renewAfter: 10 parallel fetches of an id due for renewal make one new id; all see the session and every write lands', async () => {
    const clock = new FakeClock(Date.now());
    const url = await start({ renewAfter: 60, clock: clock.now });
    const page = await context!.newPage();
    await page.goto(url);
    await page.evaluate(`fetch('/api/login', { method: 'POST' })`);
    const before = await sessionId();
    clock.advance(61);

    const bodies = (await page.evaluate(burst(Array.from({ length: PARALLEL }, (_, n) => `/api/note/${n}`)))) as Array<{ user: string | null }>;
    expect(bodies.map((body) => body.user)).toEqual(Array(PARALLEL).fill('ann'));

    const after = await sessionId();
    expect(after).not.toBe(before);
    const me = (await page.evaluate(`fetch('/api/me').then((response) => response.json())`)) as { user: string; keys: string[]; id: string };
    expect(me).toEqual({ user: 'ann', id: after, keys: [...Array.from({ length: PARALLEL }, (_, n) => `note${n}`), 'user'].sort() });
    let live = 0;
    for await (const info of middleware!.manager.sessions()) if (info.data.user === 'ann') live++;
    expect(live).toBe(1);
  });
});
