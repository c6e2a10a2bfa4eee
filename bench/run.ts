/**
 * The benchmark: session-manager against express-session, each mode an
 * Express 5 server in its own process, driven by autocannon from this one.
 *
 *   npm run bench               full: 10 s per measurement, 3 rounds
 *   npm run bench -- --quick    quick: 3 s per measurement, 2 rounds
 *   npm run bench -- --modes floor,session-manager:sqlite,express-session+better-sqlite3-session-store   only these modes (bare, floor and express-session are always kept: the ratios need them)
 *   BENCH_LIB=/tmp/candidate/lib/index.ts npm run bench -- --quick   measure a copy of lib/ with a candidate change
 *   npm run bench -- --only count [--quick] [--providers memory,redis]   only counts and per-user listings at scale (bench/count.ts);
 *                                                                         a full run has them too, a run restricted by --modes only with --providers
 *
 * A run restricted by --modes, --only or BENCH_LIB writes only its timestamped `-partial` files, never latest.*.
 *
 * Every mode is compared with `floor` (the least a signed-cookie session
 * middleware can do, bench/server.ts) and every session-manager provider with
 * its express-session twin on the same store (bench/modes.ts TWINS), within
 * each round.
 *
 * Writes bench/results/latest.{md,json} and a timestamped copy, and prints the table.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, platform, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { discard, startPostgres, startRedis, type PgServer, type RedisServer } from '../__tests__/support/services';
import { login, lostUpdates, measure, send, startServer, type RunningServer } from './load';
import { COUNT_PROVIDERS, type CountProvider, type CountResult } from './count';
import { HEAP_STORES, isMode, MODES, REFERENCE_MODES, usesPostgres, usesRedis, type BenchConfig, type Mode } from './modes';
import { markdown, PATHS, summarise, verdicts, type RawResults } from './report';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const RESULTS = join(__dirname, 'results');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const modesArg = args.indexOf('--modes');
const onlyArg = args.indexOf('--only');
const only = onlyArg < 0 ? undefined : args[onlyArg + 1];
if (only !== undefined && only !== 'count') throw new Error(`--only takes count, not ${only}`);
const providersArg = args.indexOf('--providers');
const settings = {
  quick,
  seconds: quick ? 3 : 10,
  warmupSeconds: 1,
  rounds: quick ? 2 : 3,
  connections: 50,
  sessions: 1000,
  lostUpdateKeys: 50,
  lostUpdateTrials: 3,
  heapSessions: 100_000,
  expirySessions: 1_000_000,
  /** The worst delay of one sweep is at the mercy of the (shared, noisy) machine: the median of three sweeps is reported. */
  expiryTrials: 3,
  /** Counts and per-user listings at scale (bench/count.ts), each provider in its own process; the file provider last. */
  only,
  countSessions: quick ? 100_000 : 1_000_000,
  countFileSessions: quick ? 10_000 : 100_000,
  countProviders: countProviders(),
};

function countProviders(): CountProvider[] {
  const order: CountProvider[] = ['memory', 'sqlite', 'redis', 'postgres', 'redis-cluster', 'file'];
  if (providersArg < 0) return order;
  const wanted = (args[providersArg + 1] ?? '').split(',');
  for (const name of wanted) if (!(COUNT_PROVIDERS as readonly string[]).includes(name)) throw new Error(`unknown provider ${name}; providers: ${COUNT_PROVIDERS.join(', ')}`);
  return order.filter((name) => wanted.includes(name));
}

