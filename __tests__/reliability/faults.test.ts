/**
 * Faults injected for real: Redis killed (SIGKILL) and PostgreSQL stopped under
 * HTTP load, then restarted; a logout racing slow requests on every provider;
 * SIGKILL of a process in the middle of a file / SQLite write storm; a full and
 * a read-only file system (a 1 MB tmpfs). Figures go to stdout for
 * docs/RELIABILITY.md.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import express5, { type NextFunction, type Request, type Response } from 'express';
import { sessions, type SessionMiddleware } from '../../lib/index';
import { storageKey } from '../../lib/manager';
import { FileProvider } from '../../lib/providers/file';
import { MemoryProvider } from '../../lib/providers/memory';
import { PostgresProvider } from '../../lib/providers/postgres';
import type { Provider } from '../../lib/providers/provider';
import { RedisProvider } from '../../lib/providers/redis';
import { SqliteProvider } from '../../lib/providers/sqlite';
import { Client, percentile, type Reply } from '../../bench/reliability';
import { listen } from '../support/http';
import { gate } from '../support/recording-provider';
import { freePort, pgBinDir, pgStart, pgStop, redisBinary, startPostgres, discard, type PgServer } from '../support/services';
import { serviceUrl, stopPrivateServers, unavailable } from './servers';
import { checkValue, stormSid } from './storm-child';

const ROOT = resolve(__dirname, '..', '..');
const report = (title: string, figures: unknown): void => {
  process.stdout.write(`[reliability] ${title}: ${JSON.stringify(figures)}\n`);
};
const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));
const temps: string[] = [];
const tempDir = (prefix: string): string => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
};
afterAll(async () => {
  await stopPrivateServers();
  temps.forEach((dir) => rmSync(dir, { recursive: true, force: true }));
});

// --- the app under test ---------------------------------------------------------

interface FaultApp {
  url: string;
  middleware: SessionMiddleware;
  /** The /slow routes signal here once they hold the session, then await `release`. */
  slow: { entered?: () => void; release?: Promise<void> };
  close(): Promise<void>;
}

async function startFaultApp(provider: Provider, extra: Record<string, unknown> = {}): Promise<FaultApp> {
  const app = express5();
  const middleware = sessions({ provider, onError: () => undefined, ...extra });
  const slow: FaultApp['slow'] = {};
  app.use(middleware);
  app.get('/set/:key/:value', (req, res) => {
    req.session.set(String(req.params.key), req.params.value);
    res.json({ ok: true });
  });
  app.get('/big/:key/:kb', (req, res) => {
    req.session.set(String(req.params.key), 'x'.repeat(Number(req.params.kb) * 1024));
    res.json({ ok: true });
  });
  app.get('/get/:key', (req, res) => {
    res.json({ value: req.session.get(String(req.params.key)) ?? null, isNew: req.session.isNew });
  });
  app.get('/slow/set', async (req, res) => {
    slow.entered?.();
    await slow.release;
    req.session.set('after', 'logout');
    res.json({ ok: true });
  });
  app.get('/slow/read', async (req, res) => {
    slow.entered?.();
    await slow.release;
    res.json({ user: req.session.get('user') ?? null });
  });
  app.get('/logout', async (req, res) => {
    await req.destroySession();
    res.json({ ok: true });
  });
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err.status ?? 500).json({ error: err.message });
  });
  const { server, url } = await listen(app);
  return {
    url,
    middleware,
    slow,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
      await middleware.manager.close();
    },
  };
}

const sidOf = (pair: string): string => decodeURIComponent(pair.slice(pair.indexOf('=') + 1));

// --- 1. store outages under load ---------------------------------------------------

interface OutageFigures {
  requests: number;
  acknowledged: number;
  acknowledgedFound: number;
  failed503: number;
  otherStatuses: Record<string, number>;
  networkErrors: number;
  sessionsLost: number;
  outageMs: number;
  recoveredAfterMs: number;
  p99Ms: number;
}

/**
 * `requests` requests at a steady pace over `sessions` sessions, each setting a
 * distinct key; `outage()` runs from `outageAt` requests on. Afterwards every
 * acknowledged key is read back through a fresh provider.
 */
