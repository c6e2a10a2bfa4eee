// The Express fast path: on a root app with no sub-app, the plumbing lives on
// the app's own request/response prototypes (no per-request properties, which
// cost ~2 µs each on Express's prototype-swapped objects); anywhere else, on
// the request and response themselves. Both behave alike (the rest of the
// suite runs on both).
import express from 'express';
import request from 'supertest';
import { sessions } from '../lib/index';
import { EXPRESS_VERSIONS } from './support/http';

describe.each(EXPRESS_VERSIONS)('where the plumbing lives on %s', (_name, expressVersion) => {
  const probe = (req: express.Request, res: express.Response): void => {
    req.session.set('n', 1);
    res.json({ ownSession: Object.hasOwn(req, 'session'), ownEnd: Object.hasOwn(res, 'end'), session: typeof req.session.get });
  };

  it('on the app\'s own prototypes for a root app without sub-apps', async () => {
    const app = expressVersion();
    const middleware = sessions({ onError: () => undefined });
    app.use(middleware);
    app.get('/', probe);
    const reply = await request(app).get('/');
    expect(reply.body).toEqual({ ownSession: false, ownEnd: false, session: 'function' });
    expect(reply.headers['set-cookie']).toHaveLength(1);
    // Express's shared objects (every app's prototypes' prototype) stay as they were.
    expect(Object.hasOwn(Object.getPrototypeOf(app.response), 'end')).toBe(false);
    expect(Object.hasOwn(Object.getPrototypeOf(app.request), 'session')).toBe(false);
    await middleware.manager.close();
  });

  it('on the request and response themselves once a sub-app is mounted, even one added later', async () => {
    const app = expressVersion();
    const middleware = sessions({ onError: () => undefined });
    app.use(middleware);
    app.get('/', probe);
    expect((await request(app).get('/')).body.ownEnd).toBe(false);
    app.use('/area', expressVersion());
    const reply = await request(app).get('/');
    expect(reply.body).toEqual({ ownSession: true, ownEnd: true, session: 'function' });
    expect(reply.headers['set-cookie']).toHaveLength(1);
    await middleware.manager.close();
  });
});
