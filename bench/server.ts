/**
 * One benchmark server: an Express 5 app with the same four routes in every
 * mode, run as its own process so the load generator never shares its event
 * loop. Usage: `ts-node bench/server.ts <mode>`; the config (service URLs, a
 * scratch dir) comes as JSON in BENCH_CONFIG. It reports `{ ready: port }`
 * over IPC once it listens, and exits cleanly on SIGTERM (so `--cpu-prof`
 * writes its profile).
 *
 * Routes: GET /read (sends `username`), GET /rmw (increments `counter`),
 * GET /set/:key (sets one named key), POST /login (a new session with
 * `username`), GET /keys (how many `k*` keys the session holds: the lost-update
 * read-back).
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Express, type Request, type Response, type NextFunction } from 'express';
import type { SessionRequest } from '../lib/index';
import { isMode, loadLibrary, SECRET, type BenchConfig, type Mode } from './modes';

/** Shuts the store down; resolves when the process may exit. */
type Closer = () => Promise<void>;

const LOGIN_BODY = express.urlencoded({ extended: false, limit: '1kb' });

/** No sessions at all: the same work minus the session, the ceiling. */
function bareApp(app: Express): Closer {
  let counter = 0;
  const keys = new Set<string>();
  app.get('/read', (_req, res) => {
    res.send('guest');
  });
  app.get('/rmw', (_req, res) => {
    counter += 1;
    res.send(String(counter));
  });
  app.get('/set/:key', (req, res) => {
    keys.add(req.params.key);
    res.send('ok');
  });
  app.get('/keys', (_req, res) => {
    res.send(String(keys.size));
  });
  app.post('/login', LOGIN_BODY, (req, res) => {
    res.send(String(req.body?.username ?? ''));
  });
  return async () => undefined;
}

type ExpressSessionStore = 'memory' | 'memorystore' | 'connect-redis';

/** express-session with resave false, saveUninitialized false, the same secret and a one-hour cookie. */
async function expressSessionApp(app: Express, store: ExpressSessionStore, config: BenchConfig): Promise<Closer> {
  const session = (await import('express-session')).default;
  let closer: Closer = async () => undefined;
  let instance: import('express-session').Store | undefined;
  if (store === 'memorystore') {
    const createMemoryStore = (await import('memorystore')).default;
    const MemoryStore = createMemoryStore(session);
    const memoryStore = new MemoryStore({ checkPeriod: 3_600_000 }); // its README's setting: prune expired entries hourly
    instance = memoryStore;
    closer = async () => memoryStore.stopInterval();
  } else if (store === 'connect-redis') {
    if (config.redisUrl === undefined) throw new Error(config.redisSkip ?? 'no Redis server');
    const { createClient } = await import('redis');
    const { RedisStore } = await import('connect-redis');
    const client = createClient({ url: config.redisUrl });
    client.on('error', (err: Error) => console.error('[bench] redis client:', err.message));
    await client.connect();
    instance = new RedisStore({ client, prefix: 'es:' });
    closer = async () => {
      await client.close();
    };
  }
  app.use(
    session({
      secret: SECRET,
      resave: false,
      saveUninitialized: false,
      store: instance,
      cookie: { maxAge: 3_600_000, httpOnly: true, sameSite: 'lax' },
    }),
  );
  // In this program req.session has express-session's type (bench/express-session-types.d.ts); this is ours.
  type Data = Record<string, unknown>;
  const data = (req: Request): Data => req.session as unknown as Data;
  app.get('/read', (req, res) => {
    res.send(String(data(req).username ?? 'guest'));
  });
  app.get('/rmw', (req, res) => {
    const counter = Number(data(req).counter ?? 0) + 1;
    data(req).counter = counter;
    res.send(String(counter));
  });
  app.get('/set/:key', (req, res) => {
    data(req)[req.params.key as string] = 1;
    res.send('ok');
  });
  app.get('/keys', (req, res) => {
    res.send(String(Object.keys(data(req)).filter((key) => /^k\d+$/.test(key)).length));
  });
  app.post('/login', LOGIN_BODY, (req, res, next) => {
    (req.session as unknown as { regenerate(done: (err: unknown) => void): void }).regenerate((err) => {
      if (err) return next(err);
      data(req).username = String(req.body?.username ?? '');
      res.send('ok');
    });
  });
  return closer;
}