async function writesThroughOutage(input: {
  provider: Provider;
  verifier: () => Provider;
  outage: () => Promise<{ outageMs: number; restartedAt: number }>;
  requests?: number;
  sessions?: number;
  paceMs?: number;
  outageAt?: number;
}): Promise<OutageFigures> {
  const { requests = 300, sessions = 10, paceMs = 10, outageAt = 100 } = input;
  const app = await startFaultApp(input.provider);
  const client = new Client(app.url, 4);
  const cookies: string[] = [];
  for (let s = 0; s < sessions; s++) cookies.push((await client.get(`/set/owner/${s}`)).cookie!);
  const outcomes: Array<{ reply?: Reply; sid: string; sent: string; error?: string }> = [];
  let outage: Promise<{ outageMs: number; restartedAt: number }> | undefined;
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < requests) {
        const i = next++;
        const due = started + i * paceMs;
        if (due > performance.now()) await sleep(due - performance.now());
        if (i === outageAt) outage = input.outage();
        const cookie = cookies[i % sessions];
        try {
          const reply = await client.get(`/set/key${i}/value${i}`, cookie);
          outcomes[i] = { reply, sid: sidOf(reply.cookie ?? cookie), sent: sidOf(cookie) };
        } catch (err) {
          outcomes[i] = { sid: sidOf(cookie), sent: sidOf(cookie), error: (err as Error).message };
        }
      }
    }),
  );
  const { outageMs, restartedAt } = await outage!;
  // Recovery by itself: the same app, provider and client, no reconnect call.
  let recoveredAfterMs = -1;
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; await sleep(50)) {
    const reply = await client.get('/set/recovered/yes', cookies[0]).catch(() => undefined);
    if (reply?.status === 200) {
      recoveredAfterMs = Date.now() - restartedAt;
      break;
    }
  }
  client.close();
  await app.close();

  const verifier = input.verifier();
  let acknowledged = 0;
  let found = 0;
  let failed503 = 0;
  let networkErrors = 0;
  const otherStatuses: Record<string, number> = {};
  for (let i = 0; i < requests; i++) {
    const { reply, sid } = outcomes[i];
    if (reply === undefined) networkErrors++;
    else if (reply.status === 200) {
      acknowledged++;
      const stored = await verifier.read(storageKey(sid));
      if (stored?.values.get(`key${i}`) === JSON.stringify(`value${i}`)) found++;
    } else if (reply.status === 503) failed503++;
    else otherStatuses[reply.status] = (otherStatuses[reply.status] ?? 0) + 1;
  }
  // A session that existed before the outage and is gone after it would come back with a new id.
  const sessionsLost = new Set(outcomes.filter(({ reply, sid, sent }) => reply?.status === 200 && sid !== sent).map(({ sent }) => sent)).size;
  await verifier.close();
  return {
    requests,
    acknowledged,
    acknowledgedFound: found,
    failed503,
    otherStatuses,
    networkErrors,
    sessionsLost,
    outageMs,
    recoveredAfterMs,
    p99Ms: percentile(outcomes.flatMap(({ reply }) => (reply ? [reply.ms] : [])), 99),
  };
}

function expectCleanOutage(figures: OutageFigures): void {
  expect(figures.networkErrors).toBe(0);
  expect(figures.otherStatuses).toEqual({});
  expect(figures.failed503).toBeGreaterThan(0); // the outage was real
  expect(figures.acknowledged).toBeGreaterThan(0);
  expect(figures.acknowledgedFound).toBe(figures.acknowledged); // zero acknowledged writes lost
  expect(figures.sessionsLost).toBe(0);
  expect(figures.recoveredAfterMs).toBeGreaterThanOrEqual(0); // recovered by itself
}

