/**
 * Load scenarios shared by the quick reliability tests
 * (`__tests__/reliability/load.test.ts`, small sizes, asserted) and the soak
 * (`bench/soak.ts`, large sizes, printed). Everything runs in one process: an
 * Express 5 app on a real socket on 127.0.0.1 and a keep-alive HTTP client
 * with bounded concurrency. Every loop is bounded by a count and a deadline.
 */
import { request as httpRequest, Agent, createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import express, { type NextFunction, type Request, type Response } from 'express';
import { sessions, type SessionMiddleware, type SessionRequest } from '../lib/index';
import { storageKey } from '../lib/manager';

/** Our session (in this program req.session has express-session's type: bench/express-session-types.d.ts). */
const ours = (req: unknown) => (req as SessionRequest).session;
import { MemoryProvider } from '../lib/providers/memory';
import type { SessionOptions } from '../lib/options';

// ---------------------------------------------------------------------------
// Heap

let collect: (() => void) | undefined;

/** A full garbage collection, without needing `node --expose-gc`. */
export function fullGc(): void {
  if (collect === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (typeof exposed === 'function') collect = exposed;
    else {
      setFlagsFromString('--expose-gc');
      collect = runInNewContext('gc') as () => void;
    }
  }
  collect();
  collect();
}

/** Heap in use after a full GC, in bytes. */
export function heapAfterGc(): number {
  fullGc();
  return process.memoryUsage().heapUsed;
}

export const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(2)} MB`;

// ---------------------------------------------------------------------------
// App and client

export interface RunningApp {
  url: string;
  server: Server;
  middleware: SessionMiddleware;
  close(): Promise<void>;
}

/**
 * An Express 5 app with the session middleware and four routes: `/set/:key/:value`,
 * `/get/:key`, `/whoami` (read-only), `/hold` (read-only, awaits `hold()`).
 */
export async function startApp(options: SessionOptions): Promise<RunningApp> {
  const app = express();
  const middleware = sessions({ onError: () => undefined, ...options });
  app.use(middleware);
  app.get('/set/:key/:value', (req, res) => {
    ours(req).set(String(req.params.key), req.params.value);
    res.json({ ok: true });
  });
  app.get('/get/:key', (req, res) => {
    res.json({ value: ours(req).get(String(req.params.key)) ?? null });
  });
  app.get('/whoami', (req, res) => {
    res.json({ sessionID: req.sessionID, isNew: ours(req).isNew });
  });
  app.use((err: Error & { status?: number }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err.status ?? 500).json({ error: err.message });
  });
  const server = createServer({ keepAliveTimeout: 60_000 }, app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    middleware,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await middleware.manager.close();
    },
  };
}

export interface Reply {
  status: number;
  /** `name=value` of the session cookie the response set, if any. */
  cookie?: string;
  body: string;
  ms: number;
}

/** A keep-alive client with at most `concurrency` sockets. */
export class Client {
  readonly agent: Agent;

  constructor(
    readonly base: string,
    concurrency: number,
    readonly cookieName = 'sid',
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  }

  get(path: string, cookie?: string): Promise<Reply> {
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${this.base}${path}`, { agent: this.agent, headers: cookie ? { cookie } : {} }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          const line = (res.headers['set-cookie'] ?? []).find((each) => each.startsWith(`${this.cookieName}=`));
          resolve({ status: res.statusCode ?? 0, cookie: line?.split(';')[0], body, ms: performance.now() - started });
        });
        res.on('error', reject);
      });
      req.setTimeout(30_000, () => req.destroy(new Error(`GET ${path} timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * Runs `count` jobs, at most `concurrency` at a time, stopping early at `deadline`
 * (ms, performance.now() clock). Resolves how many ran.
 */
export async function pool(count: number, concurrency: number, deadline: number, job: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count && performance.now() < deadline) await job(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return Math.min(next, count);
}

/** Nearest-rank percentile of `values` (copied and sorted). */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** Small deterministic PRNG (mulberry32): the same run every time. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Worst event-loop delay seen by a 1 ms timer chain (monitorEventLoopDelay
 * records nothing for very short windows; this catches one long block too).
 */
export function lagProbe(): { stop(): { worstMs: number; turns: number } } {
  let worst = 0;
  let turns = 0;
  let expected = performance.now() + 1;
  let timer: NodeJS.Timeout;
  const tick = (): void => {
    const now = performance.now();
    worst = Math.max(worst, now - expected);
    turns++;
    expected = now + 1;
    timer = setTimeout(tick, 1);
  };
  timer = setTimeout(tick, 1);
  return {
    stop: () => {
      clearTimeout(timer);
      worst = Math.max(worst, performance.now() - expected);
      return { worstMs: Math.max(0, worst), turns };
    },
  };
}

// ---------------------------------------------------------------------------
// Scenario 1: many requests over a fixed set of sessions

export interface SessionsLoadFigures {
  sessions: number;
  requestsPlanned: number;
  requestsDone: number;
  failures: number;
  /** Writes answered 2xx whose value was not read back at the end. */
  lostWrites: number;
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Heap after a full GC at the end of each quarter of the requests (bytes). */
  heapByQuarter: number[];
  storedSessions: number;
}

/**
 * `sessions` sessions, each created by one request, then `requests` requests
 * spread over them (half reads, half writes of one of `keysPerSession` keys).
 * The last value acknowledged for every (session, key) is read back at the end.
 */
export async function sessionsLoad(input: {
  requests: number;
  sessions: number;
  concurrency: number;
  keysPerSession?: number;
  timeLimitMs: number;
  provider?: SessionOptions['provider'];
  log?: (line: string) => void;
}): Promise<SessionsLoadFigures> {
  const keysPerSession = input.keysPerSession ?? 5;
  const app = await startApp({ provider: input.provider ?? new MemoryProvider({ maxSessions: Math.max(100_000, input.sessions * 2) }) });
  const client = new Client(app.url, input.concurrency);
  const deadline = performance.now() + input.timeLimitMs;
  const cookies: string[] = new Array(input.sessions);
  let failures = 0;
  await pool(input.sessions, input.concurrency, deadline, async (s) => {
    const reply = await client.get(`/set/owner/${s}`);
    if (reply.status !== 200 || reply.cookie === undefined) throw new Error(`creating session ${s}: ${reply.status} ${reply.body}`);
    cookies[s] = reply.cookie;
  });

  const latencies = new Float64Array(input.requests);
  /** Last acknowledged value per session and key, as `${session}:${key}` → value. */
  const acknowledged = new Map<string, string>();
  const heapByQuarter: number[] = [];
  const quarter = Math.ceil(input.requests / 4);
  const workers = Math.min(input.concurrency, input.sessions);
  const started = performance.now();
  let done = 0;
  for (let q = 0; q < 4 && performance.now() < deadline; q++) {
    const first = q * quarter;
    const last = Math.min(input.requests, first + quarter);
    // Worker w owns the sessions s ≡ w (mod workers): a session never has two
    // requests in flight, so the last acknowledged write is what must be stored.
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        const owned = Math.floor((input.sessions - 1 - w) / workers) + 1;
        const random = prng(0x5e55 + q * 1000 + w);
        for (let i = first + w; i < last && performance.now() < deadline; i += workers) {
          const s = w + workers * Math.floor(random() * owned);
          const key = `k${Math.floor(i / input.sessions) % keysPerSession}`;
          const write = Math.floor(i / workers) % 2 === 0;
          const reply = write ? await client.get(`/set/${key}/${i}`, cookies[s]) : await client.get(`/get/${key}`, cookies[s]);
          latencies[done++] = reply.ms;
          if (reply.status !== 200) failures++;
          else if (write) acknowledged.set(`${s}:${key}`, String(i));
        }
      }),
    );
    heapByQuarter.push(heapAfterGc());
    input.log?.(`quarter ${q + 1}: ${done} requests, heap after GC ${mb(heapByQuarter[q])}`);
  }
  const seconds = (performance.now() - started) / 1000;

  // Read back every (session, key) slot: the stored value must be the last acknowledged one.
  let lostWrites = 0;
  const provider = app.middleware.manager.provider;
  for (const [slot, value] of acknowledged) {
    const [s, key] = slot.split(':');
    const pair = cookies[Number(s)];
    const stored = await provider.read(storageKey(decodeURIComponent(pair.slice(pair.indexOf('=') + 1)))); // stored under the id's hash
    const json = stored?.values.get(key);
    if (json === undefined || JSON.parse(json) !== value) lostWrites++;
  }
  const storedSessions = await app.middleware.manager.count();
  client.close();
  await app.close();
  const measured = latencies.subarray(0, done);
  return {
    sessions: input.sessions,
    requestsPlanned: input.requests,
    requestsDone: done,
    failures,
    lostWrites,
    seconds,
    requestsPerSecond: done / seconds,
    p50Ms: percentile(measured, 50),
    p99Ms: percentile(measured, 99),
    maxMs: percentile(measured, 100),
    heapByQuarter,
    storedSessions,
  };
}

// ---------------------------------------------------------------------------
// Scenario 2: new visitors (no cookie)

export interface NewVisitorFigures {
  requests: number;
  saveUninitialized: boolean;
  maxSessions: number;
  failures: number;
  cookiesSet: number;
  /** Highest `manager.count()` seen, sampled every `sampleEvery` requests. */
  maxCount: number;
  finalCount: number;
  /** Heap after GC at the end minus before the visitors (bytes). */
  heapGrowth: number;
  seconds: number;
}

/** `requests` read-only requests from clients without a cookie. */
export async function newVisitors(input: {
  requests: number;
  saveUninitialized: boolean;
  maxSessions: number;
  concurrency: number;
  timeLimitMs: number;
  sampleEvery?: number;
}): Promise<NewVisitorFigures> {
  const app = await startApp({ provider: new MemoryProvider({ maxSessions: input.maxSessions }), saveUninitialized: input.saveUninitialized });
  const client = new Client(app.url, input.concurrency);
  const sampleEvery = input.sampleEvery ?? 500;
  const heapBefore = heapAfterGc();
  const started = performance.now();
  let failures = 0;
  let cookiesSet = 0;
  let maxCount = 0;
  let done = 0;
  const deadline = started + input.timeLimitMs;
  for (let first = 0; first < input.requests && performance.now() < deadline; first += sampleEvery) {
    done += await pool(Math.min(sampleEvery, input.requests - first), input.concurrency, deadline, async () => {
      const reply = await client.get('/whoami');
      if (reply.status !== 200) failures++;
      if (reply.cookie !== undefined) cookiesSet++;
    });
    maxCount = Math.max(maxCount, await app.middleware.manager.count());
  }
  const seconds = (performance.now() - started) / 1000;
  const finalCount = await app.middleware.manager.count();
  const heapGrowth = heapAfterGc() - heapBefore;
  client.close();
  await app.close();
  return { requests: done, saveUninitialized: input.saveUninitialized, maxSessions: input.maxSessions, failures, cookiesSet, maxCount, finalCount, heapGrowth, seconds };
}

// ---------------------------------------------------------------------------
// Scenario 3: GC of many expired sessions while traffic goes on

export interface GcUnderTrafficFigures {
  expired: number;
  deleted: number;
  sweepMs: number;
  /** Worst event-loop delay while the sweep ran (ms). */
  worstLoopDelayMs: number;
  /** Times a 1 ms timer got to run while the sweep ran: 0 means the sweep held the loop throughout. */
  loopTurnsDuringSweep: number;
  /** Requests whose time in flight overlapped the sweep. */
  requestsDuringSweep: number;
  p50MsDuringSweep: number;
  p99MsDuringSweep: number;
  maxMsDuringSweep: number;
  failures: number;
  liveAfter: number;
}

/**
 * Stores `expired` sessions directly in a memory provider, moves the injected
 * clock past their expiry, then runs `manager.gc()` while `concurrency`
 * clients keep reading and writing `liveSessions` live sessions over HTTP.
 */
export async function gcUnderTraffic(input: {
  expired: number;
  liveSessions: number;
  concurrency: number;
  timeLimitMs: number;
  /** Expiries spread over this many seconds (1: a mass expiry at one instant). */
  spreadSeconds: number;
}): Promise<GcUnderTrafficFigures> {
  let offset = 0;
  const clock = (): number => Date.now() + offset;
  const provider = new MemoryProvider({ maxSessions: input.expired + input.liveSessions * 2 });
  const app = await startApp({ provider, clock, gcInterval: 3600 });
  const now = clock();
  const values = new Map([['user', '"someone"'], ['cart', '[1,2,3]']]);
  for (let i = 0; i < input.expired; i++) {
    await provider.create(`expired_${i.toString(36).padStart(16, '0')}`, values, now - 7_200_000, now + (i % input.spreadSeconds) * 1000);
  }
  offset = 2 * 3_600_000; // two hours later: every one of them is past its expiry
  const client = new Client(app.url, input.concurrency);
  const deadline = performance.now() + input.timeLimitMs;
  const cookies: string[] = [];
  await pool(input.liveSessions, input.concurrency, deadline, async (s) => {
    const reply = await client.get(`/set/owner/${s}`);
    if (reply.cookie === undefined) throw new Error(`creating live session ${s}: ${reply.status}`);
    cookies[s] = reply.cookie;
  });

  let sweeping = true;
  let failures = 0;
  /** [start, end] of every request, to keep those that overlapped the sweep. */
  const spans: Array<[number, number]> = [];
  const delay = monitorEventLoopDelay({ resolution: 1 });
  let i = 0;
  // Traffic runs until the sweep is over (bounded by the deadline).
  const traffic = Promise.all(
    Array.from({ length: input.concurrency }, async () => {
      while (sweeping && performance.now() < deadline) {
        const n = i++;
        const cookie = cookies[n % cookies.length];
        const reply = n % 2 === 0 ? await client.get(`/set/k/${n}`, cookie) : await client.get('/get/k', cookie);
        if (reply.status !== 200) failures++;
        const end = performance.now();
        spans.push([end - reply.ms, end]);
      }
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, 200)); // traffic at full speed before the sweep starts
  const probe = lagProbe();
  delay.enable();
  const started = performance.now();
  const deleted = await app.middleware.manager.gc();
  const finished = performance.now();
  const sweepMs = finished - started;
  delay.disable();
  const { worstMs: worstProbeMs, turns } = probe.stop();
  sweeping = false;
  await traffic;
  const during = spans.filter(([start, end]) => start <= finished && end >= started).map(([start, end]) => end - start);
  const liveAfter = await app.middleware.manager.count();
  client.close();
  await app.close();
  return {
    expired: input.expired,
    deleted,
    sweepMs,
    worstLoopDelayMs: Math.max(worstProbeMs, delay.max / 1e6),
    loopTurnsDuringSweep: turns,
    requestsDuringSweep: during.length,
    p50MsDuringSweep: percentile(during, 50),
    p99MsDuringSweep: percentile(during, 99),
    maxMsDuringSweep: percentile(during, 100),
    failures,
    liveAfter,
  };
}