function selectedModes(): Mode[] {
  if (modesArg < 0) return [...MODES];
  const wanted = (args[modesArg + 1] ?? '').split(',');
  for (const mode of wanted) if (!isMode(mode)) throw new Error(`unknown mode ${mode}; modes: ${MODES.join(', ')}`);
  return MODES.filter((mode) => (REFERENCE_MODES as readonly Mode[]).includes(mode) || wanted.includes(mode));
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

function environment(): Record<string, unknown> {
  const own = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const names = [
    'express',
    'express-session',
    'memorystore',
    'connect-redis',
    'better-sqlite3-session-store',
    'connect-pg-simple',
    'session-file-store',
    'cookie-signature',
    'redis',
    'pg',
    'better-sqlite3',
    'autocannon',
    'ts-node',
  ];
  return {
    date: new Date().toISOString(),
    command: `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}  (= ts-node --transpile-only bench/run.ts${args.length > 0 ? ` ${args.join(' ')}` : ''})`,
    library: process.env.BENCH_LIB ? `BENCH_LIB=${process.env.BENCH_LIB}` : 'lib/',
    node: process.version,
    v8: process.versions.v8,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    platform: `${platform()} ${release()}`,
    packages: { 'session-manager': own.version, ...Object.fromEntries(names.map((name) => [name, packageVersion(name)])) },
  };
}

/** Runs one of the in-process measurement scripts in a fresh Node with --expose-gc; resolves its JSON line or the error text. */
async function script<T>(file: string, argv: string[], timeout = 300_000): Promise<T | string> {
  try {
    const { stdout } = await run(process.execPath, ['--expose-gc', '--max-old-space-size=4096', '-r', 'ts-node/register/transpile-only', join(__dirname, file), ...argv], {
      cwd: ROOT,
      timeout,
      maxBuffer: 1 << 20,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true' },
    });
    return JSON.parse(stdout.trim().split('\n').pop()!) as T;
  } catch (err) {
    const error = err as Error & { stderr?: string };
    return (error.stderr?.trim().split('\n').slice(-3).join(' ') || error.message).slice(0, 400);
  }
}

/** The modes in the order of round `round`: rotated so no mode always runs first (or right after another). */
function orderFor(modes: Mode[], round: number): Mode[] {
  const shift = (round * 3) % modes.length;
  const rotated = [...modes.slice(shift), ...modes.slice(0, shift)];
  return round % 2 === 1 ? rotated.reverse() : rotated;
}

async function main(): Promise<void> {
  const started = Date.now();
  const modes = selectedModes();
  const raw: RawResults = {
    environment: environment(),
    settings,
    skipped: {},
    rounds: [],
    creation: [],
    lostUpdates: {},
    lostUpdateKeys: settings.lostUpdateKeys,
    heap: {},
    expiry: {},
    counts: {},
  };
  const scratchDir = mkdtempSync(join(tmpdir(), 'session-manager-bench-'));
  const config: BenchConfig = { scratchDir };
  let redis: RedisServer | undefined;
  let postgres: PgServer | undefined;
  const servers = new Map<Mode, RunningServer>();
  const cookies = new Map<Mode, string[]>();

  const cleanUp = async (): Promise<void> => {
    await Promise.all([...servers.values()].map((server) => server.stop()));
    servers.clear();
    if (redis) await discard(redis);
    if (postgres) await discard(postgres);
    redis = postgres = undefined;
    rmSync(scratchDir, { recursive: true, force: true });
  };
  const interrupted = (): void => {
    log('interrupted: stopping servers');
    cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    if (only === undefined) await loadAndInProcess();
    // Counts and per-user listings at scale, one process per provider, alone on the machine. Not in a run
    // restricted by --modes (a throughput comparison), unless --providers asks for them too.
    const countProviders = modesArg < 0 || providersArg >= 0 || only === 'count' ? settings.countProviders : [];
    for (const provider of countProviders) {
      const sessions = provider === 'file' ? settings.countFileSessions : settings.countSessions;
      log(`count ${provider}: ${sessions.toLocaleString('en')} sessions`);
      const answer = await script<CountResult | { error: string }>('count.ts', [provider, String(sessions)], 1_200_000);
      const result = typeof answer === 'object' && 'error' in answer ? answer.error : answer;
      raw.counts![provider] = result;
      log(`count ${provider}: ${typeof result === 'string' ? result : `count() median ${result.countMedianMs.toFixed(2)} ms, listByUser median ${result.listMedianMs.toFixed(2)} ms`}`);
    }
  } finally {
    await cleanUp();
  }

  async function loadAndInProcess(): Promise<void> {
    const needsRedis = modes.some(usesRedis);
    const needsPostgres = modes.some(usesPostgres);
    await Promise.all([
      needsRedis &&
        startRedis().then(
          (server) => ((redis = server), (config.redisUrl = server.url)),
          (err: Error) => (config.redisSkip = `redis-server did not start: ${err.message}`),
        ),
      needsPostgres &&
        startPostgres().then(
          (server) => ((postgres = server), (config.postgresUrl = server.url)),
          (err: Error) => (config.postgresSkip = `PostgreSQL did not start: ${err.message}`),
        ),
    ]);

    // Start every server, log the users in, check that /read really reads the session, warm up.
    for (const mode of modes) {
      let server: RunningServer | undefined;
      try {
        server = await startServer(mode, config);
        const list = await login(server.port, settings.sessions, mode !== 'bare');
        const check = await send(server.port, 'GET', '/read', { cookie: list[1] });
        const expected = mode === 'bare' ? 'guest' : 'user1';
        if (check.status !== 200 || check.body !== expected) throw new Error(`GET /read answered ${check.status} ${JSON.stringify(check.body)}, expected ${expected}`);
        for (const path of PATHS) await measure(server.port, path, settings.warmupSeconds, { cookies: list });
        servers.set(mode, server);
        cookies.set(mode, list);
        log(`${mode}: ready on port ${server.port}`);
      } catch (err) {
        const reason = `${(err as Error).message}${server ? ` ${server.stderrTail()}` : ''}`.trim();
        raw.skipped[mode] = reason;
        log(`${mode}: skipped (${reason.split('\n')[0]})`);
        await server?.stop();
      }
    }

    const alive = (mode: Mode): RunningServer | undefined => {
      const server = servers.get(mode);
      if (server && server.child.exitCode === null && server.child.signalCode === null) return server;
      if (server) {
        raw.skipped[mode] = `server died during the run: ${server.stderrTail()}`;
        servers.delete(mode);
      }
      return undefined;
    };

    // Throughput: every mode in every round, alternating, order rotated.
    for (let round = 0; round < settings.rounds; round++) {
      const results: RawResults['rounds'][number] = {};
      for (const mode of orderFor(modes, round)) {
        const server = alive(mode);
        if (!server) continue;
        results[mode] = {};
        for (const path of PATHS) {
          const result = await measure(server.port, path, settings.seconds, { cookies: cookies.get(mode) });
          results[mode]![path] = result;
          log(`round ${round + 1} ${mode} ${path}: ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms${result.errors + result.non2xx > 0 ? `, ${result.errors} errors, ${result.non2xx} non-2xx` : ''}`);
        }
      }
      raw.rounds.push(results);
    }

    // Lost updates, before the login flood below can evict anything.
    for (const mode of modes) {
      if (mode === 'bare') continue;
      const server = alive(mode);
      if (!server) continue;
      try {
        const trials: number[] = [];
        for (let trial = 0; trial < settings.lostUpdateTrials; trial++) trials.push(await lostUpdates(server.port, settings.lostUpdateKeys));
        raw.lostUpdates[mode] = trials;
        log(`lost updates ${mode}: ${trials.join(', ')} of ${settings.lostUpdateKeys} kept`);
      } catch (err) {
        raw.lostUpdates[mode] = `failed: ${(err as Error).message}`;
      }
    }

    // Session creation: POST /login without a cookie, every request a new session.
    for (let round = 0; round < settings.rounds; round++) {
      const results: RawResults['creation'][number] = {};
      for (const mode of orderFor(modes, round)) {
        const server = alive(mode);
        if (!server) continue;
        results[mode] = await measure(server.port, '/login', settings.seconds, { method: 'POST', body: 'username=newcomer' });
        log(`round ${round + 1} ${mode} POST /login: ${results[mode]!.rps.toFixed(0)} req/s`);
      }
      raw.creation.push(results);
    }

    for (const mode of modes) alive(mode); // record any server that died
    await cleanUp();

    // In-process measurements, with the servers gone so they run alone.
    for (const store of HEAP_STORES) {
      raw.heap[store] = await script('heap.ts', [store, String(settings.heapSessions)]);
      log(`heap ${store}: ${JSON.stringify(raw.heap[store])}`);
    }
    for (const store of ['session-manager:memory', 'express-session']) {
      if (store === 'express-session') {
        raw.expiry[store] = await script('expiry.ts', [store, String(settings.expirySessions)]);
      } else {
        const trials: (Record<string, unknown> | string)[] = [];
        for (let trial = 0; trial < settings.expiryTrials; trial++) trials.push(await script('expiry.ts', [store, String(settings.expirySessions)]));
        const failed = trials.find((each) => typeof each === 'string');
        const sweeps = trials.filter((each): each is Record<string, unknown> => typeof each !== 'string').sort((a, b) => Number(a.worstDelayMs) - Number(b.worstDelayMs));
        raw.expiry[store] = failed ?? { ...sweeps[sweeps.length >> 1], trialsWorstDelayMs: trials.map((each) => Number((each as Record<string, unknown>).worstDelayMs)) };
      }
      log(`expiry ${store}: ${JSON.stringify(raw.expiry[store])}`);
    }
  }

  raw.settings = { ...settings, elapsedSeconds: Math.round((Date.now() - started) / 1000) };
  const summary = summarise(raw);
  const checks = verdicts(raw, summary);
  const table = markdown(raw, summary, checks);
  const json = JSON.stringify({ ...raw, summary, verdicts: checks }, null, 2);
  mkdirSync(RESULTS, { recursive: true });
  const stamp = String(raw.environment.date).replace(/[:.]/g, '-');
  const kind = quick ? 'quick' : 'full';
  // A run of some modes, or of a candidate lib/, is kept but is not "the latest" result.
  const partial = modesArg >= 0 || only !== undefined || providersArg >= 0 || process.env.BENCH_LIB !== undefined;
  const name = `${stamp}-${kind}${only ? `-${only}` : ''}${partial ? '-partial' : ''}`;
  const files: [string, string][] = [
    [`${name}.md`, table],
    [`${name}.json`, json],
  ];
  if (!partial) files.push(['latest.md', table], ['latest.json', json]);
  for (const [file, content] of files) {
    writeFileSync(join(RESULTS, file), content + '\n');
  }
  process.stdout.write(table + '\n');
  log(`done in ${raw.settings.elapsedSeconds} s; written to bench/results/${files.map(([file]) => file).join(', ')}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
