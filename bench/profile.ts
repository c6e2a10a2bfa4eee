/**
 * Where a server's time goes: runs one mode under `node --cpu-prof`, drives
 * one route with the benchmark's load, and summarises the .cpuprofile (self
 * time per function, time per area — each lib/ file, each package, Node
 * internals, GC — and inclusive time of lib/ functions).
 *
 *   npx ts-node --transpile-only bench/profile.ts session-manager:memory /rmw [seconds]
 *   npx ts-node --transpile-only bench/profile.ts --summarise file.cpuprofile
 *   npx ts-node --transpile-only bench/profile.ts --compare results/profiles/bare-read results/profiles/session-manager_memory-read
 *
 * Writes bench/results/profiles/<mode>-<route>.{cpuprofile,md,json} and prints
 * the summary; --compare prints CPU µs per request by area, side by side.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { discard, startPostgres, startRedis, type PgServer, type RedisServer } from '../__tests__/support/services';
import { login, measure, startServer } from './load';
import { isMode, usesPostgres, usesRedis, type BenchConfig } from './modes';

const ROOT = join(__dirname, '..');
const OUT = join(__dirname, 'results', 'profiles');

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Which part of the stack a frame belongs to: a lib/ file, a package, Node itself, or V8's own. */
function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const path = url.replace(/^file:\/\//, '');
  const packageMatch = /node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(path);
  if (packageMatch) return packageMatch[1].replace(/\\/g, '/');
  const local = relative(ROOT, path);
  return local.startsWith('..') ? path : local.split(sep).join('/');
}

function label(frame: CallFrame): string {
  return `${frame.functionName || '(anonymous)'} ${area(frame)}:${frame.lineNumber + 1}`;
}

/** A span of CLOCK_MONOTONIC microseconds (V8's profile clock and `process.hrtime` on Linux). */
export interface Window {
  fromUs: number;
  toUs: number;
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Self and inclusive time of one profile, in microseconds. */
interface Analysis {
  busyUs: number;
  idleUs: number;
  totalUs: number;
  selfByArea: Map<string, number>;
  selfByFunction: Map<string, number>;
  inclusive: Map<string, number>;
}

/** With `window`, only samples taken inside it count (the measurement, not start-up, transpiling or logins). */
function analyse(profile: CpuProfile, window?: Window): Analysis {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i + 1] is the time spent in samples[i] (what DevTools does).
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + delta);
  }
  const totalUs = [...selfUs.values()].reduce((sum, value) => sum + value, 0);
  const idleUs = profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').reduce((sum, node) => sum + (selfUs.get(node.id) ?? 0), 0);

  const selfByFunction = new Map<string, number>();
  const selfByArea = new Map<string, number>();
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0 || node.callFrame.functionName === '(idle)') continue;
    const key = label(node.callFrame);
    selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + us);
    const where = area(node.callFrame);
    selfByArea.set(where, (selfByArea.get(where) ?? 0) + us);
  }

  // Inclusive time per function, counting a recursive function once per stack.
  const inclusive = new Map<string, number>();
  const subtree = new Map<number, number>();
  const total = (id: number): number => {
    const cached = subtree.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id)!;
    const sum = (selfUs.get(id) ?? 0) + (node.children ?? []).reduce((acc, child) => acc + total(child), 0);
    subtree.set(id, sum);
    return sum;
  };
  const onStack = new Map<string, number>();
  const walk = (id: number): void => {
    const node = byId.get(id)!;
    const key = label(node.callFrame);
    if ((onStack.get(key) ?? 0) === 0) inclusive.set(key, (inclusive.get(key) ?? 0) + total(id));
    onStack.set(key, (onStack.get(key) ?? 0) + 1);
    for (const child of node.children ?? []) walk(child);
    onStack.set(key, onStack.get(key)! - 1);
  };
  walk(profile.nodes[0].id);
  return { busyUs: totalUs - idleUs, idleUs, totalUs, selfByArea, selfByFunction, inclusive };
}

/** What the profiler run recorded beside the .cpuprofile. */
interface Run {
  mode: string;
  route: string;
  requests: number;
  window: Window;
}

/**
 * The summary as markdown: self time by area, top functions by self time,
 * lib/ functions by inclusive time (which, for a function that calls back
 * into the app — the middleware's `next()`, the commit's `end()` — includes
 * the app's own work). Per-request columns when the request count is known.
 */
