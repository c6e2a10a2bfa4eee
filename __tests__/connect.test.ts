import connect from 'connect';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import { Readable } from 'node:stream';
import request from 'supertest';
import { sessions, type SessionRequest } from '../lib/index';
import { storageKey } from '../lib/manager';
import { listen } from './support/http';

describe('without Express', () => {
  it('works on a bare connect() app, without cookie-parser', async () => {
    const app = connect();
    app.use(sessions());
    app.use((req: IncomingMessage, res: ServerResponse) => {
      const count = (((req as SessionRequest).session.get('count') as number | undefined) ?? 0) + 1;
      (req as SessionRequest).session.set('count', count);
      res.setHeader('Location', '/');
      res.statusCode = 302;
      res.end(String(count));
    });
    const agent = request.agent(app);
    expect((await agent.get('/')).text).toBe('1');
    expect((await agent.get('/')).text).toBe('2');
  });

  it('works in a plain http.createServer handler, passing errors to next', async () => {
    const middleware = sessions();
    const errors: unknown[] = [];
    const { server, url } = await listen((req, res) => {
      middleware(req, res, (err) => {
        if (err) {
          errors.push(err);
          res.statusCode = 500;
          return res.end();
        }
        (req as SessionRequest).session.set('visits', (((req as SessionRequest).session.get('visits') as number | undefined) ?? 0) + 1);
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end(`visits=${String((req as SessionRequest).session.get('visits'))}`);
      });
    });
    try {
      const agent = request.agent(url);
      expect((await agent.get('/')).text).toBe('visits=1');
      expect((await agent.get('/')).text).toBe('visits=2');
      expect(errors).toEqual([]);
    } finally {
      server.close();
      await middleware.manager.close();
    }
  });

  it('saves before a piped stream completes, and sets the cookie before the first chunk', async () => {
    const middleware = sessions();
    const { server, url } = await listen((req, res) => {
      middleware(req, res, () => {
        (req as SessionRequest).session.set('downloaded', true);
        pipeline(Readable.from(['a', 'b', 'c']), res, () => {});
      });
    });
    try {
      const res = await request(url).get('/');
      expect(res.text).toBe('abc');
      const cookie = (res.headers['set-cookie'] as unknown as string[])[0].split(';')[0];
      const sid = cookie.slice(4);
      const stored = await middleware.manager.provider.read(storageKey(sid));
      expect(stored?.values.get('downloaded')).toBe('true');
    } finally {
      server.close();
      await middleware.manager.close();
    }
  });
});

describe('alongside other middleware', () => {
  it('still saves before the response when an earlier middleware wrapped res.write/end (as compression does)', async () => {
    const express = (await import('express')).default;
    const app = express();
    app.use((_req, res, next) => {
      const { write, end } = res;
      const upper = (chunk: unknown): unknown => (typeof chunk === 'string' || Buffer.isBuffer(chunk) ? String(chunk).toUpperCase() : chunk);
      res.write = function (this: typeof res, chunk: unknown, ...rest: unknown[]) {
        return (write as (...args: unknown[]) => boolean).call(this, upper(chunk), ...rest);
      } as typeof res.write;
      res.end = function (this: typeof res, chunk?: unknown, ...rest: unknown[]) {
        return (end as (...args: unknown[]) => typeof res).call(this, upper(chunk), ...rest);
      } as typeof res.end;
      next();
    });
    const middleware = sessions();
    app.use(middleware);
    app.get('/', (req, res) => {
      (req as SessionRequest).session.set('n', (((req as SessionRequest).session.get('n') as number | undefined) ?? 0) + 1);
      res.send(`count ${String((req as SessionRequest).session.get('n'))}`);
    });
    const agent = request.agent(app);
    expect((await agent.get('/')).text).toBe('COUNT 1');
    expect((await agent.get('/')).text).toBe('COUNT 2');
    await middleware.manager.close();
  });

  it('leaves responses of routes outside the middleware alone', async () => {
    const express = (await import('express')).default;
    const app = express();
    app.get('/outside', (req, res) => res.json({ session: (req as SessionRequest).session === undefined, id: (req as SessionRequest).sessionID ?? null }));
    const middleware = sessions();
    app.use(middleware);
    app.get('/inside', (req, res) => {
      (req as SessionRequest).session.set('a', 1);
      res.send('ok');
    });
    await request(app).get('/inside').expect(200); // the response methods are intercepted from here on
    const outside = await request(app).get('/outside').expect(200);
    expect(outside.body).toEqual({ session: true, id: null });
    expect(outside.headers['set-cookie']).toBeUndefined();
    await middleware.manager.close();
  });

  it('lets another library assign (req as SessionRequest).sessionID and (req as SessionRequest).session of its own', async () => {
    const { server, url } = await listen((req, res) => {
      const theirs = req as unknown as { sessionID: string; session: unknown };
      theirs.sessionID = 'theirs';
      theirs.session = 'theirs too';
      res.end(`${theirs.sessionID} ${String(theirs.session)}`);
    });
    try {
      expect((await request(url).get('/')).text).toBe('theirs theirs too');
    } finally {
      server.close();
    }
  });
});
