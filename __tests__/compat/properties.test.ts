// compat: 'express-session' — req.session as express-session's: property
// access, in-place changes saved key by key, the callback and promise forms,
// req.session.cookie (remember-me), and the native API on the same object.
import express from 'express';
import request from 'supertest';
import { sessions, type SessionMiddleware } from '../../lib/index';
import type { SessionOptions } from '../../lib/options';
import { RecordingProvider } from '../support/recording-provider';
import { cookiePair, EXPRESS_VERSIONS, FakeClock, idOf, SECRET, setCookie } from '../support/http';
import { deferred, es, maxAgeOf, QUICK } from './support';

const DAY = 86_400;

describe.each(EXPRESS_VERSIONS)('compat properties on %s', (_name, expressX) => {
  const middlewares: SessionMiddleware[] = [];
  afterAll(() => Promise.all(middlewares.map((m) => m.manager.close())));

  function build(options: SessionOptions = {}): { app: express.Express; middleware: SessionMiddleware; errors: Error[] } {
    const errors: Error[] = [];
    const app = expressX();
    const middleware = sessions({ compat: 'express-session', secret: SECRET, onError: (err) => errors.push(err), ...options });
    middlewares.push(middleware);
    app.use(middleware);
    app.use(expressX.json());
    app.post('/set', (req, res) => {
      Object.assign(es(req), req.body);
      res.json(es(req));
    });
    app.get('/show', (req, res) => res.json({ data: es(req).toJSON(), keys: Object.keys(es(req)), id: es(req).id }));
    app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(500).json({ error: err.message, type: err.constructor.name });
    });
    return { app, middleware, errors };
  }

  it('reads, writes, deletes and enumerates data as properties', async () => {
    const { app } = build();
    app.get('/basics', (req, res) => {
      const s = es(req);
      s.user = { name: 'ann', roles: ['admin'] };
      s.count = 1;
      const sameObject = s.user === s.user;
      const before = { in: 'count' in s, keys: Object.keys(s), own: Object.prototype.hasOwnProperty.call(s, 'user') };
      delete s.count;
      s.gone = 'x';
      s.gone = undefined; // express-session's JSON drops undefined: the key goes
      res.json({ sameObject, before, after: { in: 'count' in s, keys: Object.keys(s) }, json: JSON.parse(JSON.stringify(s)), id: s.id === req.sessionID });
    });
    const res = await request(app).get('/basics');
    expect(res.body).toMatchObject({
      sameObject: true,
      before: { in: true, keys: ['cookie', 'user', 'count'], own: true },
      after: { in: false, keys: ['cookie', 'user'] },
      id: true,
    });
    expect(res.body.json).toMatchObject({ user: { name: 'ann', roles: ['admin'] }, cookie: { path: '/', httpOnly: true, sameSite: 'lax', secure: false } });
    const shown = await request(app).get('/show').set('Cookie', cookiePair(res));
    expect(shown.body.keys).toEqual(['cookie', 'user']);
    expect(shown.body.data.user).toEqual({ name: 'ann', roles: ['admin'] });
    expect(shown.body.id).toBe(idOf(cookiePair(res)));
  }, QUICK);

  it('saves in-place changes of nested values (and only the keys that changed)', async () => {
    const provider = new RecordingProvider();
    const { app } = build({ provider });
    app.get('/init', (req, res) => {
      es(req).cart = { items: [] };
      es(req).passport = {};
      res.end();
    });
    app.get('/mutate', (req, res) => {
      (es(req).cart.items as string[]).push('apple');
      es(req).passport.user = 42;
      res.end();
    });
    app.get('/read', (req, res) => res.json({ cart: es(req).cart, passport: es(req).passport }));
    const cookie = cookiePair(await request(app).get('/init'));
    await request(app).get('/mutate').set('Cookie', cookie);
    provider.reset();
    const read = await request(app).get('/read').set('Cookie', cookie);
    expect(read.body).toEqual({ cart: { items: ['apple'] }, passport: { user: 42 } });
    expect(provider.writes()).toEqual([]); // objects read but left alone are not written back
  }, QUICK);

  it('two overlapping requests changing different top-level keys in place both survive', async () => {
    const { app } = build();
    const hold = deferred();
    const entered = deferred();
    app.get('/init', (req, res) => {
      es(req).a = { n: 0 };
      es(req).b = { n: 0 };
      res.end();
    });
    app.get('/a', async (req, res) => {
      const a = es(req).a; // read before the other request writes b
      entered.resolve();
      await hold.promise;
      a.n += 1;
      res.end();
    });
    app.get('/b', (req, res) => {
      es(req).b.n += 1;
      res.end();
    });
    const cookie = cookiePair(await request(app).get('/init'));
    const slow = request(app).get('/a').set('Cookie', cookie).then((r) => r);
    await entered.promise;
    await request(app).get('/b').set('Cookie', cookie);
    hold.resolve();
    await slow;
    const shown = await request(app).get('/show').set('Cookie', cookie);
    expect(shown.body.data).toMatchObject({ a: { n: 1 }, b: { n: 1 } });
  }, QUICK);

  it('refuses values JSON cannot hold with the TypeError set() throws, and nothing changes', async () => {
    const { app } = build();
    app.get('/bad', (req, res) => {
      const s = es(req);
      const messages: string[] = [];
      for (const value of [() => 1, new Map(), NaN, 10n, Symbol('x')]) {
        let viaProperty: unknown;
        let viaSet: unknown;
        try {
          s.bad = value;
        } catch (err) {
          viaProperty = err;
        }
        try {
          s.set('bad', value as never);
        } catch (err) {
          viaSet = err;
        }
        expect(viaProperty).toBeInstanceOf(TypeError);
        expect((viaProperty as Error).message).toBe((viaSet as Error).message);
        messages.push((viaProperty as Error).message);
      }
      res.json({ messages, has: 'bad' in s });
    });
    const res = await request(app).get('/bad');
    expect(res.status).toBe(200);
    expect(res.body.has).toBe(false);
    expect(res.body.messages).toHaveLength(5);
    for (const message of res.body.messages) expect(message).toMatch(/^\[session-manager\] session value for "bad"/);
  }, QUICK);

  it('a nested value made non-JSON in place is reported at commit; the other keys are saved', async () => {
    const { app, errors } = build();
    app.get('/nested', (req, res) => {
      es(req).ok = { n: 1 };
      es(req).broken = { n: 1 };
      es(req).broken.n = 10n;
      es(req).ok.n = 2;
      res.end();
    });
    const res = await request(app).get('/nested');
    expect(res.status).toBe(200);
    expect(errors.map((err) => err.message)).toEqual([expect.stringMatching(/session value for "broken" is not JSON-serialisable/)]);
    const shown = await request(app).get('/show').set('Cookie', cookiePair(res));
    expect(shown.body.data).toMatchObject({ ok: { n: 2 }, broken: { n: 1 } });
  }, QUICK);

  it('keeps the native API on the same object (API names win over data keys)', async () => {
    const { app } = build();
    app.get('/native', (req, res) => {
      const s = es(req);
      s.profile = { name: 'ann' };
      s.profile.name = 'bob';
      const copy = s.get('profile') as { name: string }; // a fresh copy with the in-place change
      copy.name = 'changed copy';
      s.set('plain', 1);
      const answers = {
        get: s.get('profile'),
        has: s.has('plain'),
        keys: [...s.keys()],
        sessionID: s.sessionID === req.sessionID,
        isNew: s.isNew,
        url: s.url('/x').startsWith('/x?sid='),
        expiresAt: s.expiresAt instanceof Date,
        handle: s.handle,
        sameGet: s.get === s.get,
        apiWins: typeof s.save,
        inApi: 'regenerate' in s,
      };
      let assignError = '';
      try {
        (s as Record<string, unknown>).save = 1;
      } catch (err) {
        assignError = (err as Error).message;
      }
      res.json({ ...answers, assignError, deleted: s.delete('plain'), hasAfter: s.has('plain') });
    });
    const res = await request(app).get('/native');
    expect(res.body).toEqual({
      get: { name: 'bob' },
      has: true,
      keys: ['profile', 'plain'],
      sessionID: true,
      isNew: true,
      url: true,
      expiresAt: true,
      apiWins: 'function',
      inApi: true,
      sameGet: true,
      assignError: expect.stringMatching(/req\.session\.save is part of the session's API/),
      deleted: true,
      hasAfter: false,
    });
  }, QUICK);

  it('regenerate, save, destroy and reload: callback form returns the session, promise form without one', async () => {
    const { app, middleware } = build();
    app.get('/login', (req, res, next) => {
      const s = es(req);
      const before = s.id;
      s.visits.count += 1; // in place, before regenerate
      const returned = s.regenerate((err) => {
        if (err) return next(err);
        // As express-session's: req.session is a new, empty session; the old object reads as it was.
        const now = es(req);
        res.json({ returnedSelf: returned === s, replaced: now !== s, changed: now.id !== before, visits: now.visits ?? null, old: s.visits, isNew: now.isNew });
      });
    });
    app.get('/init', (req, res) => {
      es(req).visits = { count: 1 };
      res.end();
    });
    app.get('/save', (req, res, next) => {
      es(req).saved = 'yes';
      const returned = es(req).save((err) => (err ? next(err) : res.json({ returnedSelf: returned === es(req) })));
    });
    app.get('/promises', async (req, res) => {
      const s = es(req);
      s.temp = { n: 1 };
      const saved = await s.save();
      s.temp.n = 2; // unsaved in-place change: reload drops it
      await s.reload();
      const afterReload = s.temp;
      const before = s.id;
      await s.regenerate();
      const now = es(req);
      res.json({ saved, afterReload, regenerated: now.id !== before, dropped: now.temp ?? null, touch: now.touch() === now && now.resetMaxAge() === now });
    });
    app.get('/reload-cb', (req, res, next) => {
      es(req).unsaved = 1;
      es(req).reload((err) => (err ? next(err) : res.json({ unsaved: 'unsaved' in es(req) })));
    });
    app.get('/logout', (req, res, next) => {
      const s = es(req);
      s.destroy((err) => {
        if (err) return next(err);
        res.json({ stillThere: (req.session as unknown) === s, keys: Object.keys(s) });
      });
    });
    const init = await request(app).get('/init');
    const first = cookiePair(init);

    const login = await request(app).get('/login').set('Cookie', first);
    expect(login.body).toEqual({ returnedSelf: true, replaced: true, changed: true, visits: null, old: { count: 2 }, isNew: true });
    const second = cookiePair(login);
    expect(idOf(second)).not.toBe(idOf(first));
    expect((await request(app).get('/show').set('Cookie', first)).body.keys).toEqual(['cookie']); // the old id is dead

    expect((await request(app).get('/save').set('Cookie', second)).body).toEqual({ returnedSelf: true });
    const promises = await request(app).get('/promises').set('Cookie', second);
    expect(promises.body).toEqual({ saved: true, afterReload: { n: 1 }, regenerated: true, dropped: null, touch: true });
    const third = cookiePair(promises);
    expect((await request(app).get('/reload-cb').set('Cookie', third)).body).toEqual({ unsaved: false });
    expect((await request(app).get('/show').set('Cookie', third)).body.keys).toEqual(['cookie']); // each regenerate started empty

    const logout = await request(app).get('/logout').set('Cookie', third);
    expect(logout.body).toEqual({ stillThere: true, keys: ['cookie'] }); // express-session would leave req.session undefined
    expect(setCookie(logout)).toMatch(/Max-Age=0|Expires=Thu, 01 Jan 1970/);
    expect(await middleware.manager.count()).toBe(0);
  }, QUICK);

  it('after regenerate, the replaced req.session reads its data as it was and refuses writes; a for-in copy (keepSessionInfo) carries it over', async () => {
    const clock = new FakeClock(Date.now());
    const { app } = build({ clock: clock.now, maxLifetime: 3600 });
    app.get('/init', (req, res) => {
      es(req).user = 'ann';
      es(req).cart = { items: ['apple'] };
      es(req).cookie.maxAge = 2 * DAY * 1000; // remember-me
      res.end();
    });
    app.get('/regen', async (req, res) => {
      const old = es(req);
      const before = old.id;
      old.cart.items.push('pear'); // in place, unsaved
      old.note = 'unsaved';
      await old.regenerate();
      const now = es(req);
      const fresh = { replaced: now !== old, newId: now.id !== before && now.id === req.sessionID, keys: Object.keys(now), user: now.user ?? null, has: now.has('cart') };
      const kept = {
        id: old.id === before && old.sessionID === before,
        user: old.user,
        cart: old.cart,
        note: old.note,
        keys: Object.keys(old),
        get: old.get('cart'),
        has: old.has('user') && 'user' in old,
        listed: [...old.keys()],
        json: JSON.parse(JSON.stringify(old)).cart,
        cookie: old.cookie.maxAge > DAY * 1000,
      };
      const errors: string[] = [];
      const attempts = [
        () => (old.user = 'bob'),
        () => delete old.user,
        () => Object.defineProperty(old, 'x', { value: 1 }),
        () => old.set('user', 'bob'),
        () => old.save(),
        () => old.regenerate(),
        () => (old.cookie.maxAge = 1000),
      ];
      for (const attempt of attempts) {
        try {
          attempt();
          errors.push('no error');
        } catch (err) {
          errors.push(`${(err as Error).constructor.name}: ${(err as Error).message}`);
        }
      }
      // Passport's keepSessionInfo: utils-merge copies every enumerable property (cookie included) onto the new req.session.
      for (const key in old) now[key] = old[key];
      res.json({ fresh, kept, errors, copied: Object.keys(now), stillOld: old.user });
    });
    const init = await request(app).get('/init');
    const res = await request(app).get('/regen').set('Cookie', cookiePair(init));
    expect(res.status).toBe(200);
    expect(res.body.fresh).toEqual({ replaced: true, newId: true, keys: ['cookie'], user: null, has: false });
    expect(res.body.kept).toEqual({
      id: true,
      user: 'ann',
      cart: { items: ['apple', 'pear'] },
      note: 'unsaved',
      keys: ['cookie', 'user', 'cart', 'note'],
      get: { items: ['apple', 'pear'] },
      has: true,
      listed: ['user', 'cart', 'note'],
      json: { items: ['apple', 'pear'] },
      cookie: true,
    });
    expect(res.body.errors).toHaveLength(7);
    for (const error of res.body.errors) expect(error).toMatch(/^TypeError: \[session-manager\] .*regenerate\(\) replaced this req\.session/);
    expect(res.body.copied).toEqual(['cookie', 'user', 'cart', 'note']);
    expect(res.body.stillOld).toBe('ann');
    expect(maxAgeOf(setCookie(res))).toBe(2 * DAY); // the lifetime moves with the session (not data)

    const next = await request(app).get('/show').set('Cookie', cookiePair(res));
    expect(next.body.data).toMatchObject({ user: 'ann', cart: { items: ['apple', 'pear'] }, note: 'unsaved' });
    expect((await request(app).get('/show').set('Cookie', cookiePair(init))).body.keys).toEqual(['cookie']); // the old id is dead
  }, QUICK);

  it('regenerate drops keys a concurrent request stored after this one loaded', async () => {
    const { app } = build();
    const hold = deferred();
    const entered = deferred();
    app.get('/init', (req, res) => {
      es(req).user = 'ann';
      res.end();
    });
    app.get('/late', (req, res) => {
      es(req).late = 'from another request';
      res.end();
    });
    app.get('/logout', async (req, res) => {
      entered.resolve();
      await hold.promise; // /late commits meanwhile
      await es(req).regenerate();
      res.json({ keys: Object.keys(es(req)) });
    });
    const cookie = cookiePair(await request(app).get('/init'));
    const logout = request(app).get('/logout').set('Cookie', cookie).then((r) => r);
    await entered.promise;
    await request(app).get('/late').set('Cookie', cookie);
    hold.resolve();
    const res = await logout;
    expect(res.body).toEqual({ keys: ['cookie'] });
    expect((await request(app).get('/show').set('Cookie', cookiePair(res))).body.keys).toEqual(['cookie']);
  }, QUICK);

  it('callback errors reach the callback (a store failure), and a bare call never crashes the process', async () => {
    const provider = new RecordingProvider();
    const { app } = build({ provider });
    app.get('/init', (req, res) => {
      es(req).n = 1;
      res.end();
    });
    app.get('/fail', (req, res) => {
      provider.failing.add('update');
      es(req).n = 2;
      es(req).save((err) => {
        provider.failing.clear();
        res.json({ error: err instanceof Error ? err.message : null });
      });
    });
    app.get('/fire', async (req, res) => {
      provider.failing.add('update');
      es(req).n = 3;
      es(req).save(); // fire and forget, as express-session apps do: no unhandled rejection
      await new Promise((resolve) => setTimeout(resolve, 20));
      provider.failing.clear();
      res.json({ ok: true });
    });
    const cookie = cookiePair(await request(app).get('/init'));
    const res = await request(app).get('/fail').set('Cookie', cookie);
    expect(res.body.error).toMatch(/update/);
    expect((await request(app).get('/fire').set('Cookie', cookie)).body).toEqual({ ok: true });
  }, QUICK);

  it('cookie.maxAge = 30 days remembers: Set-Cookie Max-Age ≈ 30 days and the session outlives maxLifetime', async () => {
    const clock = new FakeClock(Date.now());
    const { app } = build({ provider: 'memory', clock: clock.now, maxLifetime: 3600 });
    app.post('/login', (req, res) => {
      es(req).user = 'ann';
      if (req.query.remember) es(req).cookie.maxAge = 30 * DAY * 1000;
      const { cookie } = es(req);
      res.json({ maxAge: cookie.maxAge, expires: cookie.expires.getTime(), originalMaxAge: cookie.originalMaxAge });
    });
    app.get('/me', (req, res) => res.json({ user: es(req).user ?? null, maxAge: es(req).cookie.maxAge }));
    app.post('/forget', (req, res) => {
      es(req).cookie.maxAge = null;
      res.json({ maxAge: es(req).cookie.maxAge });
    });

    const remembered = await request(app).post('/login?remember=1');
    expect(remembered.body).toEqual({ maxAge: 30 * DAY * 1000, expires: clock.now() + 30 * DAY * 1000, originalMaxAge: 30 * DAY * 1000 });
    expect(maxAgeOf(setCookie(remembered))).toBe(30 * DAY);
    const plain = await request(app).post('/login');
    expect(maxAgeOf(setCookie(plain))).toBe(3600);
    expect(plain.body.originalMaxAge).toBe(3600 * 1000);

    clock.advance(2 * 3600); // past maxLifetime
    const me = await request(app).get('/me').set('Cookie', cookiePair(remembered));
    expect(me.body.user).toBe('ann');
    expect(me.body.maxAge).toBeGreaterThan(29 * DAY * 1000);
    expect((await request(app).get('/me').set('Cookie', cookiePair(plain))).body.user).toBeNull();

    const forget = await request(app).post('/forget').set('Cookie', cookiePair(remembered));
    expect(forget.body.maxAge).toBe(3600 * 1000);
    expect(maxAgeOf(setCookie(forget))).toBe(3600);
  }, QUICK);

  it('cookie: read-only attributes say so; a bad maxAge is a TypeError; expires takes a Date', async () => {
    const clock = new FakeClock(Date.now());
    const { app } = build({ clock: clock.now, cookie: { sameSite: 'strict', path: '/' } });
    app.get('/cookie', (req, res) => {
      const { cookie } = es(req);
      const errors: string[] = [];
      for (const attempt of [() => ((cookie as { secure: boolean }).secure = true), () => (cookie.maxAge = -1), () => (cookie.expires = new Date(0))]) {
        try {
          attempt();
        } catch (err) {
          errors.push(`${(err as Error).constructor.name}: ${(err as Error).message}`);
        }
      }
      cookie.expires = new Date(clock.now() + 2 * DAY * 1000);
      res.json({ errors, maxAge: cookie.maxAge, sameSite: cookie.sameSite, data: JSON.parse(JSON.stringify(cookie)) });
    });
    const res = await request(app).get('/cookie');
    expect(res.body.errors).toEqual([
      expect.stringMatching(/^TypeError: .*cookie\.secure is read-only/),
      expect.stringMatching(/^TypeError: .*cookie\.maxAge takes a positive number/),
      expect.stringMatching(/^TypeError: .*cookie\.expires takes a future Date/),
    ]);
    expect(res.body.maxAge).toBe(2 * DAY * 1000);
    expect(res.body.sameSite).toBe('strict');
    expect(res.body.data).toEqual({ originalMaxAge: 2 * DAY * 1000, partitioned: false, expires: new Date(clock.now() + 2 * DAY * 1000).toISOString(), secure: false, httpOnly: true, path: '/', sameSite: 'strict' });
  }, QUICK);

  it('without compat, req.session is the native Session', async () => {
    const app = expressX();
    const middleware = sessions({ secret: SECRET });
    middlewares.push(middleware);
    app.use(middleware);
    app.get('/', (req, res) => res.json({ name: req.session.constructor.name, cookie: (req.session as unknown as Record<string, unknown>).cookie ?? null }));
    expect((await request(app).get('/')).body).toEqual({ name: 'Session', cookie: null });
  }, QUICK);
});
