// The migration guide, as a test: one Express + Passport app (migration/app.js,
// plain JavaScript written for express-session), built on express-session and
// then with only the session line replaced by
// sessions({ compat: 'express-session', secret }). One script of a user's
// visit runs against both; what a client observes is the same.
import type { Server } from 'node:http';
import request, { type Response } from 'supertest';
import { sessions, type SessionMiddleware } from '../../lib/index';
import { EXPRESS_VERSIONS, SECRET } from '../support/http';
import { QUICK } from './support';

// Plain require: no @types/express-session in this program (see the README's Types).
const session = require('express-session') as (options: Record<string, unknown>) => unknown;
const { createApp } = require('./migration/app') as { createApp: (express: unknown, sessionMiddleware: unknown) => Server };

/** A browser's cookie jar, whatever the cookie is called. */
class Jar {
  cookies = new Map<string, string>();
  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
  take(res: Response): void {
    for (const line of (res.headers['set-cookie'] as unknown as string[] | undefined) ?? []) {
      const [pair, ...attributes] = line.split(';').map((part) => part.trim());
      const name = pair.slice(0, pair.indexOf('='));
      const gone = attributes.some((a) => /^max-age=0$/i.test(a) || (/^expires=/i.test(a) && Date.parse(a.slice(8)) <= Date.now()));
      if (gone) this.cookies.delete(name);
      else this.cookies.set(name, pair.slice(name.length + 1));
    }
  }
  copy(): Jar {
    const jar = new Jar();
    jar.cookies = new Map(this.cookies);
    return jar;
  }
}

interface Step {
  step: string;
  status: number;
  location: string | undefined;
  body: unknown;
}

/** One visit: browse, fail a login, log in, use the profile, log out; and replay stale cookies. */
async function script(app: Server): Promise<{ steps: Step[]; loginChangedId: boolean }> {
  const jar = new Jar();
  const steps: Step[] = [];
  const go = async (step: string, method: 'get' | 'post', path: string, form?: Record<string, string>, from = jar): Promise<Response> => {
    let call = request(app)[method](path);
    if (from.cookies.size > 0) call = call.set('Cookie', from.header());
    if (form) call = call.type('form').send(form);
    const res = await call;
    from.take(res);
    steps.push({ step, status: res.status, location: res.headers.location, body: res.body });
    return res;
  };

  await go('home', 'get', '/');
  await go('home again', 'get', '/');
  await go('profile before login', 'get', '/profile');
  await go('wrong password', 'post', '/login/password', { username: 'ann', password: 'wrong' });
  await go('login page: message', 'get', '/login');
  await go('login page: message read', 'get', '/login');
  await go('unknown user (flash)', 'post', '/login/flash', { username: 'nobody', password: 'x' });
  await go('login page: flash', 'get', '/login');
  const beforeLogin = jar.copy();
  await go('login', 'post', '/login/password', { username: 'ann', password: 'secret-ann' });
  const loginChangedId = jar.header() !== beforeLogin.header();
  await go('profile', 'get', '/profile');
  await go('profile again', 'get', '/profile');
  await go('save preferences', 'post', '/preferences', { theme: 'dark' });
  await go('preferences', 'get', '/preferences');
  await go('preferences again', 'get', '/preferences');
  await go('profile with the pre-login cookie', 'get', '/profile', undefined, beforeLogin.copy());
  const beforeLogout = jar.copy();
  await go('logout', 'post', '/logout');
  await go('profile after logout', 'get', '/profile');
  await go('profile with the pre-logout cookie', 'get', '/profile', undefined, beforeLogout.copy());
  await go('login page after logout', 'get', '/login');
  return { steps, loginChangedId };
}

