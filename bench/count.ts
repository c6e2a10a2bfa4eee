/**
 * Counts and per-user listings at scale (issue #11), in-process, one provider per run:
 *
 *   node --expose-gc -r ts-node/register/transpile-only bench/count.ts <provider> <sessions>
 *   (or `npm run bench -- --only count [--quick]`, which runs every provider, each in its own process)
 *
 * <provider>: memory | sqlite | redis | postgres | file | redis-cluster.
 *
 * Fills the store with `sessions` live sessions, 1,000 users having 5 sessions
 * each among them (the rest anonymous), written by the provider itself
 * (`provider.create()`, the user under the reserved USER_KEY as
 * `req.session.bindUser()` stores it). Where one create per statement would
 * take minutes it is batched, the data still written by the provider's own
 * code: SQLite creates run inside explicit transactions of 10,000, and a
 * one-row INSERT of the PostgreSQL provider (one that does not batch
 * concurrent creates itself) goes to a pool that collects its parameters and
 * flushes them as multi-row INSERTs (unnest) of the same text; then
 * VACUUM (ANALYZE), which autovacuum does on its own to a table at rest.
 *
 * Then, through a manager on a provider built as an app builds it:
 *  - one `count()`: a first call, then 20 sequential calls (median, max);
 *  - 20 concurrent `count()` calls: total time, the worst event-loop delay
 *    (monitorEventLoopDelay at 1 ms and a 1 ms interval's gap) and the
 *    latency of trivial HTTP requests to a server in this process, sent one
 *    after another during the calls (against the same without the calls);
 *  - `listByUser()` of users with 5 sessions (60 calls over 20 users): median,
 *    max, and the round trips to the server of one call (Redis: commands sent
 *    through a wrapped client, a round trip being a batch sent while nothing
 *    else was in flight; PostgreSQL: pool.query calls).
 *
 * Prints one JSON line. Everything it wrote goes: throwaway servers (or its own
 * prefix / table on REDIS_URL / DATABASE_URL), its temp dir.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, Agent, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { discard, startPostgres, startRedis, type PgServer, type RedisServer } from '../__tests__/support/services';
import { USER_KEY } from '../lib/providers/provider';
import { loadLibrary } from './modes';
import { watchLoop, type LoopWatch } from './loop-watch';

export const COUNT_PROVIDERS = ['memory', 'sqlite', 'redis', 'postgres', 'file', 'redis-cluster'] as const;
export type CountProvider = (typeof COUNT_PROVIDERS)[number];

/** Targets of issue #11: one count() in ms (median), and listByUser (ms in memory, round trips on servers). */
export const COUNT_TARGET_MS: Record<CountProvider, number> = { memory: 1, redis: 20, sqlite: 50, file: 50, 'redis-cluster': 50, postgres: 100 };
export const LIST_TARGET: Partial<Record<CountProvider, { ms?: number; roundTrips?: number }>> = { memory: { ms: 5 }, redis: { roundTrips: 2 }, postgres: { roundTrips: 2 }, 'redis-cluster': { roundTrips: 2 } };
/** "Do not block other requests": the worst event-loop delay, and the slowest concurrent request, during 20 concurrent counts. */
export const BLOCK_TARGET_MS = 20;

const USERS = 1000;
const SESSIONS_PER_USER = 5;
const SEQUENTIAL = 20;
const CONCURRENT = 20;
/** Sequential calls stop early past this much time (a slow count must not take the whole bench). */
const SEQUENTIAL_BUDGET_MS = 60_000;
/** Trials of 20 concurrent counts (3 when a count takes over 100 ms, 1 over a second). */
const TRIALS = 5;
const LIST_USERS = 20;
const LIST_ROUNDS = 3;
const PREFIX = 'bench-count:';
const TABLE = 'bench_count_sessions';