/** A redis-server with an append-only file fsynced on every write: a SIGKILL loses nothing it acknowledged. */
async function startDurableRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(redisBinary()!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir], {
    stdio: 'ignore',
  });
  for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(20)) {
    if (await redisPong(port)) return child;
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server on ${port} did not start`);
}

function redisPong(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.setTimeout(300, () => (socket.destroy(), done(false)));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => (socket.destroy(), done(data.toString().startsWith('+PONG'))));
    socket.once('error', () => done(false));
  });
}

async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGKILL');
  await exited;
}

describe('when the store goes away under load and comes back', () => {
  const describeRedis = redisBinary() === undefined ? describe.skip : describe;
  describeRedis('redis (SIGKILL, restart on the same port with its append-only file)', () => {
    let redis: ChildProcess | undefined;
    afterAll(async () => {
      if (redis) await killed(redis);
    });

    it('acknowledges only writes that are stored, answers 503 meanwhile, and recovers by itself', async () => {
      const port = await freePort();
      const dir = tempDir('sm-redis-aof-');
      redis = await startDurableRedis(port, dir);
      const url = `redis://127.0.0.1:${port}`;
      const figures = await writesThroughOutage({
        provider: new RedisProvider({ url, timeoutMs: 2000 }),
        verifier: () => new RedisProvider({ url }),
        outage: async () => {
          const down = Date.now();
          await killed(redis!);
          await sleep(1000);
          redis = await startDurableRedis(port, dir);
          return { outageMs: Date.now() - down, restartedAt: Date.now() };
        },
      });
      report('redis outage', figures);
      expectCleanOutage(figures);
    }, 60_000);
  });

  const describePg = pgBinDir() === undefined ? describe.skip : describe;
  describePg('postgres (pg_ctl stop -m fast, start)', () => {
    let server: PgServer | undefined;
    afterAll(async () => {
      if (server) await discard(server);
    });

    it('acknowledges only writes that are stored, answers 503 meanwhile, and recovers by itself', async () => {
      server = await startPostgres();
      const url = server.url;
      const table = `outage_${process.pid}`;
      const figures = await writesThroughOutage({
        provider: new PostgresProvider({ connectionString: url, table, timeoutMs: 2000 }),
        verifier: () => new PostgresProvider({ connectionString: url, table }),
        outage: async () => {
          const down = Date.now();
          await pgStop(server!);
          await sleep(1000);
          await pgStart(server!);
          return { outageMs: Date.now() - down, restartedAt: Date.now() };
        },
      });
      report('postgres outage', figures);
      expectCleanOutage(figures);
    }, 60_000);
  });
});

// --- 2. logout racing slow requests -------------------------------------------------

describe('when a logout races slow requests of the same session', () => {
  const cases: Array<[string, () => Promise<Provider>, string | undefined]> = [
    ['memory', async () => new MemoryProvider(), undefined],
    ['file', async () => new FileProvider({ dir: join(tempDir('sm-race-'), 'sessions') }), undefined],
    ['sqlite', async () => new SqliteProvider({ path: join(tempDir('sm-race-'), 'sessions.db') }), undefined],
    ['redis', async () => new RedisProvider({ url: await serviceUrl('redis'), prefix: `race:${process.pid}:` }), unavailable('redis')],
    ['postgres', async () => new PostgresProvider({ connectionString: await serviceUrl('postgres'), table: `race_${process.pid}` }), unavailable('postgres')],
  ];

  describe.each(cases)('on %s', (name, make, skip) => {
    if (skip !== undefined) {
      it.skip(`(skipped: ${skip})`, () => undefined);
      return;
    }
    let app: FaultApp;
    let client: Client;
    beforeAll(async () => {
      // touchAfter 0: the slow read-only request also tries to refresh the expiry.
      app = await startFaultApp(await make(), { touchAfter: 0 });
      client = new Client(app.url, 4);
    });
    afterAll(async () => {
      client.close();
      await app.close();
    });

    it.each(['/slow/set', '/slow/read'])('a %s that loaded the session before the logout does not bring it back', async (route) => {
      const login = await client.get('/set/user/ann');
      const cookie = login.cookie!;
      const sid = sidOf(cookie);
      const entered = gate();
      const release = gate();
      app.slow.entered = entered.open;
      app.slow.release = release.promise;
      const slow = client.get(route, cookie);
      await entered.promise; // it holds the loaded session
      app.slow.entered = undefined;
      expect(await app.middleware.manager.provider.read(storageKey(sid))).toBeDefined(); // stored under its hash until the logout
      expect((await client.get('/logout', cookie)).status).toBe(200);
      expect(await app.middleware.manager.provider.read(storageKey(sid))).toBeUndefined();
      release.open();
      const reply = await slow;
      expect(reply.status).toBe(200); // the handler's response goes out as written
      await sleep(50); // a background expiry refresh would land by now
      expect(await app.middleware.manager.provider.read(storageKey(sid))).toBeUndefined(); // still destroyed
      const after = await client.get('/get/user', cookie);
      expect(JSON.parse(after.body)).toEqual({ value: null, isNew: true });
      report(`logout race ${name} ${route}`, { slowStatus: reply.status, slowResentDeadId: reply.cookie !== undefined && sidOf(reply.cookie) === sid });
    });

    // The contract: "that request's response goes out as its handler wrote it,
    // without re-sending the dead id" — also when its expiry refresh is due.
    it('the slow read-only response does not re-send the dead id', async () => {
      const cookie = (await client.get('/set/user/bob')).cookie!;
      const entered = gate();
      const release = gate();
      app.slow.entered = entered.open;
      app.slow.release = release.promise;
      const slow = client.get('/slow/read', cookie);
      await entered.promise;
      app.slow.entered = undefined;
      await client.get('/logout', cookie);
      release.open();
      const reply = await slow;
      expect(reply.cookie === undefined || sidOf(reply.cookie) !== sidOf(cookie)).toBe(true);
    });
  });
});

