/**
 * The demo app's pages over HTTP (supertest against a real listener on
 * 127.0.0.1): login, counter, logout, "Your sessions" (sessions by user),
 * escaping, validation, the counter's replace-after-age rule on an injected
 * clock, URL-rewrite mode, the error pages, the environment configuration and
 * `npm run demo` itself (including its start-up check of the store).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import request, { type Response } from 'supertest';
import { MemoryProvider } from 'session-manager';
import { DEMO_COOKIE_NAME, MAX_USERNAME_LENGTH } from '../demo-app/app';
import { configFromEnv, storeSource } from '../demo-app/config';
import { deviceLabel } from '../demo-app/device';
import { CONTENT_SECURITY_POLICY } from '../demo-app/views';
import type { DemoOptions } from '../demo-app/app';
import { startDemo, type RunningDemo } from './support/demo-server';

const running: RunningDemo[] = [];

async function demo(options?: DemoOptions): Promise<RunningDemo> {
  const started = await startDemo(options);
  running.push(started);
  return started;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((each) => each.close()));
});

/** The session cookie a response sets: its value, '' when it clears the cookie, undefined when it does not touch it. */
function setSessionCookie(res: Response): string | undefined {
  const header = res.headers['set-cookie'] as unknown as string[] | undefined;
  const line = header?.find((cookie) => cookie.startsWith(`${DEMO_COOKIE_NAME}=`));
  if (line === undefined) return undefined;
  return /;\s*Max-Age=0/i.test(line) ? '' : line.split(';')[0].slice(DEMO_COOKIE_NAME.length + 1);
}

function shouldSetSessionCookie(res: Response): string {
  const value = setSessionCookie(res);
  expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
  return value!;
}

function shouldNotSetCookie(res: Response): void {
  expect(res.headers['set-cookie']).toBeUndefined();
}

function shouldBeGreeted(res: Response, username: string): void {
  expect(res.status).toBe(200);
  expect(res.text).toContain(`Logged in as <strong>${username}</strong>`);
}

function shouldNotBeLoggedIn(res: Response): void {
  expect(res.status).toBe(200);
  expect(res.text).toContain('Not logged in');
  expect(res.text).not.toContain('Logged in as');
}

function countOn(res: Response): number {
  const match = /data-testid="count">(\d+)</.exec(res.text);
  if (!match) throw new Error(`no count on the page (status ${res.status})`);
  return Number(match[1]);
}

function onlineOn(res: Response): string {
  const match = /Users online: <b>([^<]*)<\/b>/.exec(res.text);
  if (!match) throw new Error('no "Users online" on the page');
  return match[1];
}

/** A browser-like client of the cookie mode: keeps the session cookie between requests. */
class Visitor {
  cookie: string | undefined;
  constructor(readonly base: string, readonly userAgent?: string) {}

  async get(path: string): Promise<Response> {
    return this.#keep(await this.#withCookie(request(this.base).get(path)));
  }

  async post(path: string, form: Record<string, string> = {}): Promise<Response> {
    return this.#keep(await this.#withCookie(request(this.base).post(path).type('form').send(form)));
  }

  #withCookie(test: request.Test): request.Test {
    if (this.userAgent !== undefined) test.set('User-Agent', this.userAgent);
    return this.cookie === undefined ? test : test.set('Cookie', `${DEMO_COOKIE_NAME}=${this.cookie}`);
  }

  #keep(res: Response): Response {
    const value = setSessionCookie(res);
    if (value !== undefined) this.cookie = value === '' ? undefined : value;
    return res;
  }
}

