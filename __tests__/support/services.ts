/**
 * Real Redis and PostgreSQL servers for the provider tests: throwaway ones
 * started from the local binaries (global setup shares one of each; fault
 * tests start private ones they may stop and restart without disturbing other
 * suites), or the servers named by REDIS_URL / DATABASE_URL.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, chownSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where global setup records what it started, for teardown and for tests. */
export const STATE_FILE = join(tmpdir(), `session-manager-services-${process.env.SESSION_TEST_RUN_ID ?? process.pid}.json`);

export interface RedisServer {
  kind: 'redis';
  url: string;
  port: number;
  pid: number;
  dir: string;
}

export interface PgServer {
  kind: 'postgres';
  url: string;
  port: number;
  dir: string;
}

export interface ServicesState {
  redis?: RedisServer;
  postgres?: PgServer;
}

/** PATH first, then where Debian/Ubuntu packages put the binaries (PostgreSQL's are not on PATH there). */
const PATH_DIRS = (process.env.PATH ?? '').split(':').filter(Boolean);
const REDIS_BIN = [...PATH_DIRS, '/usr/bin', '/usr/local/bin'].map((dir) => join(dir, 'redis-server'));
const PG_BIN_DIRS = [...PATH_DIRS, '/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin'];

/** Path of redis-server, or undefined when it is not installed. REDIS_SERVER_BIN, when set, is the only place looked at. */
export function redisBinary(): string | undefined {
  const candidates = process.env.REDIS_SERVER_BIN !== undefined ? [process.env.REDIS_SERVER_BIN] : REDIS_BIN;
  return candidates.find((path) => existsSync(path));
}

/** The directory holding initdb and pg_ctl, or undefined when PostgreSQL is not installed. PG_BIN_DIR, when set, is the only place looked at. */
export function pgBinDir(): string | undefined {
  const candidates = process.env.PG_BIN_DIR !== undefined ? [process.env.PG_BIN_DIR] : PG_BIN_DIRS;
  return candidates.find((dir) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl')));
}

/** A TCP port nobody listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves once `PING` on the port answers `+PONG`. */
async function redisAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * Starts a throwaway redis-server (no persistence) on `port` (a free one by
 * default), detached so it outlives the Jest worker that started it only
 * until someone stops it by pid.
 */
export async function startRedis(port?: number, dir?: string): Promise<RedisServer> {
  const binary = redisBinary();
  if (binary === undefined) throw new Error('redis-server is not installed');
  const chosen = port ?? (await freePort());
  const workDir = dir ?? mkdtempSync(join(tmpdir(), 'session-manager-redis-'));
  const child = spawn(binary, ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', workDir], {
    stdio: 'ignore',
    detached: true,
  });
  child.unref();
  const server: RedisServer = { kind: 'redis', url: `redis://127.0.0.1:${chosen}`, port: chosen, pid: child.pid ?? -1, dir: workDir };
  try {
    if (child.pid === undefined) throw new Error(`could not start ${binary}`);
    await waitFor(() => redisAnswers(chosen), `redis-server on port ${chosen}`);
  } catch (error) {
    if (child.pid !== undefined) child.kill('SIGKILL');
    if (dir === undefined) rmSync(workDir, { recursive: true, force: true });
    throw error;
  }
  return server;
}

/** Kills the server (SIGKILL: a crash, not a polite shutdown) and waits until the port is closed. */
export async function stopRedis(server: RedisServer): Promise<void> {
  // The pid may be stale (a reaped run) and reused by another process: kill only our server.
  if (!isOurRedis(server)) return;
  try {
    process.kill(server.pid, 'SIGKILL');
  } catch {
    return; // already gone
  }
  await waitFor(async () => !(await redisAnswers(server.port)), `redis-server ${server.pid} stopping`);
}

function isOurRedis(server: RedisServer): boolean {
  try {
    const command = readFileSync(`/proc/${server.pid}/cmdline`, 'utf8');
    return command.includes('redis-server') && command.includes(String(server.port));
  } catch {
    return !existsSync('/proc/self'); // no procfs to check with: trust the pid
  }
}

/** Starts a new redis-server on the same port (empty: the test server keeps no data). */
export async function restartRedis(server: RedisServer): Promise<RedisServer> {
  return startRedis(server.port, server.dir);
}

/** Runs a PostgreSQL binary as the `postgres` OS user when we are root (PostgreSQL refuses root). */
async function asPostgres(binary: string, args: string[]): Promise<void> {
  const [file, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, args];
  await run(file, argv, { timeout: 60_000 });
}

/**
 * initdb + pg_ctl start of a throwaway cluster: trust auth, listening on
 * 127.0.0.1 only, its unix socket inside its own temp dir, fsync off (test data).
 */
