// Passport + passport-local, unchanged, on compat: 'express-session': login
// regenerates the id (the old cookie no longer authenticates) and, as with
// express-session, drops the rest of the session unless keepSessionInfo;
// req.user on later requests, req.logout(cb) (which drops the previous user's
// other keys), req.login(user, cb) in a custom route.
import type express from 'express';
import { Passport } from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import request from 'supertest';
import { sessions, type SessionMiddleware } from '../../lib/index';
import { cookiePair, EXPRESS_VERSIONS, idOf, SECRET, setCookie } from '../support/http';
import { es, QUICK } from './support';

interface User {
  id: number;
  username: string;
  password: string;
}
const USERS: User[] = [
  { id: 1, username: 'ann', password: 'secret-ann' },
  { id: 2, username: 'bob', password: 'secret-bob' },
];

describe.each(EXPRESS_VERSIONS)('passport on %s', (_name, expressX) => {
  const middlewares: SessionMiddleware[] = [];
  afterAll(() => Promise.all(middlewares.map((m) => m.manager.close())));

  function build(): express.Express {
    const passport = new Passport();
    passport.use(
      new LocalStrategy((username, password, done) => {
        const user = USERS.find((each) => each.username === username && each.password === password);
        done(null, user ?? false);
      }),
    );
    passport.serializeUser((user, done) => done(null, (user as User).id));
    passport.deserializeUser((id: number, done) => done(null, USERS.find((each) => each.id === id) ?? false));

    const middleware = sessions({ compat: 'express-session', secret: SECRET });
    middlewares.push(middleware);
    const app = expressX();
    app.use(expressX.urlencoded({ extended: false }));
    app.use(middleware);
    app.use(passport.initialize());
    app.use(passport.session());
    const name = (req: express.Request): string | null => (req.user as User | undefined)?.username ?? null;

    app.get('/', (req, res) => {
      es(req).visits = (es(req).visits ?? 0) + 1;
      res.json({ user: name(req), visits: es(req).visits });
    });
    app.post('/login', passport.authenticate('local', { failureRedirect: '/login?failed=1' }), (req, res) => res.json({ user: name(req) }));
    app.post('/login-keep', passport.authenticate('local', { keepSessionInfo: true }), (req, res) => res.json({ user: name(req), visits: es(req).visits }));
    app.get('/me', (req, res) => res.json({ user: name(req), authenticated: req.isAuthenticated() }));
    app.post('/cart/:item', (req, res) => {
      es(req).cart = es(req).cart ?? { items: [] };
      (es(req).cart.items as string[]).push(req.params.item); // in place
      res.json(es(req).cart);
    });
    app.get('/cart', (req, res) => res.json({ user: name(req), cart: es(req).cart ?? null }));
    app.post('/logout', (req, res, next) => {
      req.logout((err) => (err ? next(err) : res.redirect('/')));
    });
    app.post('/as/:id', (req, res, next) => {
      const user = USERS.find((each) => each.id === Number(req.params.id));
      const before = req.sessionID;
      req.login(user as User, (err) => (err ? next(err) : res.json({ user: name(req), regenerated: req.sessionID !== before })));
    });
    return app;
  }

  it('logs in with a new session id, knows req.user after, logs out', async () => {
    const app = build();
    const visit = await request(app).get('/');
    expect(visit.body).toEqual({ user: null, visits: 1 });
    const anonymous = cookiePair(visit);

    const login = await request(app).post('/login').set('Cookie', anonymous).type('form').send({ username: 'ann', password: 'secret-ann' });
    expect(login.status).toBe(200);
    expect(login.body).toEqual({ user: 'ann' });
    const loggedIn = cookiePair(login);
    expect(idOf(loggedIn)).not.toBe(idOf(anonymous)); // regenerated: session fixation is off the table

    expect((await request(app).get('/me').set('Cookie', loggedIn)).body).toEqual({ user: 'ann', authenticated: true });
    expect((await request(app).get('/me').set('Cookie', anonymous)).body).toEqual({ user: null, authenticated: false }); // the old id is dead
    // As express-session's: the regenerate at login drops the anonymous visits (no keepSessionInfo).
    expect((await request(app).get('/').set('Cookie', loggedIn)).body).toEqual({ user: 'ann', visits: 1 });

    const logout = await request(app).post('/logout').set('Cookie', loggedIn);
    expect(logout.status).toBe(302);
    expect(logout.headers.location).toBe('/');
    expect((await request(app).get('/me').set('Cookie', loggedIn)).body).toEqual({ user: null, authenticated: false });
    const after = setCookie(logout) ? cookiePair(logout) : loggedIn;
    expect(idOf(after)).not.toBe(idOf(loggedIn)); // Passport regenerates at logout too
    expect((await request(app).get('/me').set('Cookie', after)).body).toEqual({ user: null, authenticated: false });
  }, QUICK);

  it("keepSessionInfo (Passport's merge of the replaced req.session into the new one) keeps the visits", async () => {
    const app = build();
    const anonymous = cookiePair(await request(app).get('/'));
    const login = await request(app).post('/login-keep').set('Cookie', anonymous).type('form').send({ username: 'bob', password: 'secret-bob' });
    expect(login.body).toEqual({ user: 'bob', visits: 1 });
    expect(idOf(cookiePair(login))).not.toBe(idOf(anonymous));
    expect((await request(app).get('/me').set('Cookie', cookiePair(login))).body.user).toBe('bob');
  }, QUICK);

  it('keepSessionInfo: a cart filled before login is kept with it and dropped without it, as with express-session', async () => {
    const app = build();
    const cartAfterLogin = async (path: string): Promise<unknown> => {
      const anonymous = cookiePair(await request(app).post('/cart/apple'));
      expect((await request(app).post('/cart/pear').set('Cookie', anonymous)).body).toEqual({ items: ['apple', 'pear'] });
      const login = await request(app).post(path).set('Cookie', anonymous).type('form').send({ username: 'bob', password: 'secret-bob' });
      expect(login.status).toBe(200);
      expect(idOf(cookiePair(login))).not.toBe(idOf(anonymous));
      expect((await request(app).get('/cart').set('Cookie', anonymous)).body).toEqual({ user: null, cart: null }); // the old id is dead either way
      return (await request(app).get('/cart').set('Cookie', cookiePair(login))).body;
    };
    expect(await cartAfterLogin('/login-keep')).toEqual({ user: 'bob', cart: { items: ['apple', 'pear'] } });
    expect(await cartAfterLogin('/login')).toEqual({ user: 'bob', cart: null });
  }, QUICK);

  it("logout drops the previous user's other keys: the next request has no cart", async () => {
    const app = build();
    const login = await request(app).post('/login').type('form').send({ username: 'ann', password: 'secret-ann' });
    const ann = cookiePair(login);
    await request(app).post('/cart/book').set('Cookie', ann);
    expect((await request(app).get('/cart').set('Cookie', ann)).body).toEqual({ user: 'ann', cart: { items: ['book'] } });

    const logout = await request(app).post('/logout').set('Cookie', ann);
    expect(logout.status).toBe(302);
    const after = setCookie(logout) ? cookiePair(logout) : ann;
    expect((await request(app).get('/cart').set('Cookie', after)).body).toEqual({ user: null, cart: null });
    expect((await request(app).get('/cart').set('Cookie', ann)).body).toEqual({ user: null, cart: null }); // the old id is dead

    // The next user on this browser starts clean too.
    const bob = await request(app).post('/login').set('Cookie', after).type('form').send({ username: 'bob', password: 'secret-bob' });
    expect((await request(app).get('/cart').set('Cookie', cookiePair(bob))).body).toEqual({ user: 'bob', cart: null });
  }, QUICK);

  it('a wrong password fails without a user', async () => {
    const app = build();
    const res = await request(app).post('/login').type('form').send({ username: 'ann', password: 'nope' });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/login?failed=1');
    expect(setCookie(res)).toBeUndefined(); // nothing was stored
  }, QUICK);

  it('req.login(user, cb) in a custom route, also switching users', async () => {
    const app = build();
    const first = await request(app).post('/as/1');
    expect(first.body).toEqual({ user: 'ann', regenerated: true });
    const ann = cookiePair(first);
    expect((await request(app).get('/me').set('Cookie', ann)).body.user).toBe('ann');

    const second = await request(app).post('/as/2').set('Cookie', ann);
    expect(second.body).toEqual({ user: 'bob', regenerated: true });
    const bob = cookiePair(second);
    expect((await request(app).get('/me').set('Cookie', bob)).body.user).toBe('bob');
    expect((await request(app).get('/me').set('Cookie', ann)).body.user).toBeNull();
  }, QUICK);
});