describe('demo app, cookie mode', () => {
  test('an anonymous visit shows "Not logged in" and stores nothing', async () => {
    const { url, manager } = await demo();
    const res = await request(url).get('/');
    shouldNotBeLoggedIn(res);
    shouldNotSetCookie(res);
    expect(onlineOn(res)).toBe('0');
    expect(await manager.count()).toBe(0);
  });

  test('logging in replaces the session id, keeps the data, and greets the user', async () => {
    const { url } = await demo();
    const visitor = new Visitor(url);
    expect(countOn(await visitor.get('/count'))).toBe(1);
    const before = visitor.cookie!;

    const login = await visitor.post('/login', { username: 'alice' });
    expect(login.status).toBe(303);
    expect(login.headers.location).toBe('/');
    const after = shouldSetSessionCookie(login);
    expect(after).not.toBe(before);

    const home = await visitor.get('/');
    shouldBeGreeted(home, 'alice');
    expect(home.text).toContain('Hello, alice!');
    expect(countOn(await visitor.get('/count'))).toBe(2); // regenerate() kept the data

    // The pre-login id is dead: whoever held it is not logged in.
    const replayed = await request(url).get('/').set('Cookie', `${DEMO_COOKIE_NAME}=${before}`);
    shouldNotBeLoggedIn(replayed);
  });

  test('the counter counts per visitor, and "Users online" counts visitors', async () => {
    const { url } = await demo();
    const first = new Visitor(url);
    const second = new Visitor(url);
    expect(countOn(await first.get('/count'))).toBe(1);
    expect(countOn(await first.get('/count'))).toBe(2);
    const third = await first.get('/count');
    expect(countOn(third)).toBe(3);
    expect(onlineOn(third)).toBe('1');

    const other = await second.get('/count');
    expect(countOn(other)).toBe(1); // a first-time visitor is counted on the page that created the session
    expect(onlineOn(other)).toBe('2');
    expect(countOn(await first.get('/count'))).toBe(4);
  });

  test('logging out clears the cookie, forgets the user and the count, and kills the old id', async () => {
    const { url, manager } = await demo();
    const visitor = new Visitor(url);
    await visitor.post('/login', { username: 'bob' });
    await visitor.get('/count');
    const old = visitor.cookie!;

    const logout = await visitor.post('/logout');
    expect(logout.status).toBe(303);
    expect(logout.headers.location).toBe('/');
    expect(setSessionCookie(logout)).toBe('');
    expect(visitor.cookie).toBeUndefined();
    expect(await manager.count()).toBe(0);

    shouldNotBeLoggedIn(await visitor.get('/'));
    expect(countOn(await visitor.get('/count'))).toBe(1);
    shouldNotBeLoggedIn(await request(url).get('/').set('Cookie', `${DEMO_COOKIE_NAME}=${old}`));
  });

  test('a <script> username is shown as text, never as markup', async () => {
    const { url } = await demo();
    const visitor = new Visitor(url);
    const name = `<script>alert("x")</script>&'`;
    expect((await visitor.post('/login', { username: name })).status).toBe(303);
    const home = await visitor.get('/');
    const escaped = '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;';
    shouldBeGreeted(home, escaped);
    expect(home.text).toContain(`Hello, ${escaped}!`);
    expect(home.text).not.toMatch(/<script/i);
    // The demo ships no script, and its CSP would not run an injected one.
    expect(home.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(home.headers['content-security-policy']).not.toMatch(/script-src|unsafe-inline/);
  });

  test.each([
    ['empty', ''],
    ['blank', '   \t '],
    ['overlong', 'x'.repeat(MAX_USERNAME_LENGTH + 1)],
    ['a control character', 'ali\u0007ce'],
  ])('a %s username gets a 400 page and no session', async (_what, username) => {
    const { url, manager } = await demo();
    const res = await request(url).post('/login').type('form').send({ username });
    expect(res.status).toBe(400);
    expect(res.text).toContain('role="alert"');
    expect(res.text).toContain('<form method="post" action="/login">');
    shouldNotSetCookie(res);
    expect(await manager.count()).toBe(0);
  });

  test('a missing username field is a 400 too, and the rejected value comes back escaped', async () => {
    const { url } = await demo();
    expect((await request(url).post('/login').type('form').send({})).status).toBe(400);
    const long = `<b>${'y'.repeat(MAX_USERNAME_LENGTH)}</b>`;
    const res = await request(url).post('/login').type('form').send({ username: long });
    expect(res.status).toBe(400);
    expect(res.text).toContain(`value="&lt;b&gt;${'y'.repeat(MAX_USERNAME_LENGTH)}&lt;/b&gt;"`);
    expect(res.text).not.toContain('<b>yyy');
  });

  test(`a username of exactly ${MAX_USERNAME_LENGTH} characters is accepted (trimmed)`, async () => {
    const { url } = await demo();
    const visitor = new Visitor(url);
    const name = 'z'.repeat(MAX_USERNAME_LENGTH);
    expect((await visitor.post('/login', { username: `  ${name}  ` })).status).toBe(303);
    shouldBeGreeted(await visitor.get('/'), name);
  });

  test('pages are not cacheable and carry the security headers', async () => {
    const { url } = await demo();
    const res = await request(url).get('/login');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['x-powered-by']).toBeUndefined();
  });

  test('an unknown page is a 404 page', async () => {
    const { url } = await demo();
    const res = await request(url).get('/nowhere/%3Cb%3E');
    expect(res.status).toBe(404);
    expect(res.text).toContain('Page not found');
    expect(res.text).toContain('There is no page at /nowhere/%3Cb%3E.');
  });
});