export async function startPostgres(): Promise<PgServer> {
  const bin = pgBinDir();
  if (bin === undefined) throw new Error('PostgreSQL (initdb, pg_ctl) is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'session-manager-pg-'));
  if (process.getuid?.() === 0) {
    // initdb runs as `postgres`, which must own the directory.
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const port = await freePort();
  const server: PgServer = { kind: 'postgres', url: `postgres://postgres@127.0.0.1:${port}/postgres`, port, dir };
  try {
    await asPostgres(join(bin, 'initdb'), ['-D', join(dir, 'data'), '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    await pgStart(server);
  } catch (error) {
    await discard(server);
    throw error;
  }
  return server;
}

/** pg_ctl start -w of a cluster made by startPostgres (again after pgStop). */
export async function pgStart(server: PgServer): Promise<void> {
  const bin = pgBinDir()!;
  const settings = `-p ${server.port} -k ${server.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  await asPostgres(join(bin, 'pg_ctl'), ['-D', join(server.dir, 'data'), '-l', join(server.dir, 'log'), '-o', settings, '-w', 'start']);
}

/** pg_ctl stop -m fast: disconnects every client and shuts down. */
export async function pgStop(server: PgServer): Promise<void> {
  await asPostgres(join(pgBinDir()!, 'pg_ctl'), ['-D', join(server.dir, 'data'), '-m', 'fast', '-w', 'stop']);
}

/** Stops a server started here and deletes its directory. Errors are swallowed: teardown must finish. */
export async function discard(server: RedisServer | PgServer): Promise<void> {
  if (server.kind === 'redis') await stopRedis(server).catch(() => undefined);
  else await pgStop(server).catch(() => undefined);
  rmSync(server.dir, { recursive: true, force: true });
}

/**
 * Stops the servers of earlier runs whose Jest process died before its
 * teardown (Ctrl-C, a crash): their state files name a pid that is gone.
 */
export async function reapStaleRuns(): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    const match = /^session-manager-services-(\d+)\.json$/.exec(name);
    if (match === null || isAlive(Number(match[1]))) continue;
    const file = join(tmpdir(), name);
    let state: ServicesState = {};
    try {
      state = JSON.parse(readFileSync(file, 'utf8')) as ServicesState;
    } catch {
      // unreadable: only the file goes
    }
    await Promise.all([state.redis, state.postgres].filter((server) => server !== undefined).map(discard));
    rmSync(file, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function writeState(state: ServicesState): void {
  writeFileSync(STATE_FILE, JSON.stringify(state));
}

/** What global setup started (empty when the servers came from REDIS_URL / DATABASE_URL). */
export function readState(): ServicesState {
  try {
    return JSON.parse(readFileSync(STATE_FILE, 'utf8')) as ServicesState;
  } catch {
    return {};
  }
}

/**
 * Why the suites of `service` skip, or undefined when its URL is set. Set by
 * global setup when the server binary is missing outside CI.
 */
export function skipReason(service: 'redis' | 'postgres'): string | undefined {
  const url = service === 'redis' ? process.env.REDIS_URL : process.env.DATABASE_URL;
  if (url) return undefined;
  return process.env[`SESSION_TEST_${service.toUpperCase()}_SKIP`] ?? `${service === 'redis' ? 'REDIS_URL' : 'DATABASE_URL'} is not set`;
}

const ROOT = join(__dirname, '..', '..');

/**
 * The error a provider throws when its driver cannot be found, observed for
 * real: lib/errors.ts and every module of lib/providers/ are transpiled into a temp dir
 * outside this project (so `require('<driver>')` finds no node_modules) and
 * constructed in a child process. No module mocking involved.
 */
export async function missingDriverMessage(module: 'redis' | 'postgres', exportName: string, options: Record<string, unknown>): Promise<string> {
  const ts = require('typescript') as typeof import('typescript');
  const dir = mkdtempSync(join(tmpdir(), 'session-manager-nodriver-'));
  try {
    const providerFiles = readdirSync(join(ROOT, 'lib', 'providers')).filter((name) => name.endsWith('.ts'));
    for (const file of ['errors.ts', ...providerFiles.map((name) => `providers/${name}`)]) {
      const source = readFileSync(join(ROOT, 'lib', file), 'utf8');
      const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } });
      const target = join(dir, 'lib', file.replace(/\.ts$/, '.js'));
      mkdirSync(join(target, '..'), { recursive: true });
      writeFileSync(target, outputText);
    }
    const code = `
      const { ${exportName}: Provider } = require('./lib/providers/${module}.js');
      try { new Provider(${JSON.stringify(options)}); console.log('constructed'); } catch (error) { console.log(error.message); }`;
    const { stdout } = await run(process.execPath, ['-e', code], { cwd: dir, env: { ...process.env, NODE_PATH: '' } });
    return stdout.trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
