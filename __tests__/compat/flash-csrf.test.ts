// connect-flash and csrf-sync, unchanged, on compat: 'express-session'. Both
// keep their state in req.session (flash: an object changed in place).
import type express from 'express';
import flash from 'connect-flash';
import request from 'supertest';
import { sessions, type SessionMiddleware } from '../../lib/index';
import { cookiePair, EXPRESS_VERSIONS, SECRET } from '../support/http';
import { es, QUICK } from './support';

// Loaded without its types: its declarations augment 'express-session', which
// would pull @types/express-session into this program (see the README's Types).
interface CsrfSync {
  generateToken(req: unknown, overwrite?: boolean): string;
  revokeToken(req: unknown): void;
  csrfSynchronisedProtection: express.RequestHandler;
}
const { csrfSync } = require('csrf-sync') as { csrfSync: (options?: object) => CsrfSync };

describe.each(EXPRESS_VERSIONS)('connect-flash and csrf-sync on %s', (_name, expressX) => {
  const middlewares: SessionMiddleware[] = [];
  afterAll(() => Promise.all(middlewares.map((m) => m.manager.close())));

  function base(): express.Express {
    const middleware = sessions({ compat: 'express-session', secret: SECRET });
    middlewares.push(middleware);
    return expressX().use(middleware);
  }

  it('connect-flash: a message survives one redirect and is read once', async () => {
    const app = base();
    app.use(flash());
    app.post('/save', (req, res) => {
      req.flash('info', 'hi');
      req.flash('info', 'and %s', 'more');
      req.flash('error', ['e1', 'e2']);
      res.redirect('/show');
    });
    app.get('/show', (req, res) => res.json({ info: req.flash('info'), keys: Object.keys(es(req).flash ?? {}) }));
    app.get('/all', (req, res) => res.json(req.flash()));

    const saved = await request(app).post('/save');
    expect(saved.status).toBe(302);
    expect(saved.headers.location).toBe('/show');
    const cookie = cookiePair(saved);
    expect((await request(app).get('/show').set('Cookie', cookie)).body).toEqual({ info: ['hi', 'and more'], keys: ['error'] });
    expect((await request(app).get('/show').set('Cookie', cookie)).body).toEqual({ info: [], keys: ['error'] });
    expect((await request(app).get('/all').set('Cookie', cookie)).body).toEqual({ error: ['e1', 'e2'] });
    expect((await request(app).get('/all').set('Cookie', cookie)).body).toEqual({});
  }, QUICK);

  it('csrf-sync: a token from GET lets a POST through; without it (or with another) 403', async () => {
    const { generateToken, revokeToken, csrfSynchronisedProtection } = csrfSync();
    const app = base();
    app.use(expressX.json());
    app.get('/form', (req, res) => res.json({ token: generateToken(req) }));
    app.get('/rotate', (req, res) => res.json({ token: generateToken(req, true) }));
    app.post('/revoke', (req, res) => {
      revokeToken(req); // stores undefined: the key goes
      res.json({ has: 'csrfToken' in es(req) });
    });
    app.post('/transfer', csrfSynchronisedProtection, (_req, res) => res.json({ ok: true }));
    app.use((err: { status?: number; code?: string }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      res.status(err.status ?? 500).json({ code: err.code });
    });

    const form = await request(app).get('/form');
    const cookie = cookiePair(form);
    const { token } = form.body as { token: string };
    expect(token).toMatch(/^[0-9a-f]{256}$/);
    expect((await request(app).get('/form').set('Cookie', cookie)).body.token).toBe(token); // stored, reused

    expect((await request(app).post('/transfer').set('Cookie', cookie).set('x-csrf-token', token).send({})).body).toEqual({ ok: true });
    const missing = await request(app).post('/transfer').set('Cookie', cookie).send({});
    expect(missing.status).toBe(403);
    expect(missing.body).toEqual({ code: 'EBADCSRFTOKEN' });
    expect((await request(app).post('/transfer').set('x-csrf-token', token).send({})).status).toBe(403); // another session

    const rotated = (await request(app).get('/rotate').set('Cookie', cookie)).body.token as string;
    expect(rotated).not.toBe(token);
    expect((await request(app).post('/transfer').set('Cookie', cookie).set('x-csrf-token', token).send({})).status).toBe(403);
    expect((await request(app).post('/transfer').set('Cookie', cookie).set('x-csrf-token', rotated).send({})).status).toBe(200);

    expect((await request(app).post('/revoke').set('Cookie', cookie).set('x-csrf-token', rotated).send({})).body).toEqual({ has: false });
    expect((await request(app).post('/transfer').set('Cookie', cookie).set('x-csrf-token', rotated).send({})).status).toBe(403);
  }, QUICK);
});