const CHROME_ON_LINUX = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const FIREFOX_ON_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0';
const SAFARI_ON_IOS = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';

/** The rows of "Your sessions": device text and whether it is marked "this device". */
function sessionRows(res: Response): { device: string; current: boolean }[] {
  expect(res.status).toBe(200);
  return [...res.text.matchAll(/<tr[^>]*data-testid="session">\s*<td>([^<]*)(<span class="this-device")?/g)]
    .map((match) => ({ device: match[1], current: match[2] !== undefined }));
}

/** The handles named by the page's per-session "Log out" forms (every session but this one). */
function logoutHandles(res: Response): string[] {
  return [...res.text.matchAll(/action="\/sessions\/([^/"?]+)\/logout/g)].map((match) => match[1]);
}

describe('demo app, "Your sessions"', () => {
  /** Logs `username` in from a new visitor on `userAgent`. */
  async function loggedIn(url: string, username: string, userAgent?: string): Promise<Visitor> {
    const visitor = new Visitor(url, userAgent);
    expect((await visitor.post('/login', { username })).status).toBe(303);
    return visitor;
  }

  test('login binds the session to its user and records the device', async () => {
    const { url, manager } = await demo();
    await loggedIn(url, 'alice', CHROME_ON_LINUX);
    const [info] = await manager.listByUser('alice');
    expect(info).toMatchObject({ userId: 'alice', data: { username: 'alice', device: 'Chrome on Linux' } });
    expect(await manager.listByUser('bob')).toEqual([]);
  });

  test('two logins of one user: both listed, with devices, one marked "this device"; nav link, "Users online"', async () => {
    const { url } = await demo();
    const laptop = await loggedIn(url, 'alice', CHROME_ON_LINUX);
    const phone = await loggedIn(url, 'alice', SAFARI_ON_IOS);
    await loggedIn(url, 'mallory', FIREFOX_ON_WINDOWS); // someone else's session is never listed

    const home = await laptop.get('/');
    expect(home.text).toContain('<a href="/sessions">Your sessions</a>');
    const page = await laptop.get('/sessions');
    expect(page.text).toContain('<a href="/sessions" aria-current="page">Your sessions</a>');
    expect(onlineOn(page)).toBe('3');
    expect(sessionRows(page)).toEqual([
      { device: 'Chrome on Linux', current: true },
      { device: 'Safari on iOS', current: false },
    ]);
    expect(page.text.match(/this device/g)).toHaveLength(1);
    expect(logoutHandles(page)).toHaveLength(1);
    expect(page.text).toContain('<form method="post" action="/sessions/logout-others">');

    expect(sessionRows(await phone.get('/sessions'))).toEqual([
      { device: 'Safari on iOS', current: true },
      { device: 'Chrome on Linux', current: false },
    ]);
    // No other session: no "log out all other sessions" button.
    const alone = await (await loggedIn(url, 'carol')).get('/sessions');
    expect(sessionRows(alone)).toEqual([{ device: 'Unknown device', current: true }]);
    expect(alone.text).not.toContain('logout-others');
  });

  test('"log out all other sessions" ends the others: B is logged out, A stays in', async () => {
    const { url, manager } = await demo();
    const a = await loggedIn(url, 'alice', CHROME_ON_LINUX);
    const b = await loggedIn(url, 'alice', FIREFOX_ON_WINDOWS);
    const c = await loggedIn(url, 'alice', SAFARI_ON_IOS);
    const mallory = await loggedIn(url, 'mallory');

    const res = await a.post('/sessions/logout-others');
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/sessions?ended=2');
    const page = await a.get(res.headers.location);
    expect(page.text).toContain('2 sessions were logged out.');
    expect(sessionRows(page)).toEqual([{ device: 'Chrome on Linux', current: true }]);

    shouldBeGreeted(await a.get('/'), 'alice');
    shouldNotBeLoggedIn(await b.get('/'));
    shouldNotBeLoggedIn(await c.get('/'));
    shouldBeGreeted(await mallory.get('/'), 'mallory'); // another user's session is untouched
    expect(await manager.count()).toBe(2);
  });

  test('"Log out" on one other session ends just that one', async () => {
    const { url } = await demo();
    const a = await loggedIn(url, 'alice', CHROME_ON_LINUX);
    const b = await loggedIn(url, 'alice', FIREFOX_ON_WINDOWS);
    const [bHandle] = logoutHandles(await a.get('/sessions'));
    expect(bHandle).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // The handle is the store's name for the session, never the id the client holds.
    expect(bHandle).not.toBe(b.cookie);
    expect(logoutHandles(await b.get('/sessions'))).not.toContain(bHandle);

    const res = await a.post(`/sessions/${bHandle}/logout`);
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/sessions?ended=1');
    expect((await a.get(res.headers.location)).text).toContain('1 session was logged out.');
    shouldNotBeLoggedIn(await b.get('/'));
    shouldBeGreeted(await a.get('/'), 'alice');
    expect(sessionRows(await a.get('/sessions'))).toEqual([{ device: 'Chrome on Linux', current: true }]);

    // Again, now that it is gone: 404, nothing else changes.
    expect((await a.post(`/sessions/${bHandle}/logout`)).status).toBe(404);
    shouldBeGreeted(await a.get('/'), 'alice');
  });

  test("a user cannot end someone else's session with its handle: 404, and that session lives on", async () => {
    const { url, manager } = await demo();
    const a = await loggedIn(url, 'alice', CHROME_ON_LINUX);
    const victim = await loggedIn(url, 'bob', FIREFOX_ON_WINDOWS);
    const bystander = await loggedIn(url, 'bob', SAFARI_ON_IOS);
    const [victimHandle] = logoutHandles(await bystander.get('/sessions'));
    expect((await manager.listByUser('bob')).map((info) => info.handle)).toContain(victimHandle);

    const res = await a.post(`/sessions/${victimHandle}/logout`);
    expect(res.status).toBe(404);
    expect(res.text).toContain('No such session');
    shouldBeGreeted(await victim.get('/'), 'bob');
    expect(await manager.listByUser('bob')).toHaveLength(2);

    // Nor with the raw id (which manager.destroy() would also take), nor with anything else.
    for (const guess of [victim.cookie!, 'x'.repeat(43), '%3Cb%3E', 'logout-others']) {
      expect((await a.post(`/sessions/${guess}/logout`)).status).toBe(404);
    }
    shouldBeGreeted(await victim.get('/'), 'bob');
    shouldBeGreeted(await a.get('/'), 'alice');
    expect(await manager.count()).toBe(3);
  });

  test("posting this session's own handle is a plain logout", async () => {
    const { url } = await demo();
    const a = await loggedIn(url, 'alice');
    const b = await loggedIn(url, 'alice');
    const [aHandle] = logoutHandles(await b.get('/sessions'));
    const res = await a.post(`/sessions/${aHandle}/logout`);
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/');
    expect(setSessionCookie(res)).toBe('');
    shouldBeGreeted(await b.get('/'), 'alice');
  });

  test('without a login: 403 for the page and both actions, and nothing ends', async () => {
    const { url, manager } = await demo();
    const alice = await loggedIn(url, 'alice');
    const [handle] = (await manager.listByUser('alice')).map((info) => info.handle);
    const anonymous = new Visitor(url);
    await anonymous.get('/count'); // a session, but no login
    for (const res of [await anonymous.get('/sessions'), await anonymous.post('/sessions/logout-others'), await anonymous.post(`/sessions/${handle}/logout`)]) {
      expect(res.status).toBe(403);
      expect(res.text).toContain('Please log in');
      expect(res.text).not.toContain('Your sessions</a>');
    }
    shouldBeGreeted(await alice.get('/'), 'alice');
    expect(await manager.count()).toBe(2);
  });

  test('the actions are POST only: a GET (a link, an <img>) ends nothing', async () => {
    const { url } = await demo();
    const a = await loggedIn(url, 'alice');
    const b = await loggedIn(url, 'alice');
    const [bHandle] = logoutHandles(await a.get('/sessions'));
    expect((await a.get('/sessions/logout-others')).status).toBe(404);
    expect((await a.get(`/sessions/${bHandle}/logout`)).status).toBe(404);
    shouldBeGreeted(await b.get('/'), 'alice');
  });

  test('the user name is escaped on the page', async () => {
    const { url } = await demo();
    const name = '<img src=x onerror=alert(1)>';
    const page = await (await loggedIn(url, name)).get('/sessions');
    expect(page.status).toBe(200);
    expect(page.text).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(page.text).not.toContain('<img');
  });

  test('in URL-rewrite mode the page, its forms and redirects keep the id', async () => {
    const { url } = await demo({ session: { transports: ['query'] } });
    const sidOf = async (): Promise<string> => {
      const login = await request(url).post('/login').type('form').send({ username: 'dave' });
      return new URL(login.headers.location, 'http://x').searchParams.get('sid')!;
    };
    const a = await sidOf();
    const b = await sidOf();
    const page = await request(url).get(`/?sid=${a}`);
    expect(page.text).toContain(`<a href="/sessions?sid=${a}">Your sessions</a>`);
    const list = await request(url).get(`/sessions?sid=${a}`);
    expect(list.text).toContain(`action="/sessions/logout-others?sid=${a}"`);
    expect(logoutHandles(list)).toHaveLength(1);
    const res = await request(url).post(`/sessions/logout-others?sid=${a}`);
    expect(res.headers.location).toBe(`/sessions?ended=1&sid=${a}`);
    shouldNotBeLoggedIn(await request(url).get(`/?sid=${b}`));
    shouldBeGreeted(await request(url).get(`/?sid=${a}`), 'dave');
  });

  test.each([
    [CHROME_ON_LINUX, 'Chrome on Linux'],
    ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36', 'Chrome on Linux'],
    [FIREFOX_ON_WINDOWS, 'Firefox on Windows'],
    [SAFARI_ON_IOS, 'Safari on iOS'],
    ['Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15', 'Safari on macOS'],
    ['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0', 'Edge on Windows'],
    ['Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36', 'Chrome on Android'],
    ['Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36', 'Chrome on ChromeOS'],
    ['curl/8.5.0', 'curl'],
    ['<script>alert(1)</script>', 'Unknown device'],
    ['', 'Unknown device'],
    [undefined, 'Unknown device'],
  ])('device label of %j is %j', (userAgent, label) => {
    expect(deviceLabel(userAgent)).toBe(label);
  });
});

