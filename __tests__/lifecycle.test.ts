import request from 'supertest';
import { storageKey } from '../lib/manager';
import { buildApp } from './support/app';
import { cookiePair, EXPRESS_VERSIONS, expectNoSetCookie, FakeClock, idOf, setCookie } from './support/http';
import { gate, RecordingProvider } from './support/recording-provider';

describe.each(EXPRESS_VERSIONS)('session lifecycle on %s', (_name, express) => {
  let provider: RecordingProvider;
  let clock: FakeClock;

  beforeEach(() => {
    provider = new RecordingProvider();
    clock = new FakeClock();
  });

  function setup(options = {}) {
    return buildApp(express, { provider, clock: clock.now, ...options });
  }

  async function login(app: ReturnType<typeof setup>['app']): Promise<string> {
    const res = await request(app).get('/set/username/alice');
    return cookiePair(res);
  }

  describe('when a visitor sets nothing', () => {
    it('stores nothing and sends no cookie (saveUninitialized false)', async () => {
      const { app } = setup();
      const res = await request(app).get('/read').expect(200);
      expectNoSetCookie(res);
      expect(provider.methods()).toEqual([]);
    });

    it('stores an empty session and sends its cookie with saveUninitialized true', async () => {
      const { app } = setup({ saveUninitialized: true });
      const res = await request(app).get('/read').expect(200);
      expect(setCookie(res)).toBeDefined();
      expect(provider.methods()).toEqual(['create']);
    });
  });

  describe('when a session is created', () => {
    it('stores it before the response, with the id the app saw', async () => {
      const { app } = setup();
      const agent = request.agent(app);
      const first = await agent.get('/whoami');
      expect(first.body.isNew).toBe(true);
      const res = await agent.get('/set/username/alice');
      const sid = idOf(cookiePair(res));
      expect(provider.calls.find((call) => call.method === 'create')?.sid).toBe(storageKey(sid));
      expect((await agent.get('/read')).body).toEqual({ username: 'alice' });
      expect((await agent.get('/whoami')).body).toMatchObject({ sessionID: sid, isNew: false });
    });

    it('keeps the id the app read (e.g. for links) as the stored id', async () => {
      const { app } = setup();
      app.get('/id-then-set', (req, res) => {
        const seen = req.sessionID;
        req.session.set('k', 1);
        res.json({ seen });
      });
      const res = await request(app).get('/id-then-set');
      expect(idOf(cookiePair(res))).toBe(res.body.seen);
    });

    it('holds the redirect back until the session is stored', async () => {
      const { app } = setup();
      const storing = gate();
      provider.gates.set('create', storing.promise);
      let arrived = false;
      const pending = request(app).post('/login').then((res) => ((arrived = true), res));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(provider.methods()).toEqual(['create']);
      expect(arrived).toBe(false); // the handler has redirected, but the save is still running
      storing.open();
      const res = await pending;
      expect(res.status).toBe(302);
      const stored = await provider.inner.read(storageKey(idOf(cookiePair(res))));
      expect(stored?.values.get('username')).toBe('"alice"');
    });
  });

  describe('when a request only reads', () => {
    it('writes nothing but the throttled expiry refresh', async () => {
      const { app } = setup({ maxLifetime: 100, touchAfter: 10 });
      const cookie = await login(app);
      provider.reset();
      const quiet = await request(app).get('/read').set('Cookie', cookie).expect(200);
      expect(quiet.body.username).toBe('alice');
      expectNoSetCookie(quiet);
      expect(provider.writes()).toEqual([]);

      clock.advance(11);
      const refreshed = await request(app).get('/read').set('Cookie', cookie);
      expect(provider.writes()).toEqual(['touch']);
      expect(setCookie(refreshed)).toMatch(/Max-Age=100;/);
      expect(refreshed.headers['cache-control']).toBe('no-store');
    });

    it('a write slides the expiry (and re-sends the cookie) on the same schedule as a read', async () => {
      const { app, middleware } = setup({ maxLifetime: 100, touchAfter: 10 });
      const cookie = await login(app);
      const expiry = async (): Promise<number> => {
        for await (const info of middleware.manager.sessions()) return info.expiresAt.getTime();
        throw new Error('no session');
      };
      const stored = await expiry();
      clock.advance(5);
      const write = await request(app).get('/incr').set('Cookie', cookie);
      expect(write.body.count).toBe(1);
      expectNoSetCookie(write); // the cookie's Max-Age still holds
      expect(await expiry()).toBe(stored);

      clock.advance(6);
      const sliding = await request(app).get('/incr').set('Cookie', cookie);
      expect(sliding.body.count).toBe(2);
      expect(setCookie(sliding)).toMatch(/Max-Age=100;/);
      expect(await expiry()).toBe(clock.now() + 100_000);
    });

    it('refreshes on every request with touchAfter 0', async () => {
      const { app } = setup({ touchAfter: 0 });
      const cookie = await login(app);
      provider.reset();
      clock.advance(1);
      await request(app).get('/read').set('Cookie', cookie);
      clock.advance(1);
      await request(app).get('/read').set('Cookie', cookie);
      expect(provider.writes()).toEqual(['touch', 'touch']);
    });
  });

  describe('when a request writes', () => {
    it('sends per-key changes only and refreshes the cookie', async () => {
      const { app } = setup({ maxLifetime: 50 });
      const cookie = await login(app);
      provider.reset();
      clock.advance(20);
      const res = await request(app).get('/incr').set('Cookie', cookie);
      expect(provider.writes()).toEqual(['update']);
      expect(setCookie(res)).toMatch(/Max-Age=50;/);
      const stored = await provider.inner.read(storageKey(idOf(cookie)));
      expect(stored?.expiresAt).toBe(clock.time + 50_000);
    });

    it('keeps every key of 50 parallel requests of one session', async () => {
      const { app } = setup();
      const cookie = await login(app);
      const server = app.listen(0, '127.0.0.1');
      try {
        const agent = request(server);
        await Promise.all(Array.from({ length: 50 }, (_, i) => agent.get(`/set/key${i}/${i}`).set('Cookie', cookie).expect(200)));
        const stored = await provider.inner.read(storageKey(idOf(cookie)));
        for (let i = 0; i < 50; i++) expect(stored?.values.get(`key${i}`)).toBe(JSON.stringify(String(i)));
        expect(stored?.values.get('username')).toBe('"alice"');
      } finally {
        server.close();
      }
    });

    it('deletes a key', async () => {
      const { app } = setup();
      const cookie = await login(app);
      await request(app).get('/delete/username').set('Cookie', cookie);
      expect((await request(app).get('/read').set('Cookie', cookie)).body.username).toBeNull();
    });

    it('saves changes made after save() and while streaming', async () => {
      const { app } = setup();
      const res = await request(app).get('/save-then-stream').expect(200);
      expect(res.text).toBe('part one;part two');
      const stored = await provider.inner.read(storageKey(idOf(cookiePair(res))));
      expect(Object.fromEntries(stored!.values)).toEqual({ before: '1', during: '2' });
    });
  });

  describe('save()', () => {
    it('resolves true once stored, false when the session was destroyed elsewhere meanwhile', async () => {
      const { app } = setup();
      app.get('/save-twice', async (req, res) => {
        req.session.set('a', 1);
        const first = await req.session.save();
        const storedFirst = (await provider.inner.read(storageKey(req.sessionID)))?.values.get('a');
        await provider.inner.destroy(storageKey(req.sessionID)); // a logout in another request
        req.session.set('b', 2);
        const second = await req.session.save();
        res.json({ first, storedFirst, second, keys: [...req.session.keys()] });
      });
      const cookie = await login(app);
      const res = await request(app).get('/save-twice').set('Cookie', cookie);
      expect(res.body).toEqual({ first: true, storedFirst: '1', second: false, keys: [] });
      expectNoSetCookie(res); // the dead id is not sent again
      await expect(provider.inner.count(clock.time)).resolves.toBe(0); // and nothing brought it back
    });
  });

  describe('when the id is unknown', () => {
    it('never adopts it and issues a fresh id (no fixation)', async () => {
      const { app } = setup();
      const planted = 'sid=attacker-chosen-session-id-123';
      const res = await request(app).get('/set/username/victim').set('Cookie', planted);
      const issued = idOf(cookiePair(res));
      expect(issued).not.toBe('attacker-chosen-session-id-123');
      await expect(provider.inner.read(storageKey('attacker-chosen-session-id-123'))).resolves.toBeUndefined();
    });
  });

  describe('regenerate()', () => {
    it('moves the data to a fresh id and kills the old one', async () => {
      const { app } = setup();
      const before = await login(app);
      await request(app).get('/set/cart/3').set('Cookie', before);
      const res = await request(app).post('/login').set('Cookie', before).expect(302);
      const after = cookiePair(res);
      expect(idOf(after)).not.toBe(idOf(before));
      const stored = await provider.inner.read(storageKey(idOf(after)));
      expect(stored?.values.get('cart')).toBe('"3"');
      await expect(provider.inner.read(storageKey(idOf(before)))).resolves.toBeUndefined();
      const old = await request(app).get('/read').set('Cookie', before);
      expect(old.body.username).toBeNull();
    });

    it('does not carry a session destroyed elsewhere over to a new id', async () => {
      const { app } = setup();
      app.post('/late-login', async (req, res) => {
        await provider.inner.destroy(storageKey(req.sessionID)); // a logout in another request wins the race
        await req.session.regenerate();
        res.json({ keys: [...req.session.keys()] });
      });
      const cookie = await login(app);
      const res = await request(app).post('/late-login').set('Cookie', cookie);
      expect(res.body.keys).toEqual([]);
      await expect(provider.inner.count(clock.time)).resolves.toBe(0);
    });

    it('costs no store write for a session that was never stored', async () => {
      const { app } = setup();
      await request(app).post('/login').expect(302);
      expect(provider.writes()).toEqual(['create']);
    });
  });

  describe('destroySession()', () => {
    it('deletes the session and clears the cookie', async () => {
      const { app } = setup();
      const cookie = await login(app);
      const res = await request(app).post('/logout').set('Cookie', cookie).expect(302);
      expect(setCookie(res)).toMatch(/^sid=; Max-Age=0;.*Expires=Thu, 01 Jan 1970/);
      expect(res.headers['cache-control']).toBe('no-store');
      await expect(provider.inner.read(storageKey(idOf(cookie)))).resolves.toBeUndefined();
    });

    it('lets the same request start a new session afterwards', async () => {
      const { app } = setup();
      app.post('/logout-with-flash', async (req, res) => {
        await req.destroySession();
        req.session.set('flash', 'bye');
        res.json({ isNew: req.session.isNew });
      });
      const cookie = await login(app);
      const res = await request(app).post('/logout-with-flash').set('Cookie', cookie);
      const fresh = cookiePair(res);
      expect(idOf(fresh)).not.toBe(idOf(cookie));
      expect((await request(app).get('/get/flash').set('Cookie', fresh)).body.value).toBe('bye');
      expect((await request(app).get('/read').set('Cookie', fresh)).body.username).toBeNull();
    });

    it('is not undone by a slow request that loaded the session earlier', async () => {
      const { app, hold } = setup();
      const cookie = await login(app);
      const slow = gate();
      hold.before = slow.promise;
      const server = app.listen(0, '127.0.0.1');
      try {
        const pending = request(server).get('/set/late/1').set('Cookie', cookie).then((res) => res);
        await new Promise((resolve) => setTimeout(resolve, 50)); // the slow request has loaded the session
        hold.before = undefined;
        await request(server).post('/logout').set('Cookie', cookie).expect(302);
        slow.open();
        const late = await pending;
        expect(late.status).toBe(200);
        expectNoSetCookie(late); // the dead id is not sent again
        await expect(provider.inner.read(storageKey(idOf(cookie)))).resolves.toBeUndefined();
      } finally {
        server.close();
      }
    });
  });

  describe('expiry', () => {
    it('expires an idle session, whatever the cookie says', async () => {
      const { app } = setup({ maxLifetime: 60 });
      const cookie = await login(app);
      clock.advance(59);
      expect((await request(app).get('/read').set('Cookie', cookie)).body.username).toBe('alice');
      clock.advance(60);
      expect((await request(app).get('/read').set('Cookie', cookie)).body.username).toBeNull();
    });

    it('slides with use', async () => {
      const { app } = setup({ maxLifetime: 60, touchAfter: 0 });
      const cookie = await login(app);
      for (let i = 0; i < 5; i++) {
        clock.advance(50);
        expect((await request(app).get('/read').set('Cookie', cookie)).body.username).toBe('alice');
      }
    });

    it('caps an active session at absoluteLifetime', async () => {
      const { app } = setup({ maxLifetime: 60, absoluteLifetime: 120, touchAfter: 0 });
      const cookie = await login(app);
      clock.advance(50);
      await request(app).get('/read').set('Cookie', cookie);
      clock.advance(50);
      const near = await request(app).get('/incr').set('Cookie', cookie);
      expect(setCookie(near)).toMatch(/Max-Age=20;/); // the cookie agrees with the hard cap
      clock.advance(21);
      expect((await request(app).get('/read').set('Cookie', cookie)).body.username).toBeNull();
    });

    it('does not bring an expired session back when it is written to', async () => {
      const { app } = setup({ maxLifetime: 60 });
      const cookie = await login(app);
      clock.advance(61);
      const res = await request(app).get('/set/k/v').set('Cookie', cookie);
      expect(idOf(cookiePair(res))).not.toBe(idOf(cookie));
      await expect(provider.inner.read(storageKey(idOf(cookie)))).resolves.toBeUndefined();
    });
  });

  describe('when the store fails', () => {
    it('answers 503 on load, never an empty session', async () => {
      const { app } = setup();
      const cookie = await login(app);
      provider.failing.add('read');
      const res = await request(app).get('/read').set('Cookie', cookie);
      expect(res.status).toBe(503);
      expect(res.body.error).toMatch(/recording.*read failed.*connection refused/);
    });

    it('answers 503 instead of the redirect when the save fails', async () => {
      const { app } = setup();
      provider.failing.add('create');
      const res = await request(app).post('/login');
      expect(res.status).toBe(503);
      expect(res.headers.location).toBeUndefined();
      expectNoSetCookie(res);
    });

    it('answers 503 when an update fails, and loses nothing already stored', async () => {
      const { app } = setup();
      const cookie = await login(app);
      provider.failing.add('update');
      expect((await request(app).get('/incr').set('Cookie', cookie)).status).toBe(503);
      provider.failing.clear();
      expect((await request(app).get('/read').set('Cookie', cookie)).body.username).toBe('alice');
    });

    it('a save() that fails loses nothing: the changes still fail the response, or are stored once the store is back', async () => {
      const { app } = setup();
      const cookie = await login(app);
      app.get('/save-fails-then-recovers', async (req, res) => {
        req.session.set('n', 2);
        provider.failing.add('update');
        const first = await req.session.save().then(() => 'saved', () => 'failed');
        provider.failing.clear();
        res.json({ first });
      });
      app.get('/save-fails', async (req, res) => {
        req.session.set('m', 3);
        provider.failing.add('update');
        await req.session.save().catch(() => undefined);
        res.json({ ok: true }); // the final commit tries again, fails again: a 503, not a silent 200
      });
      expect((await request(app).get('/save-fails-then-recovers').set('Cookie', cookie)).body).toEqual({ first: 'failed' });
      expect((await request(app).get('/get/n').set('Cookie', cookie)).body.value).toBe(2);
      expect((await request(app).get('/save-fails').set('Cookie', cookie)).status).toBe(503);
      provider.failing.clear();
      expect((await request(app).get('/get/m').set('Cookie', cookie)).body.value).toBeNull();
    });

    it('aborts a streamed response whose final save fails', async () => {
      const { app } = setup();
      const cookie = await login(app);
      app.get('/stream-then-set', (req, res) => {
        res.write('partial');
        setTimeout(() => {
          req.session.set('late', true);
          provider.failing.add('update');
          res.end('done');
        }, 5);
      });
      await expect(request(app).get('/stream-then-set').set('Cookie', cookie)).rejects.toThrow();
    });
  });
});