// --- 3. SIGKILL in the middle of a write storm ----------------------------------------

interface StormRound {
  acks: number;
  inFlightStored: number;
  leftovers: string[];
}

/** Runs storm-child.ts on `path`, kills it with SIGKILL once it has acknowledged `killAfterAcks` writes; resolves the last ack per session. */
async function stormAndKill(kind: 'file' | 'sqlite', path: string, sessions: number, killAfterAcks: number): Promise<{ acked: number[]; acks: number }> {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', join(__dirname, 'storm-child.ts'), kind, path, String(sessions), '20'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acked: number[] = [];
  let acks = 0;
  let storming = false;
  let stderr = '';
  let buffered = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`storm child made only ${acks} acks in 30 s: ${stderr}`)), 30_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line === 'storming') storming = true;
        else {
          const [s, version] = line.split(' ').map(Number);
          acked[s] = version;
          if (storming) acks++;
        }
      }
      if (storming && acks >= killAfterAcks && child.signalCode === null) {
        clearTimeout(timer);
        child.kill('SIGKILL');
        done();
      }
    });
    child.once('exit', (code, signal) => {
      if (signal !== 'SIGKILL') {
        clearTimeout(timer);
        fail(new Error(`storm child exited by itself (${code}): ${stderr}`));
      }
    });
  });
  await exited;
  // Acks already in the pipe when the kill landed still count.
  await new Promise((done) => setImmediate(done));
  for (const line of buffered.split('\n').filter((text) => /^\d+ \d+$/.test(text))) {
    const [s, version] = line.split(' ').map(Number);
    acked[s] = version;
  }
  return { acked, acks };
}

describe('when the process is killed (SIGKILL) in the middle of a write storm', () => {
  const SESSIONS = 8;

  it('file provider: every session file parses and holds the last acknowledged version or the one in flight', async () => {
    const dir = join(tempDir('sm-storm-file-'), 'sessions');
    const rounds: StormRound[] = [];
    for (const killAfterAcks of [150, 400]) {
      const { acked, acks } = await stormAndKill('file', dir, SESSIONS, killAfterAcks);
      const names = readdirSync(dir);
      let inFlightStored = 0;
      for (let s = 0; s < SESSIONS; s++) {
        const file = names.find((name) => name.endsWith('.json') && JSON.parse(readFileSync(join(dir, name), 'utf8')).sid === stormSid(s));
        expect(file).toBeDefined();
        const record = JSON.parse(readFileSync(join(dir, file!), 'utf8')) as { sid: string; values: Record<string, string> };
        const version = checkValue(record.values.v); // throws on a torn value
        expect([acked[s], acked[s] + 1]).toContain(version);
        if (version === acked[s] + 1) inFlightStored++;
      }
      // Every .json file parses (not just ours).
      for (const name of names.filter((n) => n.endsWith('.json'))) expect(() => JSON.parse(readFileSync(join(dir, name), 'utf8'))).not.toThrow();
      rounds.push({ acks, inFlightStored, leftovers: names.filter((name) => !name.endsWith('.json')).map((name) => name.replace(/^[0-9a-f]{64}/, '<hash>')) });
    }
    // Normal service afterwards: a new process takes over the stale locks and writes every session.
    const errors: Error[] = [];
    const provider = new FileProvider({ dir, lockStaleMs: 300, onError: (err) => errors.push(err) });
    const started = Date.now();
    for (let s = 0; s < SESSIONS; s++) {
      const now = Date.now();
      expect(await provider.update(stormSid(s), new Map([['after', '1']]), now + 60_000, now)).toBe(true);
    }
    const recoveryMs = Date.now() - started;
    await provider.close();
    expect(errors).toEqual([]); // nothing corrupt was seen
    report('file SIGKILL storm', { rounds, recoveryMsWithLockStale300: recoveryMs });
  }, 90_000);

  it('sqlite provider: integrity_check is ok, every row parses and holds the last acknowledged version or the one in flight', async () => {
    const path = join(tempDir('sm-storm-sqlite-'), 'sessions.db');
    const rounds: StormRound[] = [];
    for (const killAfterAcks of [300, 800]) {
      const { acked, acks } = await stormAndKill('sqlite', path, SESSIONS, killAfterAcks);
      const db = new Database(path);
      try {
        expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
        const rows = db.prepare('SELECT sid, values_json FROM sessions').all() as Array<{ sid: string; values_json: string }>;
        expect(rows).toHaveLength(SESSIONS);
        let inFlightStored = 0;
        for (const row of rows) {
          const values = JSON.parse(row.values_json) as Record<string, string>;
          const s = Number(row.sid.slice(-4));
          const version = checkValue(values.v);
          expect([acked[s], acked[s] + 1]).toContain(version);
          if (version === acked[s] + 1) inFlightStored++;
        }
        rounds.push({ acks, inFlightStored, leftovers: readdirSync(join(path, '..')) });
      } finally {
        db.close();
      }
    }
    const provider = new SqliteProvider({ path });
    for (let s = 0; s < SESSIONS; s++) {
      const now = Date.now();
      expect(await provider.update(stormSid(s), new Map([['after', '1']]), now + 60_000, now)).toBe(true);
    }
    await provider.close();
    report('sqlite SIGKILL storm', { rounds });
  }, 90_000);
});