describe('demo app, when the counter session gets old', () => {
  /** A clock the test moves by hand; the sessions and the counter both read it. */
  function fakeClock(start = Date.UTC(2026, 0, 1, 12)): { now: () => number; advance: (seconds: number) => void } {
    let now = start;
    return { now: () => now, advance: (seconds) => (now += seconds * 1000) };
  }

  test('it is replaced once older than 360 s: new id, count back to 1, old id dead, login kept', async () => {
    const clock = fakeClock();
    const { url, manager } = await demo({ session: { clock: clock.now } });
    const visitor = new Visitor(url);
    await visitor.post('/login', { username: 'carol' });
    expect(countOn(await visitor.get('/count'))).toBe(1);
    const original = visitor.cookie!;

    clock.advance(200);
    expect(countOn(await visitor.get('/count'))).toBe(2);
    clock.advance(160); // exactly 360 s old: not yet "older than"
    const edge = await visitor.get('/count');
    expect(countOn(edge)).toBe(3);
    expect(visitor.cookie).toBe(original);

    clock.advance(1);
    const replaced = await visitor.get('/count');
    expect(countOn(replaced)).toBe(1);
    expect(replaced.text).toContain('older than 360 s');
    const renewed = shouldSetSessionCookie(replaced);
    expect(renewed).not.toBe(original);
    shouldBeGreeted(replaced, 'carol');
    expect(await manager.count()).toBe(1);

    expect(countOn(await visitor.get('/count'))).toBe(2);
    // The replaced id is dead: it neither greets nor continues the old count.
    const stale = await request(url).get('/count').set('Cookie', `${DEMO_COOKIE_NAME}=${original}`);
    expect(countOn(stale)).toBe(1);
    expect(stale.text).toContain('Not logged in');
  });

  test('the age is configurable (replaceAfter)', async () => {
    const clock = fakeClock();
    const { url } = await demo({ replaceAfter: 10, session: { clock: clock.now } });
    const visitor = new Visitor(url);
    expect(countOn(await visitor.get('/count'))).toBe(1);
    clock.advance(10);
    expect(countOn(await visitor.get('/count'))).toBe(2);
    clock.advance(1);
    expect(countOn(await visitor.get('/count'))).toBe(1);
  });

  test('an invalid replaceAfter is refused at creation', async () => {
    await expect(demo({ replaceAfter: 0 })).rejects.toThrow(/replaceAfter/);
  });
});

