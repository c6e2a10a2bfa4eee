/**
 * One benchmark server: an Express 5 app with the same four routes in every
 * mode, run as its own process so the load generator never shares its event
 * loop. Usage: `ts-node bench/server.ts <mode>`; the config (service URLs, a
 * scratch dir) comes as JSON in BENCH_CONFIG. It reports `{ ready: port }`
 * over IPC once it listens, and exits cleanly on SIGTERM (so `--cpu-prof`
 * writes its profile).
 *
 * Modes: `bare` (no sessions: the ceiling of Express itself), `floor` (the
 * least any signed-cookie session middleware must do: the physical limit of
 * the design), express-session with each of its stores, and session-manager
 * with each of its providers.
 *
 * Routes: GET /read (sends `username`), GET /rmw (increments `counter`),
 * GET /set/:key (sets one named key), POST /login (a new session with
 * `username`), GET /keys (how many `k*` keys the session holds: the lost-update
 * read-back).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sign, unsign } from 'cookie-signature';
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

/** The floor's cookie: the same name, signing and attributes as session-manager's. */
const FLOOR_COOKIE = 'sid';
const FLOOR_COOKIE_ATTRIBUTES = '; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax';

/** The value of cookie `name` in a Cookie header, URI-decoded; undefined when absent or malformed. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const key = `${name}=`;
  let at = header.indexOf(key);
  // A match starts the header or follows "; " (it is not the tail of a longer name).
  while (at > 0 && header.charCodeAt(at - 1) !== 0x20 && header.charCodeAt(at - 1) !== 0x3b) at = header.indexOf(key, at + 1);
  if (at < 0) return undefined;
  const end = header.indexOf(';', at + key.length);
  const raw = header.slice(at + key.length, end < 0 ? header.length : end).trim();
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

interface FloorSession {
  /** undefined until the visitor's first write gives it an id (saveUninitialized: false, as both libraries run here). */
  sid: string | undefined;
  data: Record<string, unknown>;
}

/**
 * The floor: Express plus the least any signed-cookie session middleware must
 * do. Find the cookie in the Cookie header, verify its `s:` signature
 * (cookie-signature's unsign, the same secret), look the id up in a Map; a
 * write puts the entry back in the Map, and a visitor without a session gets a
 * new id and its Set-Cookie on its first write. No expiry, no change
 * detection, no concurrency control, no store I/O: nothing a real library
 * could skip is left, so the gap to it is the cost of everything else.
 */
function floorApp(app: Express): Closer {
  const store = new Map<string, Record<string, unknown>>();
  const floor = (req: Request): FloorSession => (req as unknown as { floor: FloorSession }).floor;
  app.use((req, _res, next) => {
    const value = cookieValue(req.headers.cookie, FLOOR_COOKIE);
    const sid = value !== undefined && value.startsWith('s:') ? unsign(value.slice(2), SECRET) : false;
    const data = sid === false ? undefined : store.get(sid);
    (req as unknown as { floor: FloorSession }).floor = sid !== false && data !== undefined ? { sid, data } : { sid: undefined, data: {} };
    next();
  });
  /** Writes the session back; a visitor without one gets its id, and the cookie, now. */
  const save = (req: Request, res: Response): void => {
    const session = floor(req);
    if (session.sid === undefined) {
      session.sid = randomBytes(32).toString('base64url'); // session-manager's ids: 256 random bits
      res.setHeader('Set-Cookie', `${FLOOR_COOKIE}=${encodeURIComponent(`s:${sign(session.sid, SECRET)}`)}${FLOOR_COOKIE_ATTRIBUTES}`);
    }
    store.set(session.sid, session.data);
  };
  app.get('/read', (req, res) => {
    res.send(String(floor(req).data.username ?? 'guest'));
  });
  app.get('/rmw', (req, res) => {
    const counter = Number(floor(req).data.counter ?? 0) + 1;
    floor(req).data.counter = counter;
    save(req, res);
    res.send(String(counter));
  });
  app.get('/set/:key', (req, res) => {
    floor(req).data[req.params.key as string] = 1;
    save(req, res);
    res.send('ok');
  });
  app.get('/keys', (req, res) => {
    res.send(String(Object.keys(floor(req).data).filter((key) => /^k\d+$/.test(key)).length));
  });
  app.post('/login', LOGIN_BODY, (req, res) => {
    // Regenerate: the old id is dropped, the new session gets a new one.
    const session = floor(req);
    if (session.sid !== undefined) store.delete(session.sid);
    session.sid = undefined;
    session.data = { username: String(req.body?.username ?? '') };
    save(req, res);
    res.send('ok');
  });
  return async () => undefined;
}