export interface CountResult {
  provider: CountProvider;
  sessions: number;
  users: number;
  sessionsPerUser: number;
  fillMs: number;
  fillMethod: string;
  /** What count() answered (should be `sessions`). */
  counted: number;
  firstCountMs: number;
  countMs: number[];
  countMedianMs: number;
  countMaxMs: number;
  countRoundTrips?: number;
  concurrent: number;
  /** The worst loop delay and slowest request of each trial of 20 concurrent counts; the fields below are medians over the trials. */
  trialsWorstDelayMs: number[];
  trialsPingMaxMs: number[];
  concurrentTotalMs: number;
  /** CPU time this process used meanwhile (pings included): a loop delay far above it is the machine's, not the provider's. */
  concurrentCpuMs: number;
  worstDelayMs: number;
  histogramMaxMs: number;
  gapMaxMs: number;
  pingsDuring: number;
  pingMaxMs: number;
  pingMedianMs: number;
  pingIdleMaxMs: number;
  pingIdleMedianMs: number;
  listMs: number[];
  listMedianMs: number;
  listMaxMs: number;
  listFound: number;
  listRoundTrips?: number;
  listCommands?: number;
  notes: string[];
}

/** What must go at the end even when a fill failed or the run is interrupted (SIGINT, or run.ts's timeout): throwaway servers, the temp dir. */
const onInterrupt: Array<() => unknown> = [];