describe('demo app, URL-rewrite mode (transports: ["query"])', () => {
  const sidIn = (location: string): string | null => new URL(location, 'http://x').searchParams.get('sid');

  /** Every same-site link and form action on the page. */
  function localUrls(text: string): string[] {
    return [...text.matchAll(/(?:href|action)="(\/[^"]*)"/g)].map((match) => match[1].replace(/&amp;/g, '&'));
  }

  test('an anonymous page has plain links: no id is invented before there is a session', async () => {
    const { url } = await demo({ session: { transports: ['query'] } });
    const res = await request(url).get('/');
    shouldNotBeLoggedIn(res);
    expect(localUrls(res.text).length).toBeGreaterThan(2);
    for (const link of localUrls(res.text)) expect(sidIn(link)).toBeNull();
  });

  test('login, counter and logout work with the id in the URL only, without any cookie', async () => {
    const { url } = await demo({ session: { transports: ['query'] } });
    const login = await request(url).post('/login').type('form').send({ username: 'dave' });
    expect(login.status).toBe(303);
    shouldNotSetCookie(login);
    const sid = sidIn(login.headers.location);
    expect(sid).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const home = await request(url).get(login.headers.location);
    shouldBeGreeted(home, 'dave');
    shouldNotSetCookie(home);
    // Every link and form keeps the session.
    const urls = localUrls(home.text);
    expect(urls).toEqual(expect.arrayContaining([`/count?sid=${sid}`, `/logout?sid=${sid}`]));
    for (const link of urls) expect(sidIn(link)).toBe(sid);

    expect(countOn(await request(url).get(`/count?sid=${sid}`))).toBe(1);
    const second = await request(url).get(`/count?sid=${sid}`);
    expect(countOn(second)).toBe(2);
    shouldBeGreeted(second, 'dave');

    // The id is only accepted from the URL: the same id in a cookie means nothing.
    shouldNotBeLoggedIn(await request(url).get('/').set('Cookie', `${DEMO_COOKIE_NAME}=${sid}`));

    const logout = await request(url).post(`/logout?sid=${sid}`);
    expect(logout.status).toBe(303);
    expect(logout.headers.location).toBe('/');
    shouldNotBeLoggedIn(await request(url).get(`/?sid=${sid}`));
  });

  test('logging in from an existing URL session moves it to a new id', async () => {
    const { url } = await demo({ session: { transports: ['query'] } });
    const counted = await request(url).get('/count');
    const [countLink] = localUrls(counted.text).filter((link) => link.startsWith('/count'));
    const before = sidIn(countLink);
    expect(before).not.toBeNull();
    const login = await request(url).post(`/login?sid=${before}`).type('form').send({ username: 'erin' });
    const after = sidIn(login.headers.location);
    expect(after).not.toBe(before);
    expect(countOn(await request(url).get(`/count?sid=${after}`))).toBe(2);
    shouldNotBeLoggedIn(await request(url).get(`/?sid=${before}`));
  });
});

