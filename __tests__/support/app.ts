import type { Express, NextFunction, Request, Response } from 'express';
import type express5 from 'express';
import { sessions, type SessionMiddleware } from '../../lib/index';
import type { SessionOptions } from '../../lib/options';

export interface TestApp {
  app: Express;
  middleware: SessionMiddleware;
  /** Routes that await this before continuing (set per test). */
  hold: { before?: Promise<void> };
}

/** The routes every HTTP test uses, on the given Express major, with an error handler that shows `err.status`. */
export function buildApp(express: typeof express5, options: SessionOptions = {}): TestApp {
  const app = express();
  const middleware = sessions({ onError: () => {}, ...options });
  const hold: TestApp['hold'] = {};
  app.use(middleware);

  app.get('/read', (req, res) => {
    res.json({ username: req.session.get('username') ?? null });
  });
  app.get('/whoami', (req, res) => {
    res.json({ sessionID: req.sessionID, isNew: req.session.isNew, keys: [...req.session.keys()] });
  });
  app.get('/get/:key', (req, res) => {
    res.json({ value: req.session.get(String(req.params.key)) ?? null });
  });
  app.get('/set/:key/:value', async (req, res) => {
    if (hold.before) await hold.before;
    req.session.set(String(req.params.key), req.params.value);
    res.json({ ok: true });
  });
  app.get('/delete/:key', (req, res) => {
    req.session.delete(String(req.params.key));
    res.json({ ok: true });
  });
  app.get('/incr', (req, res) => {
    const count = ((req.session.get('countnum') as number | undefined) ?? 0) + 1;
    req.session.set('countnum', count);
    res.json({ count });
  });
  app.post('/login', async (req, res) => {
    await req.session.regenerate();
    req.session.set('username', 'alice');
    res.redirect('/read');
  });
  app.post('/logout', async (req, res) => {
    await req.destroySession();
    res.redirect('/read');
  });
  app.get('/save-then-stream', async (req, res) => {
    req.session.set('before', 1);
    await req.session.save();
    res.write('part one;');
    req.session.set('during', 2);
    setTimeout(() => res.end('part two'), 5);
  });
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err.status ?? 500).json({ error: err.message });
  });
  return { app, middleware, hold };
}