export function summarise(profile: CpuProfile, title: string, run?: Run, top = 25): string {
  const { busyUs, idleUs, totalUs, selfByArea, selfByFunction, inclusive } = analyse(profile, run?.window);
  const percent = (us: number): string => `${((100 * us) / busyUs).toFixed(1)}%`;
  const ms = (us: number): string => (us / 1000).toFixed(0);
  const perRequest = (us: number): string => (run ? ` | ${(us / run.requests).toFixed(2)}` : '');
  const head = run ? ' | µs/request |' : ' |';
  const rule = run ? ' | ---: |' : ' |';
  const lines = [`## ${title}`, '', `Busy ${ms(busyUs)} ms of ${ms(totalUs)} ms sampled (idle ${ms(idleUs)} ms)${run ? `, ${run.requests} requests: ${(busyUs / run.requests).toFixed(1)} µs of CPU per request` : ''}. Shares are of busy time.`, ''];
  lines.push('### Self time by area', '', `| area | ms | share${head}`, `| --- | ---: | ---:${rule}`);
  for (const [where, us] of [...selfByArea].sort((a, b) => b[1] - a[1]).slice(0, 20)) lines.push(`| ${where} | ${ms(us)} | ${percent(us)}${perRequest(us)} |`);
  lines.push('', `### Top ${top} functions by self time`, '', `| function | ms | share${head}`, `| --- | ---: | ---:${rule}`);
  for (const [key, us] of [...selfByFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`| ${key} | ${ms(us)} | ${percent(us)}${perRequest(us)} |`);
  lines.push('', '### lib/ functions by inclusive time (self + callees, app callbacks included)', '', `| function | ms | share${head}`, `| --- | ---: | ---:${rule}`);
  for (const [key, us] of [...inclusive].filter(([key]) => / lib\//.test(key)).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`| ${key} | ${ms(us)} | ${percent(us)}${perRequest(us)} |`);
  }
  return lines.join('\n') + '\n';
}

/** CPU µs per request by area, side by side, for profiles written by this script (each with its .json beside it). */
export function compare(bases: string[]): string {
  const columns = bases.map((base) => {
    const run = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as Run;
    const analysis = analyse(JSON.parse(readFileSync(`${base}.cpuprofile`, 'utf8')) as CpuProfile, run.window);
    return { run, analysis };
  });
  const areas = new Map<string, number>();
  for (const { run, analysis } of columns) {
    for (const [where, us] of analysis.selfByArea) areas.set(where, Math.max(areas.get(where) ?? 0, us / run.requests));
  }
  const lines = [
    `| CPU µs per request | ${columns.map(({ run }) => `${run.mode} ${run.route}`).join(' | ')} |`,
    `| --- | ${columns.map(() => '---:').join(' | ')} |`,
    `| **total busy** | ${columns.map(({ run, analysis }) => `**${(analysis.busyUs / run.requests).toFixed(1)}**`).join(' | ')} |`,
  ];
  for (const [where] of [...areas].sort((a, b) => b[1] - a[1]).filter(([, us]) => us >= 0.5)) {
    lines.push(`| ${where} | ${columns.map(({ run, analysis }) => ((analysis.selfByArea.get(where) ?? 0) / run.requests).toFixed(1)).join(' | ')} |`);
  }
  return lines.join('\n') + '\n';
}

async function profileServer(mode: string, route: string, seconds: number): Promise<void> {
  if (!isMode(mode)) throw new Error(`unknown mode ${mode}`);
  if (!['/read', '/rmw', '/login'].includes(route)) throw new Error('route must be /read, /rmw or /login');
  const scratchDir = mkdtempSync(join(tmpdir(), 'session-manager-profile-'));
  const profileDir = join(scratchDir, 'profile');
  const config: BenchConfig = { scratchDir };
  let redis: RedisServer | undefined;
  let postgres: PgServer | undefined;
  let run: Run | undefined;
  try {
    if (usesRedis(mode)) config.redisUrl = (redis = await startRedis()).url;
    if (usesPostgres(mode)) config.postgresUrl = (postgres = await startPostgres()).url;
    const server = await startServer(mode, config, ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]);
    try {
      const cookies = await login(server.port, 1000, mode !== 'bare');
      const load = route === '/login' ? { method: 'POST' as const, body: 'username=newcomer' } : { cookies };
      await measure(server.port, route, 1, load); // warm-up
      const fromUs = monotonicUs();
      const result = await measure(server.port, route, seconds, load);
      run = { mode: process.env.BENCH_LIB ? `${mode} (BENCH_LIB)` : mode, route, requests: result.requests, window: { fromUs, toUs: monotonicUs() } };
      process.stderr.write(`[profile] ${mode} ${route}: ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms (under the profiler)\n`);
    } finally {
      await server.stop();
    }
    const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'));
    if (file === undefined) throw new Error('the server wrote no .cpuprofile');
    mkdirSync(OUT, { recursive: true });
    const base = join(OUT, `${mode.replace(/[:+]/g, '_')}-${route.slice(1)}${process.env.BENCH_LIB ? '-candidate' : ''}`);
    renameSync(join(profileDir, file), `${base}.cpuprofile`);
    const profile = JSON.parse(readFileSync(`${base}.cpuprofile`, 'utf8')) as CpuProfile;
    const summary = summarise(profile, `${mode} ${route} (${seconds} s of load at 50 connections; samples of the load window only)`, run);
    writeFileSync(`${base}.md`, summary);
    writeFileSync(`${base}.json`, JSON.stringify(run) + '\n');
    process.stdout.write(summary);
    process.stderr.write(`[profile] written to ${relative(ROOT, base)}.{cpuprofile,md}\n`);
  } finally {
    if (redis) await discard(redis);
    if (postgres) await discard(postgres);
    rmSync(scratchDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const [first, second, third] = process.argv.slice(2);
  if (first === '--compare') {
    process.stdout.write(compare(process.argv.slice(3).map((file) => file.replace(/\.(cpuprofile|json|md)$/, ''))));
    return;
  }
  if (first === '--summarise') {
    process.stdout.write(summarise(JSON.parse(readFileSync(second, 'utf8')) as CpuProfile, second));
    return;
  }
  await profileServer(first, second ?? '/rmw', Number(third ?? 10));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