describe('demo app, when the session store fails', () => {
  /** A memory store that fails every call once `broken` is set. */
  class BreakableStore extends MemoryProvider {
    broken = false;
    override readNow(sid: string) {
      if (this.broken) throw new Error('store is down');
      return super.readNow(sid);
    }
    override async count(now: number) {
      if (this.broken) throw new Error('store is down');
      return super.count(now);
    }
  }

  /** A memory store whose updates fail: the save after the route, not a read, is what breaks. */
  class FailingUpdates extends MemoryProvider {
    override async update(): Promise<boolean> {
      throw new Error('disk full');
    }
  }

  /** Runs `body` with console.error silenced (the demo logs 5xx errors). */
  async function quietly<T>(body: () => Promise<T>): Promise<T> {
    const spy = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      return await body();
    } finally {
      spy.mockRestore();
    }
  }

  test('a visitor gets a 503 page, not a silent logout', async () => {
    const store = new BreakableStore();
    const { url } = await demo({ session: { provider: store, onError: () => undefined } });
    const visitor = new Visitor(url);
    await visitor.post('/login', { username: 'frank' });
    store.broken = true;
    const res = await quietly(() => visitor.get('/'));
    expect(res.status).toBe(503);
    expect(res.text).toContain('Sessions are unavailable');
    expect(onlineOn(res)).toBe('–');
    expect(res.text).not.toContain('frank');
    store.broken = false;
    shouldBeGreeted(await visitor.get('/'), 'frank');
  });

  test('a store without a per-user index: login works, "Your sessions" is a 501 page that says why', async () => {
    class NoUserIndex extends MemoryProvider {}
    Object.defineProperty(NoUserIndex.prototype, 'listByUser', { value: undefined });
    const { url } = await demo({ session: { provider: new NoUserIndex() } });
    const visitor = new Visitor(url);
    await visitor.post('/login', { username: 'hank' });
    shouldBeGreeted(await visitor.get('/'), 'hank');
    const res = await visitor.get('/sessions');
    expect(res.status).toBe(501);
    expect(res.text).toContain('Not available with this session store');
    expect(res.text).toContain('Logged in as <strong>hank</strong>'); // nothing failed: the login stands
    expect((await visitor.post('/sessions/logout-others')).status).toBe(501);
    shouldBeGreeted(await visitor.get('/'), 'hank');
  });

  test('a login whose save fails gets a 503 page instead of the redirect, with the page headers intact', async () => {
    const { url } = await demo({ session: { provider: new FailingUpdates(), onError: () => undefined } });
    const visitor = new Visitor(url);
    expect(countOn(await visitor.get('/count'))).toBe(1); // creating a session still works
    // Login: regenerate() creates the new session, then saving the username (an update) fails.
    const res = await quietly(() => visitor.post('/login', { username: 'gina' }));
    expect(res.status).toBe(503);
    expect(res.headers.location).toBeUndefined();
    shouldNotSetCookie(res);
    expect(res.text).toContain('Sessions are unavailable');
    expect(res.text).not.toContain('gina'); // the login was not saved: the page must not claim it
    expect(res.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    expect(res.headers['cache-control']).toBe('no-store');
  });
});