describe.each(EXPRESS_VERSIONS)('migrating from express-session on %s', (_name, expressX) => {
  const middlewares: SessionMiddleware[] = [];
  afterAll(() => Promise.all(middlewares.map((m) => m.manager.close())));

  const onExpressSession = (): Server => createApp(expressX, session({ secret: SECRET, resave: false, saveUninitialized: false }));
  const onSessionManager = (): Server => {
    const middleware = sessions({ compat: 'express-session', secret: SECRET });
    middlewares.push(middleware);
    return createApp(expressX, middleware);
  };

  it('the same script sees the same results', async () => {
    const before = await script(onExpressSession());
    const after = await script(onSessionManager());

    // The script itself does what it says (so the comparison compares something).
    const byName = new Map(before.steps.map((step) => [step.step, step]));
    expect(byName.get('home again')?.body).toEqual({ views: 2, user: null });
    expect(byName.get('login page: message')?.body).toEqual({ messages: ['Invalid username or password.'], errors: [] });
    expect(byName.get('login page: flash')?.body).toEqual({ messages: [], errors: ['Invalid username or password.'] });
    expect(byName.get('login')).toMatchObject({ status: 302, location: '/profile' });
    expect(byName.get('profile again')?.body).toEqual({ name: 'Ann', profileViews: 2, passport: { user: 1 } });
    expect(byName.get('preferences')?.body).toEqual({ preferences: { theme: 'dark' }, info: ['Saved.'] });
    expect(byName.get('preferences again')?.body).toEqual({ preferences: { theme: 'dark' }, info: [] });
    for (const step of ['profile before login', 'profile with the pre-login cookie', 'profile after logout', 'profile with the pre-logout cookie']) {
      expect(byName.get(step)).toMatchObject({ status: 302, location: '/login' });
    }
    expect(byName.get('login page after logout')?.body).toEqual({ messages: [], errors: [] });
    expect(before.loginChangedId).toBe(true);

    expect(after).toEqual(before);
  }, QUICK);

  it('login drops what was in the session unless keepSessionInfo, on both (a cart filled before login)', async () => {
    const cartAfterLogin = async (app: Server, login: string): Promise<unknown[]> => {
      const jar = new Jar();
      const bodies: unknown[] = [];
      const go = async (res: Promise<Response>): Promise<void> => {
        const done = await res;
        jar.take(done);
        bodies.push(done.status === 302 ? `-> ${done.headers.location}` : done.body);
      };
      await go(request(app).get('/')); // views: 1
      await go(request(app).post('/cart').type('form').send({ item: 'apple' }).set('Cookie', jar.header()));
      await go(request(app).post(login).set('Cookie', jar.header()).type('form').send({ username: 'ann', password: 'secret-ann' }));
      await go(request(app).get('/cart').set('Cookie', jar.header()));
      await go(request(app).get('/').set('Cookie', jar.header()));
      return bodies;
    };
    for (const [login, expected] of [
      ['/login/keep', [{ views: 1, user: null }, '-> /cart', '-> /cart', { cart: ['apple'], user: 'ann' }, { views: 2, user: 'ann' }]],
      ['/login/password', [{ views: 1, user: null }, '-> /cart', '-> /profile', { cart: null, user: 'ann' }, { views: 1, user: 'ann' }]],
    ] as const) {
      const before = await cartAfterLogin(onExpressSession(), login);
      expect(before).toEqual(expected);
      expect(await cartAfterLogin(onSessionManager(), login)).toEqual(before);
    }
  }, QUICK);

  it("logout drops the previous user's other keys, on both: no cart after, and the next user starts clean", async () => {
    // Ann fills a cart and browses, logs out; Bob logs in on the same browser.
    const afterLogout = async (app: Server): Promise<unknown[]> => {
      const jar = new Jar();
      const read = async (path: string): Promise<unknown> => {
        const res = await request(app).get(path).set('Cookie', jar.header());
        jar.take(res);
        return res.body;
      };
      jar.take(await request(app).post('/login/password').type('form').send({ username: 'ann', password: 'secret-ann' }));
      jar.take(await request(app).post('/cart').set('Cookie', jar.header()).type('form').send({ item: 'book' }));
      const during = [await read('/cart'), await read('/profile')];
      jar.take(await request(app).post('/logout').set('Cookie', jar.header()));
      const after = await read('/cart');
      jar.take(await request(app).post('/login/password').set('Cookie', jar.header()).type('form').send({ username: 'bob', password: 'secret-bob' }));
      return [...during, after, await read('/profile'), await read('/cart')];
    };
    const before = await afterLogout(onExpressSession());
    expect(before).toEqual([
      { cart: ['book'], user: 'ann' },
      { name: 'Ann', profileViews: 1, passport: { user: 1 } },
      { cart: null, user: null },
      { name: 'Bob', profileViews: 1, passport: { user: 2 } }, // Ann's count did not carry over
      { cart: null, user: 'bob' },
    ]);
    expect(await afterLogout(onSessionManager())).toEqual(before);
  }, QUICK);
});