/** Ours, with the named provider, the same secret and a one-hour idle lifetime. */
async function sessionManagerApp(app: Express, provider: string, config: BenchConfig): Promise<Closer> {
  const { sessions } = loadLibrary();
  const providerOptions = await providerOptionsFor(provider, config);
  const middleware = sessions({ provider, providerOptions, secret: SECRET, maxLifetime: 3600 });
  // Fail now, not on the first request, when the provider cannot reach its backend.
  await middleware.manager.count();
  app.use(middleware);
  const session = (req: Request) => (req as unknown as SessionRequest).session;
  app.get('/read', (req, res) => {
    res.send(String(session(req).get('username') ?? 'guest'));
  });
  app.get('/rmw', (req, res) => {
    const counter = Number(session(req).get('counter') ?? 0) + 1;
    session(req).set('counter', counter);
    res.send(String(counter));
  });
  app.get('/set/:key', (req, res) => {
    session(req).set(req.params.key as string, 1);
    res.send('ok');
  });
  app.get('/keys', (req, res) => {
    res.send(String([...session(req).keys()].filter((key) => /^k\d+$/.test(key)).length));
  });
  app.post('/login', LOGIN_BODY, async (req, res) => {
    await session(req).regenerate();
    session(req).set('username', String(req.body?.username ?? ''));
    res.send('ok');
  });
  return () => middleware.manager.close();
}

async function providerOptionsFor(provider: string, config: BenchConfig): Promise<Record<string, unknown>> {
  const scratch = (): string => mkdtempSync(join(config.scratchDir, `${provider}-`));
  switch (provider) {
    case 'memory':
      return {};
    case 'file':
      return { dir: scratch() };
    case 'sqlite':
      return { path: join(scratch(), 'sessions.db') };
    case 'redis':
      if (config.redisUrl === undefined) throw new Error(config.redisSkip ?? 'no Redis server');
      return { url: config.redisUrl, prefix: `bench:${process.pid}:` };
    case 'postgres':
      if (config.postgresUrl === undefined) throw new Error(config.postgresSkip ?? 'no PostgreSQL server');
      return { connectionString: config.postgresUrl, table: `bench_sessions_${process.pid}` };
    default:
      throw new Error(`unknown provider ${provider}`);
  }
}

async function buildApp(mode: Mode, config: BenchConfig): Promise<{ app: Express; close: Closer }> {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false); // every mode sends tiny bodies; hashing them is noise
  let close: Closer;
  if (mode === 'bare') close = bareApp(app);
  else if (mode === 'express-session') close = await expressSessionApp(app, 'memory', config);
  else if (mode === 'express-session+memorystore') close = await expressSessionApp(app, 'memorystore', config);
  else if (mode === 'express-session+connect-redis') close = await expressSessionApp(app, 'connect-redis', config);
  else close = await sessionManagerApp(app, mode.slice('session-manager:'.length), config);
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    console.error('[bench] request failed:', err instanceof Error ? err.message : err);
    res.status((err as { status?: number })?.status ?? 500).send('error');
  });
  return { app, close };
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (!isMode(mode)) throw new Error(`usage: server.ts <mode>, got ${JSON.stringify(mode)}`);
  const config = JSON.parse(process.env.BENCH_CONFIG ?? '{}') as BenchConfig;
  const { app, close } = await buildApp(mode, config);
  const server = app.listen(0, '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    process.send?.({ ready: port });
  });
  server.keepAliveTimeout = 60_000;
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    server.closeAllConnections();
    server.close();
    close()
      .catch((err) => console.error('[bench] close failed:', err))
      .finally(() => process.exit(0)); // a clean exit writes --cpu-prof profiles
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop); // the runner went away
}

main().catch((err) => {
  console.error(`[bench] ${process.argv[2]} failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