describe('demo configuration from the environment', () => {
  test('defaults: 127.0.0.1:3000, memory, cookie', () => {
    expect(configFromEnv({})).toEqual({
      port: 3000,
      host: '127.0.0.1',
      demo: { session: { provider: 'memory', providerOptions: {}, transports: ['cookie'] } },
    });
  });

  test('every variable is passed on', () => {
    const secret = 's'.repeat(32);
    const config = configFromEnv({
      PORT: '0', HOST: '::1', SESSION_PROVIDER: 'file', SESSION_DIR: '/tmp/sessions', SESSION_TRANSPORT: 'query',
      SESSION_MAX_LIFETIME: '90', SESSION_SECRET: secret, DEMO_REPLACE_AFTER: '30',
    });
    expect(config).toEqual({
      port: 0,
      host: '::1',
      demo: {
        replaceAfter: 30,
        session: { provider: 'file', providerOptions: { dir: '/tmp/sessions' }, transports: ['query'], maxLifetime: 90, secret },
      },
    });
    expect(configFromEnv({ SESSION_PROVIDER: 'sqlite', SESSION_DB: 'x.db' }).demo.session?.providerOptions).toEqual({ path: 'x.db' });
    expect(configFromEnv({ SESSION_PROVIDER: 'redis', REDIS_URL: 'redis://h' }).demo.session?.providerOptions).toEqual({ url: 'redis://h' });
    expect(configFromEnv({ SESSION_PROVIDER: 'postgres', DATABASE_URL: 'postgres://h/db' }).demo.session?.providerOptions)
      .toEqual({ connectionString: 'postgres://h/db' });
  });

  test.each([
    ['PORT', { PORT: '70000' }],
    ['PORT', { PORT: 'eighty' }],
    ['SESSION_PROVIDER', { SESSION_PROVIDER: 'mongo' }],
    ['SESSION_TRANSPORT', { SESSION_TRANSPORT: 'header' }],
    ['SESSION_MAX_LIFETIME', { SESSION_MAX_LIFETIME: '-5' }],
    ['DEMO_REPLACE_AFTER', { DEMO_REPLACE_AFTER: 'soon' }],
  ])('an invalid %s is refused, naming the variable', (name, env) => {
    expect(() => configFromEnv(env)).toThrow(new RegExp(`^${name}=`));
  });
});