// --- 4. full disk, read-only file system -------------------------------------------------

/** A 1 MB tmpfs (we run as root), or the reason why the kernel or container refused to mount one. */
function mountTmpfs(): { path: string; unmount: () => void } | string {
  if (process.env.SESSION_TEST_NO_TMPFS) return 'SESSION_TEST_NO_TMPFS is set';
  const path = tempDir('sm-tmpfs-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', path], { stdio: 'pipe' });
  } catch (err) {
    return `mount -t tmpfs failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  }
  return {
    path,
    unmount: () => {
      try {
        execFileSync('umount', [path], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', path], { stdio: 'pipe' });
      }
    },
  };
}

function remount(path: string, mode: 'ro' | 'rw'): string | undefined {
  try {
    execFileSync('mount', ['-o', `remount,${mode}`, path], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? err).trim();
  }
}

/** Fills the file system holding `dir` with one file until ENOSPC; returns its path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const big = Buffer.alloc(64 * 1024);
  const small = Buffer.alloc(512);
  try {
    for (let i = 0; i < 100_000; i++) writeSync(fd, big);
  } catch {
    try {
      for (let i = 0; i < 100_000; i++) writeSync(fd, small);
    } catch {
      // full
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

describe('when the disk is full or read-only', () => {
  const mounted = process.platform === 'linux' ? mountTmpfs() : 'not Linux: no tmpfs';
  const reason = typeof mounted === 'string' ? mounted : undefined;
  if (reason !== undefined) console.warn(`tmpfs tests fall back or skip: ${reason}`);
  afterAll(() => {
    if (typeof mounted !== 'string') mounted.unmount();
  });

  const withTmpfs = reason === undefined ? it : it.skip;

  withTmpfs('file provider: full disk → 503 and nothing stored; read-only → 503 for writes, reads still work; normal service once fixed', async () => {
    const { path } = mounted as { path: string };
    const app = await startFaultApp(new FileProvider({ dir: join(path, 'sessions') }));
    const client = new Client(app.url, 2);
    const figures: Record<string, unknown> = {};
    try {
      const cookie = (await client.get('/set/before/1')).cookie!;
      const sid = sidOf(cookie);
      const filler = fill(path);

      const full = [await client.get('/big/during/64', cookie), await client.get('/set/new/visitor'), await client.get('/get/before', cookie)];
      figures.full = full.map((r) => r.status);
      expect(full.map((r) => r.status)).toEqual([503, 503, 200]);
      expect(JSON.parse(full[2].body).value).toBe('1');
      expect((await app.middleware.manager.provider.read(storageKey(sid)))!.values.has('during')).toBe(false); // no false success
      // No temp left behind (index/ and owner/ are the provider's own folders).
      expect(readdirSync(join(path, 'sessions')).filter((name) => !name.endsWith('.json') && name !== 'index' && name !== 'owner')).toEqual([]);

      unlinkSync(filler);
      const freed = await client.get('/big/during/64', cookie);
      expect(freed.status).toBe(200);
      expect((await app.middleware.manager.provider.read(storageKey(sid)))!.values.has('during')).toBe(true);

      const refused = remount(path, 'ro');
      figures.readOnly = refused ?? 'remounted ro';
      expect(refused).toBeUndefined();
      const ro = [await client.get('/set/ro/1', cookie), await client.get('/set/new/visitor'), await client.get('/get/before', cookie)];
      figures.readOnlyStatuses = ro.map((r) => r.status);
      expect(ro.map((r) => r.status)).toEqual([503, 503, 200]);
      expect(JSON.parse(ro[0].body).error).toMatch(/EROFS|read-only/);
      expect(remount(path, 'rw')).toBeUndefined();
      expect((await client.get('/set/ro/2', cookie)).status).toBe(200);
      expect((await app.middleware.manager.provider.read(storageKey(sid)))!.values.get('ro')).toBe('"2"');
    } finally {
      remount(path, 'rw');
      client.close();
      await app.close();
      rmSync(join(path, 'sessions'), { recursive: true, force: true });
    }
    report('file provider, full and read-only tmpfs', figures);
  }, 30_000);

  withTmpfs('sqlite provider: full disk → 503 and nothing stored; normal service once space is freed; read-only → clear error', async () => {
    const { path } = mounted as { path: string };
    const dbPath = join(path, 'sessions.db');
    const app = await startFaultApp(new SqliteProvider({ path: dbPath }));
    const client = new Client(app.url, 2);
    const figures: Record<string, unknown> = {};
    try {
      const cookie = (await client.get('/set/before/1')).cookie!;
      const sid = sidOf(cookie);
      const filler = fill(path);

      // Larger than any WAL space SQLite could reuse: it must grow the file.
      const full = [await client.get('/big/during/256', cookie), await client.get('/set/new/visitor'), await client.get('/get/before', cookie)];
      figures.full = full.map((r) => r.status);
      figures.fullError = JSON.parse(full[0].body).error;
      expect(full[0].status).toBe(503);
      expect(full[2].status).toBe(200);
      expect([200, 503]).toContain(full[1].status); // a tiny insert may fit in WAL pages already allocated: then it is stored for real
      expect((await app.middleware.manager.provider.read(storageKey(sid)))!.values.has('during')).toBe(false); // no false success

      unlinkSync(filler);
      const freed = await client.get('/big/during/256', cookie);
      figures.afterFree = freed.status;
      expect(freed.status).toBe(200);
      expect((await app.middleware.manager.provider.read(storageKey(sid)))!.values.has('during')).toBe(true);

      // Read-only: the kernel refuses to remount while SQLite holds the file open
      // for writing (EBUSY), so the ro case is the next start on a read-only volume.
      figures.remountWhileOpen = remount(path, 'ro') ?? 'remounted ro';
    } finally {
      remount(path, 'rw');
      client.close();
      await app.close();
    }
    const refused = remount(path, 'ro');
    figures.remountAfterClose = refused ?? 'remounted ro';
    if (refused === undefined) {
      try {
        let error: unknown;
        try {
          const provider = new SqliteProvider({ path: dbPath });
          const now = Date.now();
          // If it opened (read-only WAL may refuse at once), a write must fail, never succeed.
          error = await provider.create('a_new_session_after_ro', new Map(), now, now + 60_000).then(
            () => undefined,
            (err: unknown) => err,
          );
          await provider.close();
        } catch (err) {
          error = err;
        }
        figures.readOnlyError = (error as Error | undefined)?.message;
        expect(error).toBeInstanceOf(Error);
        expect((error as { status?: number }).status).toBe(503);
      } finally {
        remount(path, 'rw');
      }
    }
    report('sqlite provider, full and read-only tmpfs', figures);
  }, 30_000);

  // Fallback when tmpfs cannot be mounted: the folder replaced by a file (stops root too).
  (reason === undefined ? it.skip : it)('file provider (fallback, no tmpfs): folder replaced by a file → 503, then normal service', async () => {
    const dir = join(tempDir('sm-nodir-'), 'sessions');
    const app = await startFaultApp(new FileProvider({ dir }));
    const client = new Client(app.url, 2);
    try {
      const cookie = (await client.get('/set/before/1')).cookie!;
      rmSync(dir, { recursive: true });
      writeFileSync(dir, 'not a folder');
      expect((await client.get('/set/x/1', cookie)).status).toBe(503);
      rmSync(dir);
      mkdirSync(dir);
      expect((await client.get('/set/x/1')).status).toBe(200);
    } finally {
      client.close();
      await app.close();
    }
    expect(existsSync(dir)).toBe(true);
  });
});
