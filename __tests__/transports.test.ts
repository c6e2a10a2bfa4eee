import request from 'supertest';
import { buildApp } from './support/app';
import { cookiePair, EXPRESS_VERSIONS, expectNoSetCookie, SECRET } from './support/http';
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

    it('replaces an id already in the URL', async () => {
      const { app } = buildApp(express, { transports: ['query'], queryParam: 'token' });
      app.get('/u', (req, res) => res.json({ url: req.session.url('/x?token=old&a=1') }));
      const { url } = (await request(app).get('/u')).body;
      expect(url).toMatch(/^\/x\?a=1&token=[A-Za-z0-9_-]{43}$/);
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
  });
});
