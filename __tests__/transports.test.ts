import request from 'supertest';
import { buildApp } from './support/app';
import { cookiePair, EXPRESS_VERSIONS, expectNoSetCookie, FakeClock, SECRET, setCookie } from './support/http';
import { RecordingProvider } from './support/recording-provider';

describe.each(EXPRESS_VERSIONS)('transports on %s', (_name, express) => {
  describe("'header'", () => {
    it('carries a new id in the response header, without a cookie', async () => {
      const { app } = buildApp(express, { transports: ['header'] });
      const res = await request(app).get('/set/a/1');
      expectNoSetCookie(res);
      const sid = res.headers['x-session-id'];
      expect(sid).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(res.headers['cache-control']).toBe('no-store');
      const again = await request(app).get('/get/a').set('X-Session-Id', sid);
      expect(again.body.value).toBe('1');
      expect(again.headers['x-session-id']).toBeUndefined(); // unchanged id: not repeated
    });

    it('signs the header value with a secret and uses a custom header name', async () => {
      const { app } = buildApp(express, { transports: ['header'], headerName: 'X-Auth-Session', secret: SECRET });
      const res = await request(app).get('/set/a/1');
      const value = res.headers['x-auth-session'];
      expect(value).toMatch(/^s:[A-Za-z0-9_-]{43}\.[A-Za-z0-9+/]+$/);
      expect((await request(app).get('/get/a').set('X-Auth-Session', value)).body.value).toBe('1');
      expect((await request(app).get('/get/a').set('X-Auth-Session', value.slice(0, -2))).body.value).toBeNull();
    });

    it('sends the new id after regenerate()', async () => {
      const { app } = buildApp(express, { transports: ['header'] });
      const first = (await request(app).get('/set/a/1')).headers['x-session-id'];
      const res = await request(app).post('/login').set('X-Session-Id', first);
      expect(res.headers['x-session-id']).toBeDefined();
      expect(res.headers['x-session-id']).not.toBe(first);
    });
  });

  describe("'query' (URL rewriting)", () => {
    it('reads the id from the query and rewrites URLs to carry it', async () => {
      const { app } = buildApp(express, { transports: ['query'], secret: SECRET });
      app.get('/links', (req, res) => {
        req.session.set('visited', true);
        res.json({ plain: req.session.url('/next'), withQuery: req.session.url('/next?page=2#top') });
      });
      const res = await request(app).get('/links');
      expectNoSetCookie(res);
      expect(res.body.withQuery).toMatch(/^\/next\?page=2&sid=s%3A[^&#]+#top$/);
      const follow = await request(app).get(res.body.plain.replace('/next', '/get/visited'));
      expect(follow.body.value).toBe(true);
    });

    it('replaces an id already in the URL, however it was encoded', async () => {
      const { app } = buildApp(express, { transports: ['query'], queryParam: 'token' });
      const paths = ['/x?token=old&a=1', '/x?%74oken=old&a=1', '/x?token=one&a=1&token=two', '/x?a=hello world&b=%2B#frag'];
      app.get('/u', (req, res) => res.json({ urls: paths.map((path) => req.session.url(path)), id: req.sessionID }));
      const { urls, id } = (await request(app).get('/u')).body;
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(urls).toEqual([`/x?token=${id}&a=1`, `/x?token=${id}&a=1`, `/x?token=${id}&a=1`, `/x?a=hello+world&b=%2B&token=${id}#frag`]);
    });

    it('refuses to put the id into a URL that is not a path of this site', async () => {
      const { app } = buildApp(express, { transports: ['query'] });
      const foreign = ['http://evil.example/x', 'https://evil.example', '//evil.example/x', '/\\evil.example/x', 'next', ''];
      app.get('/u', (req, res) =>
        res.json(
          foreign.map((path) => {
            try {
              return `accepted: ${req.session.url(path)}`;
            } catch (err) {
              return (err as Error).name;
            }
          }),
        ),
      );
      expect((await request(app).get('/u')).body).toEqual(foreign.map(() => 'TypeError'));
    });

    it('refreshes an id that came by URL without planting it in a cookie', async () => {
      const provider = new RecordingProvider();
      const clock = new FakeClock();
      const { app } = buildApp(express, { provider, clock: clock.now, transports: ['query', 'cookie'], touchAfter: 0 });
      app.get('/link', (req, res) => {
        req.session.set('a', 1);
        res.json({ url: req.session.url('/get/a') });
      });
      const created = await request(app).get('/link');
      expect(cookiePair(created)).toMatch(/^sid=[A-Za-z0-9_-]{43}$/); // a new id goes to every transport
      provider.reset();
      clock.advance(10);
      const followed = await request(app).get(created.body.url);
      expect(followed.body.value).toBe(1);
      expect(provider.writes()).toEqual(['touch']); // refreshed...
      expectNoSetCookie(followed); // ...but not turned into a cookie
      clock.advance(10);
      const withCookie = await request(app).get('/get/a').set('Cookie', cookiePair(created));
      expect(withCookie.body.value).toBe(1);
      expect(setCookie(withCookie)).toMatch(/Max-Age=3600;/); // a cookie-borne id still has its Max-Age refreshed
    });
  });

  describe('order and exclusivity', () => {
    it('accepts an id only from a listed transport', async () => {
      const provider = new RecordingProvider();
      const { app } = buildApp(express, { provider });
      const pair = cookiePair(await request(app).get('/set/a/1'));
      const sid = pair.slice(4);
      provider.reset();
      expect((await request(app).get(`/get/a?sid=${sid}`)).body.value).toBeNull();
      expect((await request(app).get('/get/a').set('X-Session-Id', sid)).body.value).toBeNull();
      expect(provider.methods()).toEqual([]);
    });

    it('takes the first valid id in the listed order', async () => {
      const { app } = buildApp(express, { transports: ['header', 'cookie'] });
      const viaCookie = cookiePair(await request(app).get('/set/who/cookie'));
      const viaHeader = (await request(app).get('/set/who/header').set('X-Session-Id', 'not a valid id!')).headers['x-session-id'];
      const both = await request(app).get('/get/who').set('Cookie', viaCookie).set('X-Session-Id', viaHeader);
      expect(both.body.value).toBe('header');
      const badHeader = await request(app).get('/get/who').set('Cookie', viaCookie).set('X-Session-Id', 'garbage');
      expect(badHeader.body.value).toBe('cookie');
    });

    it('reads a cookie URL-decoded and a header as it is, also once the value is known', async () => {
      const { app } = buildApp(express, { transports: ['cookie', 'header'], secret: SECRET });
      const pair = cookiePair(await request(app).get('/set/a/1'));
      const encoded = pair.slice(pair.indexOf('=') + 1);
      expect(encoded).toMatch(/%/); // the signature's +, / and = travel escaped in a cookie
      expect((await request(app).get('/get/a').set('Cookie', pair)).body.value).toBe('1'); // now verified and remembered
      // The same text as a header value is not the signed id (a header is not URL-decoded), remembered or not.
      expect((await request(app).get('/get/a').set('X-Session-Id', encoded)).body.value).toBeNull();
      expect((await request(app).get('/get/a').set('X-Session-Id', decodeURIComponent(encoded))).body.value).toBe('1');
    });
  });
});
