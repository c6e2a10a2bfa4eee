/**
 * The demo app in a real Chromium (playwright-core, the system's
 * /usr/bin/chromium): login, counter, logout, "Your sessions" across two
 * browsers, URL rewriting without cookies, and idle expiry in real time.
 * Each scenario runs on its own server (127.0.0.1, a fresh port) in fresh
 * browser contexts, and saves a screenshot of its final page to
 * test-results/<scenario>.png.
 *
 * Without Chromium the suite is skipped with a printed reason, unless CI is
 * set: then it fails.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Cookie, type Page } from 'playwright-core';
import { DEMO_COOKIE_NAME, type DemoOptions } from '../../demo-app/app';
import { startDemo, type RunningDemo } from '../support/demo-server';

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--no-first-run',
];
const SCREENSHOTS = join(__dirname, '..', '..', 'test-results');
/** Longest any single browser step (click, load, read) may take. */
const STEP_MS = 5_000;
const NAVIGATION_MS = 10_000;

const missing = existsSync(CHROMIUM_PATH) ? undefined : `${CHROMIUM_PATH} is not installed (set CHROMIUM_PATH to use another)`;
const onCi = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false' && process.env.CI !== '0';

if (missing !== undefined) {
  if (onCi) {
    test('Chromium is available (required when CI is set)', () => {
      throw new Error(`CI is set but ${missing}`);
    });
  } else {
    console.warn(`Skipping the browser tests: ${missing}.`);
  }
}