const EXPRESS_SESSION_STORES = ['memorystore', 'connect-redis', 'better-sqlite3-session-store', 'connect-pg-simple', 'session-file-store'] as const;
type ExpressSessionStore = 'memory' | (typeof EXPRESS_SESSION_STORES)[number];

function isExpressSessionStore(value: string): value is ExpressSessionStore {
  return value === 'memory' || (EXPRESS_SESSION_STORES as readonly string[]).includes(value);
}

/**
 * express-session with resave false, saveUninitialized false, the same secret
 * and a one-hour cookie. Each persistent store runs on the same kind of store
 * as our provider in that run (a temp sqlite file, the bench's PostgreSQL, a
 * temp dir, the bench's Redis), set up as its README shows.
 */
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
  } else if (store === 'better-sqlite3-session-store') {
    const Database = (await import('better-sqlite3')).default;
    const createSqliteStore = (await import('better-sqlite3-session-store')).default;
    const SqliteStore = createSqliteStore(session);
    const db = new Database(join(scratchFor(store, config), 'sessions.db'));
    db.pragma('journal_mode = WAL'); // as our sqlite provider opens its database
    instance = new SqliteStore({ client: db, expired: { clear: true, intervalMs: 900_000 } }); // its README's setting
    closer = async () => {
      db.close();
    };
  } else if (store === 'connect-pg-simple') {
    if (config.postgresUrl === undefined) throw new Error(config.postgresSkip ?? 'no PostgreSQL server');
    const connectPgSimple = (await import('connect-pg-simple')).default;
    const PgStore = connectPgSimple(session);
    const pgStore = new PgStore({ conString: config.postgresUrl, tableName: `es_sessions_${process.pid}`, createTableIfMissing: true });
    instance = pgStore;
    closer = () => pgStore.close();
  } else if (store === 'session-file-store') {
    const sessionFileStore = (await import('session-file-store')).default;
    const FileStore = sessionFileStore(session);
    instance = new FileStore({ path: scratchFor(store, config), ttl: 3600 });
  }
  // Fail now, not on the first request, when the store cannot reach its backend. A miss is null, or
  // ENOENT from session-file-store (express-session takes that for a miss too).
  if (instance !== undefined) {
    await promisify(instance.get.bind(instance))('bench-start-up-check').catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
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

/** A new directory of its own under the run's scratch dir. */
function scratchFor(name: string, config: BenchConfig): string {
  return mkdtempSync(join(config.scratchDir, `${name}-`));
}

async function providerOptionsFor(provider: string, config: BenchConfig): Promise<Record<string, unknown>> {
  const scratch = (): string => scratchFor(provider, config);
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
  else if (mode === 'floor') close = floorApp(app);
  else if (mode === 'express-session') close = await expressSessionApp(app, 'memory', config);
  else if (mode.startsWith('express-session+')) {
    const store = mode.slice('express-session+'.length);
    if (!isExpressSessionStore(store)) throw new Error(`unknown express-session store ${store}`);
    close = await expressSessionApp(app, store, config);
  } else close = await sessionManagerApp(app, mode.slice('session-manager:'.length), config);
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