function log(message: string): void {
  process.stderr.write(`[count ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What one session holds: anonymous ones a name and a counter, bound ones their user too (as bindUser stores it). */
interface Seed {
  sid: string;
  values: Map<string, string>;
  createdAt: number;
  expiresAt: number;
}

/**
 * The sessions to write, in order: `count` of them, `USERS × SESSIONS_PER_USER`
 * bound ones spread evenly. Ids look like the manager's storage keys (43
 * characters of base64url); creation times spread over the last hour, every
 * session live for two hours after it.
 */
function* seeds(count: number, now: number): Generator<Seed> {
  const bound = USERS * SESSIONS_PER_USER;
  const step = Math.max(1, Math.floor(count / bound));
  let bindings = 0;
  let pool = randomBytes(0);
  for (let i = 0; i < count; i++) {
    if (pool.length < 32) pool = randomBytes(32 * 4096);
    const sid = pool.subarray(0, 32).toString('base64url');
    pool = pool.subarray(32);
    const values = new Map([
      ['username', JSON.stringify(`visitor${i}`)],
      ['counter', String(i % 100)],
    ]);
    if (i % step === 0 && bindings < bound) {
      values.set(USER_KEY, JSON.stringify(userName(bindings % USERS)));
      bindings++;
    }
    const createdAt = now - Math.floor(((i * 7919) % 3600) * 1000);
    yield { sid, values, createdAt, expiresAt: createdAt + 2 * 3600_000 };
  }
  if (bindings < bound) throw new Error(`only ${bindings} bound sessions among ${count}: too few sessions`);
}

const userName = (index: number): string => `bench-user-${index}`;

/** Runs `create` over every seed, `window` at a time. */
async function fill(count: number, now: number, window: number, create: (seed: Seed) => Promise<boolean>): Promise<void> {
  let batch: Promise<boolean>[] = [];
  let done = 0;
  const flush = async (): Promise<void> => {
    const created = await Promise.all(batch);
    if (created.includes(false)) throw new Error('a create was refused (duplicate id?)');
    done += batch.length;
    batch = [];
    if (done % 100_000 < window) log(`  ${done.toLocaleString('en')} / ${count.toLocaleString('en')}`);
  };
  for (const seed of seeds(count, now)) {
    batch.push(create(seed));
    if (batch.length >= window) await flush();
  }
  await flush();
}

/** Watches the event loop while `work` runs (bench/loop-watch.ts), with HTTP pings to a server of this process. */
async function watch<T>(work: () => Promise<T>, ping: () => Promise<number>): Promise<LoopWatch<T> & { cpuMs: number; pings: number[] }> {
  const pings: number[] = [];
  let cpuMs = 0;
  let elapsedMs = 0;
  const watched = await watchLoop(async () => {
    let working = true;
    const pinger = (async () => {
      while (working) pings.push(await ping());
    })();
    const started = performance.now();
    const cpu = process.cpuUsage();
    const value = await work();
    elapsedMs = performance.now() - started;
    const { user, system } = process.cpuUsage(cpu);
    cpuMs = (user + system) / 1000;
    working = false;
    await pinger;
    return value;
  });
  return { ...watched, elapsedMs, cpuMs, pings };
}

/** A trivial HTTP server in this process and a keep-alive client: resolves each request's latency in ms. */
async function pingServer(): Promise<{ ping: () => Promise<number>; close: () => Promise<void> }> {
  const server: Server = createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const ping = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const started = performance.now();
      const req = request({ host: '127.0.0.1', port, path: '/ping', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(performance.now() - started));
      });
      req.on('error', reject);
      req.end();
    });
  for (let i = 0; i < 5; i++) await ping(); // the connection made, the code paths warm
  return {
    ping,
    close: async () => {
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Round trips and commands through a wrapped connection: a round trip starts with a command sent while none is in flight. */
class TripCounter {
  commands = 0;
  roundTrips = 0;
  #inFlight = 0;
  track<T>(send: () => Promise<T>): Promise<T> {
    this.commands++;
    if (this.#inFlight === 0) this.roundTrips++;
    this.#inFlight++;
    return send().finally(() => this.#inFlight--);
  }
  reset(): void {
    this.commands = 0;
    this.roundTrips = 0;
  }
}

interface Store {
  /** The provider instance the manager uses. */
  provider: import('../lib/index').Provider;
  trips?: TripCounter;
  /** A line on how the store answers a count (PostgreSQL: its plan), for the notes. */
  diagnose?: () => Promise<string>;
  cleanUp: () => Promise<void>;
}

type Lib = ReturnType<typeof loadLibrary>;

async function memoryStore(lib: Lib, count: number, now: number, notes: string[]): Promise<Store & { fillMethod: string }> {
  const provider = new lib.MemoryProvider({ maxSessions: count + 1000 });
  await fill(count, now, 10_000, (seed) => provider.create(seed.sid, seed.values, seed.createdAt, seed.expiresAt));
  notes.push('every session probationary (created, never read since)');
  return { provider, fillMethod: 'provider.create()', cleanUp: async () => undefined };
}

async function sqliteStore(lib: Lib, count: number, now: number, scratch: string): Promise<Store & { fillMethod: string }> {
  const path = join(scratch, 'count.db');
  const Database = require('better-sqlite3') as typeof import('better-sqlite3');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  const filler = new lib.SqliteProvider({ database: db });
  let inTransaction = 0;
  await fill(count, now, 10_000, (seed) => {
    if (inTransaction === 0) db.exec('BEGIN');
    const created = filler.create(seed.sid, seed.values, seed.createdAt, seed.expiresAt);
    if (++inTransaction === 10_000) {
      db.exec('COMMIT');
      inTransaction = 0;
    }
    return created;
  });
  if (inTransaction > 0) db.exec('COMMIT');
  await filler.close();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  // As an app opens it: from the path (WAL, its own connection).
  const provider = new lib.SqliteProvider({ path });
  return { provider, fillMethod: 'provider.create() in transactions of 10,000', cleanUp: () => provider.close() };
}

async function redisStore(lib: Lib, count: number, now: number): Promise<Store & { fillMethod: string }> {
  let server: RedisServer | undefined;
  const url = process.env.REDIS_URL ?? (server = await startRedis()).url;
  if (server) onInterrupt.push(() => discard(server!));
  const { createClient } = require('redis') as typeof import('redis');
  const fillClient = await createClient({ url }).on('error', () => undefined).connect();
  const filler = new lib.RedisProvider({ client: fillClient, prefix: PREFIX });
  await fill(count, now, 5000, (seed) => filler.create(seed.sid, seed.values, seed.createdAt, seed.expiresAt));
  await filler.close();
  await fillClient.close();
  const client = await createClient({ url }).on('error', () => undefined).connect();
  const trips = new TripCounter();
  const counted = {
    get isOpen() {
      return client.isOpen;
    },
    get isReady() {
      return client.isReady;
    },
    sendCommand: (args: string[]) => trips.track(() => client.sendCommand(args)),
  };
  const provider = new lib.RedisProvider({ client: counted, prefix: PREFIX });
  return {
    provider,
    trips,
    fillMethod: 'provider.create() (EVALSHA), 5,000 in flight, pipelined by node-redis',
    cleanUp: async () => {
      if (server === undefined) {
        // A shared server: the provider's own gc takes every session and index entry of our prefix.
        const sweeper = new lib.RedisProvider({ client, prefix: PREFIX });
        await sweeper.gc(Number.MAX_SAFE_INTEGER);
        await sweeper.close();
      }
      await client.close().catch(() => undefined);
      if (server) await discard(server);
    },
  };
}

async function postgresStore(lib: Lib, count: number, now: number): Promise<Store & { fillMethod: string }> {
  let server: PgServer | undefined;
  const connectionString = process.env.DATABASE_URL ?? (server = await startPostgres()).url;
  if (server) onInterrupt.push(() => discard(server!));
  const { Pool } = require('pg') as typeof import('pg');
  const pool = new Pool({ connectionString });
  pool.on('error', () => undefined);
  await pool.query(`DROP TABLE IF EXISTS "${TABLE}"`);
  // The provider's one-row INSERTs (if it sends such), parameters collected and flushed as multi-row INSERTs of the same text.
  // A provider that batches concurrent creates itself sends its own statements: those go to the server as they are.
  const columns: (string | null)[][] = [[], [], [], [], []];
  let insert = '';
  let collected = 0;
  const collecting = {
    // `text` may be a named statement's config ({ name, text, values }): passed on as it came.
    query: async (text: string, values?: unknown[]) => {
      if (typeof text !== 'string' || !text.startsWith('INSERT INTO')) return pool.query(text, values);
      insert = text;
      collected++;
      values!.forEach((value, i) => columns[i].push(value === null ? null : String(value)));
      return { rows: [], rowCount: 1 };
    },
  };
  const flush = async (): Promise<void> => {
    if (columns[0].length === 0) return;
    // The provider's own statement, its VALUES replaced by the rows collected (same casts: $2::jsonb).
    if (!/VALUES \(\$1, \$2::jsonb, \$3, \$4, \$5\) ON CONFLICT \(sid\) DO NOTHING$/.test(insert)) throw new Error(`the provider's INSERT changed: ${insert}`);
    const text = insert.replace(
      /VALUES \(\$1, \$2::jsonb, \$3, \$4, \$5\)/,
      'SELECT s, d::jsonb, c, e, u FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) AS x(s, d, c, e, u)',
    );
    const result = await pool.query(text, columns);
    if (result.rowCount !== columns[0].length) throw new Error(`inserted ${result.rowCount} of ${columns[0].length} rows`);
    for (const column of columns) column.length = 0;
  };
  const filler = new lib.PostgresProvider({ pool: collecting, table: TABLE });
  let pending = 0;
  await fill(count, now, 5000, async (seed) => {
    const created = await filler.create(seed.sid, seed.values, seed.createdAt, seed.expiresAt);
    if (++pending >= 20_000) {
      pending = 0;
      await flush();
    }
    return created;
  });
  await flush();
  await filler.close();
  await pool.query(`VACUUM (ANALYZE) "${TABLE}"`);
  const trips = new TripCounter();
  const counted = { query: (text: string, values?: unknown[]) => trips.track(() => pool.query(text, values)) };
  const provider = new lib.PostgresProvider({ pool: counted, table: TABLE });
  return {
    provider,
    trips,
    fillMethod:
      collected > 0
        ? "provider.create(), 5,000 in flight, its one-row INSERTs' parameters flushed as multi-row INSERTs of 20,000; then VACUUM (ANALYZE)"
        : "provider.create(), 5,000 in flight (the provider sends concurrent creates as multi-row INSERTs itself); then VACUUM (ANALYZE)",
    diagnose: async () => {
      // The provider's count statement, as its source has it (lib/providers/postgres.ts).
      const { rows } = await pool.query(`EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) AS live FROM "${TABLE}" WHERE expires_at > $1`, [Date.now()]);
      const plan = (rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] })['QUERY PLAN'][0];
      const nodes: string[] = [];
      const walk = (node: PlanNode): void => {
        nodes.push(`${node['Node Type']}${node['Index Name'] ? ` on ${node['Index Name']}` : ''}${node['Workers Launched'] ? ` (${node['Workers Launched']} workers)` : ''}`);
        for (const child of node.Plans ?? []) walk(child);
      };
      walk(plan.Plan);
      return `PostgreSQL count plan: ${nodes.join(' > ')}; ${plan['Execution Time'].toFixed(1)} ms in the server`;
    },
    cleanUp: async () => {
      if (server === undefined) await pool.query(`DROP TABLE IF EXISTS "${TABLE}"`).catch(() => undefined);
      await pool.end();
      if (server) await discard(server);
    },
  };
}

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Workers Launched'?: number;
  Plans?: PlanNode[];
}