(missing === undefined ? describe : describe.skip)('demo app in Chromium', () => {
  let browser: Browser;
  const servers: RunningDemo[] = [];
  const contexts: BrowserContext[] = [];

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
  }, 40_000);

  afterAll(async () => {
    await browser?.close();
  });

  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  async function demo(options?: DemoOptions): Promise<string> {
    const server = await startDemo(options);
    servers.push(server);
    return server.url;
  }

  async function newPage(userAgent?: string): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1024, height: 720 }, userAgent });
    context.setDefaultTimeout(STEP_MS);
    context.setDefaultNavigationTimeout(NAVIGATION_MS);
    contexts.push(context);
    return { context, page: await context.newPage() };
  }

  async function screenshot(page: Page, name: string): Promise<void> {
    await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true, timeout: STEP_MS });
  }

  /** Runs `action` (a click, a submit) and waits until the page it leads to has loaded. */
  async function follow(page: Page, action: () => Promise<unknown>): Promise<void> {
    await Promise.all([page.waitForEvent('load', { timeout: NAVIGATION_MS }), action()]);
  }

  const who = async (page: Page): Promise<string> => ((await page.getByTestId('who').textContent()) ?? '').replace(/\s+/g, ' ').trim();
  const count = async (page: Page): Promise<number> => Number(await page.getByTestId('count').textContent());
  const online = async (page: Page): Promise<string> => ((await page.getByTestId('online').textContent()) ?? '').trim();

  async function logIn(page: Page, username: string): Promise<void> {
    await follow(page, () => page.getByRole('navigation').getByRole('link', { name: 'Log in' }).click());
    await page.getByLabel('Username').fill(username);
    await follow(page, () => page.getByRole('button', { name: 'Log in' }).click());
  }

  const sessionCookies = (cookies: Cookie[]): Cookie[] => cookies.filter((cookie) => cookie.name === DEMO_COOKIE_NAME);

  test('login: the form logs in, a reload keeps it, and scripts cannot read the cookie', async () => {
    const url = await demo();
    const { context, page } = await newPage();
    await page.goto(`${url}/`);
    expect(await who(page)).toBe('Not logged in');

    await logIn(page, 'Alice');
    expect(new URL(page.url()).pathname).toBe('/');
    expect(await page.getByTestId('greeting').textContent()).toBe('Hello, Alice!');
    expect(await who(page)).toContain('Logged in as Alice');

    await page.reload();
    expect(await page.getByTestId('greeting').textContent()).toBe('Hello, Alice!');

    const [cookie] = sessionCookies(await context.cookies());
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', secure: false, path: '/' });
    expect(cookie.expires).toBeGreaterThan(Date.now() / 1000 + 3000); // persistent, maxLifetime 3600 s
    const visibleToScripts = await page.evaluate<string>('document.cookie');
    expect(visibleToScripts).not.toContain(DEMO_COOKIE_NAME);
    await screenshot(page, 'login');
  });

  test('counter: 1, 2, 3 across reloads; a second visitor starts at 1 and makes 2 online', async () => {
    const url = await demo();
    const first = (await newPage()).page;
    await first.goto(`${url}/count`);
    expect(await count(first)).toBe(1);
    await first.reload();
    expect(await count(first)).toBe(2);
    await first.reload();
    expect(await count(first)).toBe(3);
    expect(await online(first)).toBe('Users online: 1');

    const second = (await newPage()).page;
    await second.goto(`${url}/count`);
    expect(await count(second)).toBe(1);
    expect(await online(second)).toBe('Users online: 2');

    await first.reload();
    expect(await count(first)).toBe(4);
    expect(await online(first)).toBe('Users online: 2');
    await screenshot(second, 'counter');
  });

  test('logout: the greeting goes, the count restarts, and the old cookie is worthless', async () => {
    const url = await demo();
    const { context, page } = await newPage();
    await page.goto(`${url}/`);
    await logIn(page, 'Bob');
    await follow(page, () => page.getByRole('navigation').getByRole('link', { name: 'Counter' }).click());
    await page.reload();
    expect(await count(page)).toBe(2);
    const loggedIn = await context.cookies();
    expect(sessionCookies(loggedIn)).toHaveLength(1);

    await follow(page, () => page.getByRole('button', { name: 'Log out' }).click());
    expect(new URL(page.url()).pathname).toBe('/');
    expect(await who(page)).toBe('Not logged in');
    expect(await page.getByTestId('greeting').count()).toBe(0);
    expect(sessionCookies(await context.cookies())).toHaveLength(0);

    await page.goto(`${url}/count`);
    expect(await count(page)).toBe(1);

    // Put the pre-logout cookie back, as a thief who copied it would.
    await context.clearCookies();
    await context.addCookies(sessionCookies(loggedIn));
    await page.goto(`${url}/`);
    expect(await who(page)).toBe('Not logged in');
    await screenshot(page, 'logout');
  });

  test('your sessions: two browsers of one user; "log out all other sessions" in one logs the other out', async () => {
    const url = await demo();
    const a = await newPage(); // headless Chromium's own User-Agent
    const b = await newPage('Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0');
    for (const { page } of [a, b]) {
      await page.goto(`${url}/`);
      await logIn(page, 'Dana');
      expect(await who(page)).toContain('Logged in as Dana');
    }

    await follow(a.page, () => a.page.getByRole('navigation').getByRole('link', { name: 'Your sessions' }).click());
    expect(new URL(a.page.url()).pathname).toBe('/sessions');
    const rows = a.page.getByTestId('session');
    expect(await rows.count()).toBe(2);
    expect(await rows.nth(0).getByTestId('this-device').textContent()).toBe('this device');
    expect(await rows.nth(0).textContent()).toContain('Chrome on Linux');
    expect(await rows.nth(1).getByTestId('this-device').count()).toBe(0);
    expect(await rows.nth(1).textContent()).toContain('Firefox on Windows');
    expect(await a.page.getByTestId('this-device').count()).toBe(1);
    expect(await online(a.page)).toBe('Users online: 2');
    await screenshot(a.page, 'sessions-two');

    await follow(a.page, () => a.page.getByRole('button', { name: 'Log out all other sessions' }).click());
    expect(new URL(a.page.url()).pathname).toBe('/sessions');
    expect(await a.page.getByTestId('ended').textContent()).toBe('1 session was logged out.');
    expect(await rows.count()).toBe(1);
    expect(await a.page.getByTestId('this-device').count()).toBe(1);
    expect(await a.page.getByRole('button', { name: 'Log out all other sessions' }).count()).toBe(0);
    expect(await online(a.page)).toBe('Users online: 1');

    await b.page.reload();
    expect(await who(b.page)).toBe('Not logged in');
    await b.page.goto(`${url}/sessions`);
    expect(await b.page.getByRole('heading').textContent()).toBe('Please log in');

    await a.page.reload();
    expect(await who(a.page)).toContain('Logged in as Dana');
    await screenshot(a.page, 'sessions');
  });

  test('URL rewriting: with the id only in links and forms, a visitor without cookies keeps the session', async () => {
    const url = await demo({ session: { transports: ['query'] } });
    const { context, page } = await newPage();
    const cookieHeaders: Promise<string | undefined>[] = [];
    page.on('request', (request) => cookieHeaders.push(request.allHeaders().then((headers) => headers.cookie)));
    const sid = (): string | null => new URL(page.url()).searchParams.get('sid');

    await page.goto(`${url}/`);
    await follow(page, () => page.getByRole('navigation').getByRole('link', { name: 'Counter' }).click());
    expect(await count(page)).toBe(1);
    await follow(page, () => page.getByRole('link', { name: 'Count again' }).click());
    expect(await count(page)).toBe(2);
    const before = sid();
    expect(before).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // The login form posts to a URL that carries the id: the count survives the login.
    await logIn(page, 'Carol');
    const after = sid();
    expect(after).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(after).not.toBe(before);
    expect(await who(page)).toContain('Logged in as Carol');
    await follow(page, () => page.getByRole('link', { name: 'Open the counter' }).click());
    expect(await count(page)).toBe(3);
    expect(sid()).toBe(after);

    // So does the logout form.
    await follow(page, () => page.getByRole('button', { name: 'Log out' }).click());
    expect(await who(page)).toBe('Not logged in');
    await page.goto(`${url}/?sid=${after}`);
    expect(await who(page)).toBe('Not logged in');

    await logIn(page, 'Carol');
    await follow(page, () => page.getByRole('navigation').getByRole('link', { name: 'Counter' }).click());
    expect(await count(page)).toBe(1);
    expect(await who(page)).toContain('Logged in as Carol');

    expect(await context.cookies()).toEqual([]);
    const sent = await Promise.all(cookieHeaders);
    expect(sent.length).toBeGreaterThan(8);
    expect(sent.filter((header) => header !== undefined)).toEqual([]);
    await screenshot(page, 'url-rewrite');
  });

  test('expiry: with maxLifetime 2 s an idle visitor is logged out, one active every 0.5 s is not', async () => {
    const url = await demo({ session: { maxLifetime: 2 } });
    const idle = await newPage();
    const active = await newPage();
    await idle.page.goto(`${url}/`);
    await logIn(idle.page, 'Idle Ivy');
    await active.page.goto(`${url}/`);
    await logIn(active.page, 'Active Alex');
    const idleCookies = sessionCookies(await idle.context.cookies());
    expect(idleCookies).toHaveLength(1);

    const stayIdle = async (): Promise<void> => {
      await idle.page.waitForTimeout(2_600);
      await idle.page.reload();
      expect(await who(idle.page)).toBe('Not logged in');
      // The server enforces the expiry too: the same cookie, kept past its Max-Age, is refused.
      await idle.context.addCookies(idleCookies.map((cookie) => ({ ...cookie, expires: Date.now() / 1000 + 3600 })));
      await idle.page.reload();
      expect(await who(idle.page)).toBe('Not logged in');
    };
    const keepBusy = async (): Promise<void> => {
      for (let i = 0; i < 7; i++) {
        await active.page.waitForTimeout(500);
        await active.page.reload();
        expect(await who(active.page)).toContain('Logged in as Active Alex');
      }
    };
    await Promise.all([stayIdle(), keepBusy()]);

    expect(await online(active.page)).toBe('Users online: 1');
    await screenshot(active.page, 'expiry-active');
    await screenshot(idle.page, 'expiry');
  });
});
