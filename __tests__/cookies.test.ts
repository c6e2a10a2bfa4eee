import cookieParser from 'cookie-parser';
import { sign } from 'cookie-signature';
import request from 'supertest';
import { buildApp } from './support/app';
import { cookiePair, EXPRESS_VERSIONS, expectNoSetCookie, FakeClock, idOf, SECRET, setCookie } from './support/http';
import { RecordingProvider } from './support/recording-provider';

const OLD_SECRET = 'an-older-secret-that-is-still-accepted-xyz';

describe.each(EXPRESS_VERSIONS)('the session cookie on %s', (_name, express) => {
  describe('attributes', () => {
    it('defaults to Path=/, HttpOnly, SameSite=Lax, Max-Age of the idle timeout, no Secure over HTTP', async () => {
      const { app } = buildApp(express);
      const line = setCookie(await request(app).get('/set/a/1'));
      expect(line).toMatch(/^sid=[A-Za-z0-9_-]{43}; Max-Age=3600; Path=\/; HttpOnly; SameSite=Lax$/);
    });

    it('writes every configured attribute', async () => {
      const { app } = buildApp(express, {
        cookieName: '__Host-app',
        maxLifetime: 120,
        cookie: { secure: true, sameSite: 'strict', partitioned: true, priority: 'high' },
      });
      const line = setCookie(await request(app).get('/set/a/1'), '__Host-app');
      expect(line).toMatch(/; Max-Age=120; Path=\/; HttpOnly; Secure; Partitioned; Priority=High; SameSite=Strict$/);
    });

    it('sets Secure under secure: auto when Express says the request is secure', async () => {
      const { app } = buildApp(express);
      app.set('trust proxy', true);
      const line = setCookie(await request(app).get('/set/a/1').set('X-Forwarded-Proto', 'https'));
      expect(line).toContain('; Secure');
    });

    it('writes a browser-session cookie with persistent: false, and only when the id changes', async () => {
      const { app } = buildApp(express, { cookie: { persistent: false, domain: 'example.com', path: '/app', httpOnly: false } });
      const first = await request(app).get('/set/a/1');
      expect(setCookie(first)).toMatch(/^sid=[^;]+; Domain=example.com; Path=\/app; SameSite=Lax$/);
      const second = await request(app).get('/set/b/2').set('Cookie', cookiePair(first));
      expectNoSetCookie(second);
    });

    it('uses the configured cookie name', async () => {
      const { app } = buildApp(express, { cookieName: 'gosessionid' });
      const res = await request(app).get('/set/a/1');
      const again = await request(app).get('/get/a').set('Cookie', cookiePair(res, 'gosessionid'));
      expect(again.body.value).toBe('1');
    });

    it('leaves an app-set Cache-Control alone', async () => {
      const { app } = buildApp(express);
      app.get('/cached', (req, res) => {
        req.session.set('a', 1);
        res.set('Cache-Control', 'private, max-age=5').send('ok');
      });
      const res = await request(app).get('/cached');
      expect(setCookie(res)).toBeDefined();
      expect(res.headers['cache-control']).toBe('private, max-age=5');
    });

    it('sends no Cache-Control on responses that do not touch the id', async () => {
      const { app } = buildApp(express);
      const res = await request(app).get('/read');
      expect(res.headers['cache-control']).toBeUndefined();
    });

    it('keeps cookies other handlers set', async () => {
      const { app } = buildApp(express);
      app.get('/two-cookies', (req, res) => {
        res.cookie('theme', 'dark');
        req.session.set('a', 1);
        res.send('ok');
      });
      const res = await request(app).get('/two-cookies');
      expect(setCookie(res, 'theme')).toBeDefined();
      expect(setCookie(res, 'sid')).toBeDefined();
    });
  });

  describe('reading the cookie', () => {
    it('unquotes a quoted value as the cookie package does', async () => {
      const { app } = buildApp(express);
      const pair = cookiePair(await request(app).get('/set/a/1'));
      const res = await request(app).get('/get/a').set('Cookie', `sid="${idOf(pair)}"`);
      expect(res.body.value).toBe('1');
    });

    it('tries every cookie of that name in order: the first one that verifies and is known wins', async () => {
      const provider = new RecordingProvider();
      const { app } = buildApp(express, { provider, secret: SECRET });
      const first = cookiePair(await request(app).get('/set/who/first'));
      const second = cookiePair(await request(app).get('/set/who/second'));
      const unknown = `sid=${encodeURIComponent(`s:${sign('an-unknown-but-well-formed-id-000', SECRET)}`)}`;
      const forged = `sid=s%3A${'A'.repeat(43)}.${'B'.repeat(43)}`;
      provider.reset();
      const res = await request(app).get('/get/who').set('Cookie', `${forged}; other=x; ${unknown}; ${second}; ${first}`);
      expect(res.body.value).toBe('second');
      // The forgery never reaches the store; the unknown id (its session, then a renewal link), then the known one.
      expect(provider.methods()).toEqual(['read', 'read', 'read']);
      expect((await request(app).get('/get/who').set('Cookie', `${first}; ${second}`)).body.value).toBe('first');
    });
  });

  describe('signing', () => {
    it('signs the id in the s: format and accepts it back', async () => {
      const { app } = buildApp(express, { secret: SECRET });
      const res = await request(app).get('/set/a/1');
      const pair = cookiePair(res);
      const sid = idOf(pair);
      expect(decodeURIComponent(pair.slice(4))).toBe(`s:${sign(sid, SECRET)}`);
      expect((await request(app).get('/get/a').set('Cookie', pair)).body.value).toBe('1');
    });

    it('ignores a tampered signature without asking the store', async () => {
      const provider = new RecordingProvider();
      const { app } = buildApp(express, { secret: SECRET, provider });
      const pair = cookiePair(await request(app).get('/set/a/1'));
      provider.reset();
      const tampered = pair.slice(0, -3) + (pair.endsWith('abc') ? 'xyz' : 'abc');
      const res = await request(app).get('/get/a').set('Cookie', tampered);
      expect(res.body.value).toBeNull();
      expect(provider.methods()).toEqual([]);
    });

    it('ignores an unsigned id when a secret is set', async () => {
      const provider = new RecordingProvider();
      const { app } = buildApp(express, { secret: SECRET, provider });
      const sid = idOf(cookiePair(await request(app).get('/set/a/1')));
      provider.reset();
      expect((await request(app).get('/get/a').set('Cookie', `sid=${sid}`)).body.value).toBeNull();
      expect(provider.methods()).toEqual([]);
    });

    it('verifies with every secret, signs with the first (rotation)', async () => {
      const before = buildApp(express, { secret: OLD_SECRET });
      const provider = before.middleware.manager.provider;
      const oldPair = cookiePair(await request(before.app).get('/set/a/1'));
      const after = buildApp(express, { secret: [SECRET, OLD_SECRET], provider });
      const read = await request(after.app).get('/incr').set('Cookie', oldPair);
      expect(read.body.count).toBe(1);
      const newPair = cookiePair(read);
      expect(idOf(newPair)).toBe(idOf(oldPair));
      expect(decodeURIComponent(newPair.slice(4))).toBe(`s:${sign(idOf(oldPair), SECRET)}`);
    });

    it('re-sends the incoming cookie value as is when it is already current', async () => {
      const clock = new FakeClock();
      const { app } = buildApp(express, { secret: SECRET, touchAfter: 0, clock: clock.now }); // every write slides the expiry: the cookie goes out again
      const pair = cookiePair(await request(app).get('/set/a/1'));
      clock.advance(1);
      const again = await request(app).get('/incr').set('Cookie', pair);
      expect(cookiePair(again)).toBe(pair);
    });
  });

  describe('with cookie-parser', () => {
    it("borrows cookie-parser's secret, and cookie-parser verifies our cookie", async () => {
      const app = express();
      app.use(cookieParser(SECRET));
      const { middleware } = buildApp(express);
      app.use(middleware);
      app.get('/set', (req, res) => {
        req.session.set('a', 1);
        res.send('ok');
      });
      app.get('/parsed', (req, res) => res.json({ signed: req.signedCookies.sid ?? null, id: req.sessionID }));
      const pair = cookiePair(await request(app).get('/set'));
      expect(decodeURIComponent(pair.slice(4)).startsWith('s:')).toBe(true);
      const parsed = await request(app).get('/parsed').set('Cookie', pair);
      expect(parsed.body.signed).toBe(parsed.body.id);
    });

    it('accepts a cookie that cookie-parser signed', async () => {
      const { app, middleware } = buildApp(express, { secret: SECRET });
      const sid = idOf(cookiePair(await request(app).get('/set/a/1')));
      const signedByParser = express();
      signedByParser.use(cookieParser(SECRET));
      signedByParser.get('/mint', (_req, res) => res.cookie('sid', sid, { signed: true }).send('ok'));
      const minted = cookiePair(await request(signedByParser).get('/mint'));
      const other = express();
      other.use(middleware);
      other.get('/get', (req, res) => res.json({ a: req.session.get('a') }));
      expect((await request(other).get('/get').set('Cookie', minted)).body.a).toBe('1');
    });
  });
});