async function fileStore(lib: Lib, count: number, now: number, scratch: string): Promise<Store & { fillMethod: string }> {
  const dir = join(scratch, 'sessions');
  const filler = new lib.FileProvider({ dir });
  await fill(count, now, 64, (seed) => filler.create(seed.sid, seed.values, seed.createdAt, seed.expiresAt));
  await filler.close();
  // As an app opens it after a restart: a new provider on the folder.
  const provider = new lib.FileProvider({ dir });
  return { provider, fillMethod: 'provider.create(), 64 in flight', cleanUp: () => provider.close() };
}

/**
 * The Redis Cluster line: needs `RedisProvider` to accept `{ cluster: { rootNodes } }`
 * and a way to start a throwaway cluster (__tests__/support/redis-cluster.ts).
 */
async function clusterStore(lib: Lib, count: number, now: number): Promise<Store & { fillMethod: string }> {
  const options = (rootNodes: { url: string }[]) => ({ cluster: { rootNodes }, prefix: PREFIX }) as unknown as ConstructorParameters<Lib['RedisProvider']>[0];
  try {
    // Nothing connects before the first call: this only asks whether the option is known.
    await new lib.RedisProvider(options([{ url: 'redis://127.0.0.1:1' }])).close();
  } catch (err) {
    throw new Error(`not measured: RedisProvider does not take { cluster: { rootNodes } } yet (${(err as Error).message})`);
  }
  const support = join(__dirname, '..', '__tests__', 'support', 'redis-cluster.ts');
  if (!existsSync(support)) throw new Error('not measured: no __tests__/support/redis-cluster.ts to start a cluster with');
  const { startRedisCluster, stopRedisCluster } = require(support) as typeof import('../__tests__/support/redis-cluster');
  const cluster = await startRedisCluster();
  onInterrupt.push(() => stopRedisCluster(cluster));
  try {
    const filler = new lib.RedisProvider(options(cluster.rootNodes));
    await fill(count, now, 5000, (seed) => filler.create(seed.sid, seed.values, seed.createdAt, seed.expiresAt));
    await filler.close();
  } catch (err) {
    await stopRedisCluster(cluster);
    throw err;
  }
  // Measured through a node-redis Cluster client of our own (the provider takes one as `client`), its sendCommand counted.
  const { createCluster } = require('redis') as typeof import('redis');
  const real = await createCluster({ rootNodes: cluster.rootNodes })
    .on('error', () => undefined)
    .connect();
  const trips = new TripCounter();
  const counted = new Proxy(real, {
    get(target, property) {
      if (property === 'sendCommand') return (...args: unknown[]) => trips.track(() => (target.sendCommand as (...a: unknown[]) => Promise<unknown>)(...args));
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const provider = new lib.RedisProvider({ client: counted, prefix: PREFIX } as unknown as ConstructorParameters<Lib['RedisProvider']>[0]);
  return {
    provider,
    trips,
    fillMethod: 'provider.create() (option cluster), 5,000 in flight; 3 masters + 3 replicas (__tests__/support/redis-cluster.ts); measured through a node-redis createCluster() client',
    cleanUp: async () => {
      await real.close().catch(() => undefined);
      await stopRedisCluster(cluster);
    },
  };
}

async function measure(provider: CountProvider, count: number): Promise<CountResult> {
  const lib = loadLibrary();
  const notes: string[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'session-manager-count-'));
  onInterrupt.push(() => rmSync(scratch, { recursive: true, force: true }));
  const now = Date.now();
  let store: (Store & { fillMethod: string }) | undefined;
  let manager: InstanceType<Lib['Manager']> | undefined;
  const pinger = await pingServer();
  try {
    log(`${provider}: filling ${count.toLocaleString('en')} sessions`);
    const fillStarted = performance.now();
    if (provider === 'memory') store = await memoryStore(lib, count, now, notes);
    else if (provider === 'sqlite') store = await sqliteStore(lib, count, now, scratch);
    else if (provider === 'redis') store = await redisStore(lib, count, now);
    else if (provider === 'postgres') store = await postgresStore(lib, count, now);
    else if (provider === 'file') store = await fileStore(lib, count, now, scratch);
    else store = await clusterStore(lib, count, now);
    const fillMs = performance.now() - fillStarted;
    log(`${provider}: filled in ${(fillMs / 1000).toFixed(1)} s (${store.fillMethod})`);
    manager = lib.createManager({ provider: store.provider, onError: (err) => log(`manager error: ${err.message}`) });
    const { trips } = store;
    const m = manager;
    (global as { gc?: () => void }).gc?.();
    await sleep(200);

    // One count(): a first call, then sequential ones.
    let started = performance.now();
    const counted = await m.count();
    const firstCountMs = performance.now() - started;
    if (counted !== count) notes.push(`count() answered ${counted}, expected ${count}`);
    const countMs: number[] = [];
    let countRoundTrips: number | undefined;
    const budgetEnd = performance.now() + SEQUENTIAL_BUDGET_MS;
    for (let i = 0; i < SEQUENTIAL && (i < 3 || performance.now() < budgetEnd); i++) {
      trips?.reset();
      started = performance.now();
      await m.count();
      countMs.push(performance.now() - started);
      if (trips) countRoundTrips = Math.max(countRoundTrips ?? 0, trips.roundTrips);
    }
    if (store.diagnose) notes.push(await store.diagnose());
    if (countMs.length < SEQUENTIAL) notes.push(`only ${countMs.length} sequential counts (${SEQUENTIAL_BUDGET_MS / 1000} s budget)`);
    log(`${provider}: count() first ${firstCountMs.toFixed(2)} ms, median ${median(countMs).toFixed(2)} ms, max ${Math.max(...countMs).toFixed(2)} ms`);

    // Pings alone, then during 20 concurrent counts: three trials (one when a count takes seconds), the median by worst delay
    // reported, as the machine's own hiccups land in any one of them.
    const trialCount = median(countMs) > 1000 ? 1 : median(countMs) > 100 ? 3 : TRIALS;
    const trials: Awaited<ReturnType<typeof watch<number[]>>>[] = [];
    const idles: Awaited<ReturnType<typeof watch<void>>>[] = [];
    for (let trial = 0; trial < trialCount; trial++) {
      idles.push(await watch(() => sleep(300), pinger.ping));
      trials.push(await watch(() => Promise.all(Array.from({ length: CONCURRENT }, () => m.count())), pinger.ping));
    }
    // Each figure the median over the trials.
    const of = <W>(list: W[], pick: (each: W) => number): number => median(list.map(pick));
    const during = {
      elapsedMs: of(trials, (t) => t.elapsedMs),
      cpuMs: of(trials, (t) => t.cpuMs),
      worstDelayMs: of(trials, (t) => t.worstDelayMs),
      histogramMaxMs: of(trials, (t) => t.histogramMaxMs),
      gapMaxMs: of(trials, (t) => t.gapMaxMs),
      pings: of(trials, (t) => t.pings.length),
      pingMaxMs: of(trials, (t) => Math.max(0, ...t.pings)),
      pingMedianMs: median(trials.flatMap((t) => t.pings)),
    };
    const idle = { pingMaxMs: of(idles, (t) => Math.max(...t.pings)), pingMedianMs: median(idles.flatMap((t) => t.pings)) };
    for (const trial of trials) if (trial.value.some((value) => value !== count)) notes.push(`a concurrent count() answered ${trial.value.find((value) => value !== count)}`);
    log(
      `${provider}: ${CONCURRENT} concurrent counts in ${during.elapsedMs.toFixed(1)} ms (CPU ${during.cpuMs.toFixed(0)} ms), worst loop delay ${during.worstDelayMs.toFixed(1)} ms, ` +
        `${during.pings} pings, slowest ${during.pingMaxMs.toFixed(1)} ms (idle: slowest ${idle.pingMaxMs.toFixed(1)} ms); medians of ${trials.length} trials`,
    );

    // listByUser of users with 5 sessions.
    const listMs: number[] = [];
    let listRoundTrips: number | undefined;
    let listCommands: number | undefined;
    let listFound = Infinity;
    await m.listByUser(userName(0)); // warm-up
    for (let round = 0; round < LIST_ROUNDS; round++) {
      for (let k = 0; k < LIST_USERS; k++) {
        const user = userName((k * 47 + round * 13) % USERS);
        trips?.reset();
        started = performance.now();
        const list = await m.listByUser(user);
        listMs.push(performance.now() - started);
        listFound = Math.min(listFound, list.length);
        if (list.length !== SESSIONS_PER_USER || list.some((info) => info.userId !== user)) notes.push(`listByUser(${user}) gave ${list.length} sessions`);
        if (trips) {
          listRoundTrips = Math.max(listRoundTrips ?? 0, trips.roundTrips);
          listCommands = Math.max(listCommands ?? 0, trips.commands);
        }
      }
    }
    log(`${provider}: listByUser median ${median(listMs).toFixed(2)} ms, max ${Math.max(...listMs).toFixed(2)} ms${trips ? `, ${listRoundTrips} round trips (${listCommands} commands)` : ''}`);

    return {
      provider,
      sessions: count,
      users: USERS,
      sessionsPerUser: SESSIONS_PER_USER,
      fillMs,
      fillMethod: store.fillMethod,
      counted,
      firstCountMs,
      countMs,
      countMedianMs: median(countMs),
      countMaxMs: Math.max(...countMs),
      countRoundTrips,
      concurrent: CONCURRENT,
      trialsWorstDelayMs: trials.map((trial) => trial.worstDelayMs),
      trialsPingMaxMs: trials.map((trial) => Math.max(0, ...trial.pings)),
      concurrentTotalMs: during.elapsedMs,
      concurrentCpuMs: during.cpuMs,
      worstDelayMs: during.worstDelayMs,
      histogramMaxMs: during.histogramMaxMs,
      gapMaxMs: during.gapMaxMs,
      pingsDuring: during.pings,
      pingMaxMs: during.pingMaxMs,
      pingMedianMs: during.pingMedianMs,
      pingIdleMaxMs: idle.pingMaxMs,
      pingIdleMedianMs: idle.pingMedianMs,
      listMs,
      listMedianMs: median(listMs),
      listMaxMs: Math.max(...listMs),
      listFound,
      listRoundTrips,
      listCommands,
      notes: [...new Set(notes)],
    };
  } finally {
    const cleaning = performance.now();
    await pinger.close();
    // The manager closes the provider; cleanUp then removes the data.
    await manager?.close().catch(() => undefined);
    await store?.cleanUp().catch((err: Error) => log(`clean-up failed: ${err.message}`));
    // Whatever a failed fill left (its store never came back to clean up): servers, the temp dir. Each step is idempotent.
    await Promise.allSettled(onInterrupt.splice(0).map(async (step) => step()));
    log(`${provider}: cleaned up in ${((performance.now() - cleaning) / 1000).toFixed(1)} s`);
  }
}

/** A one-line verdict per target, for the report and the console. */
export function countVerdicts(result: CountResult): { target: string; measured: string; pass: boolean | undefined }[] {
  const name = `${result.provider} (${result.sessions.toLocaleString('en')} sessions)`;
  const list = [];
  const countTarget = COUNT_TARGET_MS[result.provider];
  list.push({
    target: `${name}: one count() ≤ ${countTarget} ms (median of ${result.countMs.length})`,
    measured: `${result.countMedianMs.toFixed(2)} ms (max ${result.countMaxMs.toFixed(2)}, first ${result.firstCountMs.toFixed(2)})`,
    pass: result.countMedianMs <= countTarget,
  });
  list.push({
    target: `${name}: ${result.concurrent} concurrent count() block nothing (worst loop delay and slowest concurrent HTTP request ≤ ${BLOCK_TARGET_MS} ms)`,
    measured:
      `${result.concurrentTotalMs.toFixed(1)} ms in all (this process's CPU ${result.concurrentCpuMs.toFixed(0)} ms); loop delay ${result.worstDelayMs.toFixed(1)} ms; ${result.pingsDuring} requests, slowest ${result.pingMaxMs.toFixed(1)} ms (idle ${result.pingIdleMaxMs.toFixed(1)})` +
      (result.trialsWorstDelayMs.length > 1
        ? `; medians of ${result.trialsWorstDelayMs.length} trials (loop delays ${result.trialsWorstDelayMs.map((ms) => ms.toFixed(1)).join(', ')}; slowest requests ${result.trialsPingMaxMs.map((ms) => ms.toFixed(1)).join(', ')})`
        : ''),
    pass: result.worstDelayMs <= BLOCK_TARGET_MS && result.pingMaxMs <= BLOCK_TARGET_MS,
  });
  const listTarget = LIST_TARGET[result.provider];
  const trips = result.listRoundTrips === undefined ? '' : `, ${result.listRoundTrips} round trips (${result.listCommands} commands)`;
  const wanted = [listTarget?.ms !== undefined ? `≤ ${listTarget.ms} ms` : '', listTarget?.roundTrips !== undefined ? `≤ ${listTarget.roundTrips} round trips` : ''].filter(Boolean).join(', ');
  list.push({
    target: `${name}: listByUser of a user with ${result.sessionsPerUser} sessions${wanted ? ` ${wanted}` : ' (no target)'}`,
    measured: `${result.listMedianMs.toFixed(2)} ms median, ${result.listMaxMs.toFixed(2)} max${trips}`,
    pass:
      listTarget === undefined
        ? undefined
        : result.listFound === result.sessionsPerUser &&
          (listTarget.ms === undefined || result.listMedianMs <= listTarget.ms) &&
          (listTarget.roundTrips === undefined || (result.listRoundTrips ?? Infinity) <= listTarget.roundTrips),
  });
  return list;
}

async function main(): Promise<void> {
  const provider = process.argv[2] as CountProvider;
  const count = Number(process.argv[3] ?? (provider === 'file' ? 100_000 : 1_000_000));
  if (!COUNT_PROVIDERS.includes(provider) || !Number.isSafeInteger(count) || count < USERS * SESSIONS_PER_USER) {
    throw new Error(`usage: count.ts <${COUNT_PROVIDERS.join('|')}> [sessions ≥ ${USERS * SESSIONS_PER_USER}]`);
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: cleaning up`);
      Promise.allSettled(onInterrupt.map(async (step) => step())).finally(() => process.exit(130));
    });
  }
  let result: CountResult;
  try {
    result = await measure(provider, count);
  } catch (err) {
    // A provider that cannot be measured here (no server, no cluster support) is a line of the report, not a crash.
    const message = err instanceof Error ? err.message : String(err);
    log(`${provider}: ${message}`);
    process.stdout.write(JSON.stringify({ provider, error: message }) + '\n');
    process.exit(0);
  }
  for (const verdict of countVerdicts(result)) log(`${verdict.pass === undefined ? '—   ' : verdict.pass ? 'PASS' : 'MISS'} ${verdict.target}: ${verdict.measured}`);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