describe('npm run demo (demo-app/server.ts under ts-node)', () => {
  const root = join(__dirname, '..');
  const runDemo = (env: NodeJS.ProcessEnv) => spawn(process.execPath, [join(root, 'node_modules/ts-node/dist/bin.js'), '--transpile-only', 'demo-app/server.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', SESSION_PROVIDER: '', SESSION_TRANSPORT: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  test('an unreachable store stops it at start: one line naming the provider and its variable, exit code 1', async () => {
    // Nothing listens on port 1; the password must not be printed.
    const child = runDemo({ SESSION_PROVIDER: 'redis', REDIS_URL: 'redis://demo:s3cret-pw@127.0.0.1:1' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const timeout = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('no exit within 15 s'), 15_000)));
    try {
      const code = await Promise.race([exited, timeout]).finally(() => clearTimeout(timer));
      expect(code).toBe(1);
      expect(Date.now() - started).toBeLessThan(15_000);
      const lines = stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^demo: session store not reachable: redis \(REDIS_URL\): .*ECONNREFUSED 127\.0\.0\.1:1/);
      expect(stderr).not.toContain('s3cret-pw');
      expect(stdout).not.toMatch(/http:\/\//); // it never listened
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 30_000);

  test('storeSource names the variables, never their values', () => {
    expect(storeSource({})).toBe('memory');
    expect(storeSource({ SESSION_PROVIDER: 'redis', REDIS_URL: 'redis://:pw@h' })).toBe('redis (REDIS_URL)');
    expect(storeSource({ SESSION_PROVIDER: 'redis' })).toBe("redis (REDIS_URL not set: the provider's default)");
    expect(storeSource({ SESSION_PROVIDER: 'postgres', DATABASE_URL: 'postgres://u:pw@h/db' })).toBe('postgres (DATABASE_URL)');
  });

  test('prints its URL, serves pages, and stops cleanly on SIGTERM', async () => {
    const child = runDemo({});
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const started = Date.now();
      while (!/http:\/\/127\.0\.0\.1:\d+\//.test(output)) {
        if (Date.now() - started > 20_000 || child.exitCode !== null) throw new Error(`the demo did not start:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const address = /http:\/\/127\.0\.0\.1:\d+/.exec(output)![0];
      shouldNotBeLoggedIn(await request(address).get('/'));
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve('no exit within 10 s'), 10_000)));
      const code = await Promise.race([exited, timeout]).finally(() => clearTimeout(timer));
      expect(code).toBe(0);
      expect(output).toContain('demo: stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 40_000);
});
