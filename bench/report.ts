/** Turns the raw results of a run into medians, target verdicts and the markdown table. */
import type { LoadResult } from './load';
import { MODES, type Mode } from './modes';

export const PATHS = ['/read', '/rmw'] as const;
export type Path = (typeof PATHS)[number];

export interface RawResults {
  environment: Record<string, unknown>;
  settings: Record<string, unknown>;
  skipped: Partial<Record<Mode, string>>;
  /** rounds[r][mode][path]: one measurement; a mode missing from a round did not run in it. */
  rounds: Partial<Record<Mode, Partial<Record<Path, LoadResult>>>>[];
  /** creation[r][mode]: POST /login. */
  creation: Partial<Record<Mode, LoadResult>>[];
  /** Keys of 50 that survived, per trial. */
  lostUpdates: Partial<Record<Mode, number[] | string>>;
  lostUpdateKeys: number;
  heap: Record<string, { bytesPerSession: number; count: number } | string>;
  expiry: Record<string, Record<string, unknown> | string>;
}

export interface ModeSummary {
  rps: Partial<Record<Path | '/login', number>>;
  p99: Partial<Record<Path | '/login', number>>;
  /** Median of the per-round ratios. */
  toBare: Partial<Record<Path | '/login', number>>;
  toExpressSession: Partial<Record<Path | '/login', number>>;
  /** Requests that failed or answered non-2xx, over all rounds. */
  failures: number;
}

export interface Verdict {
  target: string;
  measured: string;
  pass: boolean | undefined;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Medians per mode; ratios are taken within each round, then their median. */
export function summarise(raw: RawResults): Partial<Record<Mode, ModeSummary>> {
  const summary: Partial<Record<Mode, ModeSummary>> = {};
  const series = (rounds: Partial<Record<Mode, LoadResult>>[], key: Path | '/login'): void => {
    for (const mode of MODES) {
      const runs = rounds.map((round) => round[mode]).filter((run): run is LoadResult => run !== undefined);
      if (runs.length === 0) continue;
      const entry = (summary[mode] ??= { rps: {}, p99: {}, toBare: {}, toExpressSession: {}, failures: 0 });
      entry.rps[key] = median(runs.map((run) => run.rps));
      entry.p99[key] = median(runs.map((run) => run.p99));
      entry.failures += runs.reduce((sum, run) => sum + run.errors + run.non2xx, 0);
      const ratio = (reference: Mode): number =>
        median(rounds.flatMap((round) => (round[mode] && round[reference] ? [round[mode]!.rps / round[reference]!.rps] : [])));
      entry.toBare[key] = ratio('bare');
      entry.toExpressSession[key] = ratio('express-session');
    }
  };
  for (const path of PATHS) series(raw.rounds.map((round) => Object.fromEntries(Object.entries(round).flatMap(([mode, byPath]) => (byPath[path] ? [[mode, byPath[path]]] : [])))), path);
  series(raw.creation, '/login');
  return summary;
}

const fixed = (value: number | undefined, digits = 0): string => (value === undefined || Number.isNaN(value) ? '—' : value.toFixed(digits));

/** Every target of the brief, measured in this run; `pass` is undefined when it could not be measured. */
export function verdicts(raw: RawResults, summary: Partial<Record<Mode, ModeSummary>>): Verdict[] {
  const list: Verdict[] = [];
  const ratioTarget = (mode: Mode, path: Path, minimum: number): void => {
    const value = summary[mode]?.toBare[path];
    const known = value !== undefined && !Number.isNaN(value);
    list.push({ target: `${mode} ${path} ÷ bare ≥ ${minimum.toFixed(2)}`, measured: known ? value.toFixed(3) : (raw.skipped[mode] ?? 'not measured'), pass: known ? value >= minimum : undefined });
  };
  ratioTarget('session-manager:memory', '/read', 0.9);
  ratioTarget('session-manager:memory', '/rmw', 0.85);
  ratioTarget('session-manager:redis', '/rmw', 0.7);

  const heap = raw.heap['session-manager:memory'];
  list.push({
    target: 'session-manager:memory heap per small session ≤ 200 B',
    measured: typeof heap === 'string' ? heap : `${heap.bytesPerSession.toFixed(0)} B`,
    pass: typeof heap === 'string' ? undefined : heap.bytesPerSession <= 200,
  });

  for (const mode of MODES.filter((each) => each.startsWith('session-manager:'))) {
    const trials = raw.lostUpdates[mode];
    const target = `${mode}: ${raw.lostUpdateKeys}/${raw.lostUpdateKeys} keys survive a burst`;
    if (trials === undefined || typeof trials === 'string') list.push({ target, measured: trials ?? raw.skipped[mode] ?? 'not measured', pass: undefined });
    else list.push({ target, measured: `${Math.min(...trials)} (worst of ${trials.join(', ')})`, pass: trials.every((kept) => kept === raw.lostUpdateKeys) });
  }

  const expiry = raw.expiry['session-manager:memory'];
  if (typeof expiry === 'string' || expiry === undefined) {
    list.push({ target: 'worst event-loop delay while 1,000,000 sessions expire ≤ 20 ms, memory reclaimed', measured: expiry ?? 'not measured', pass: undefined });
  } else {
    const delay = Number(expiry.worstDelayMs);
    const reclaimed = Number(expiry.reclaimedFraction);
    list.push({
      target: `worst event-loop delay while ${Number(expiry.count).toLocaleString('en')} sessions expire ≤ 20 ms, memory reclaimed`,
      measured: `${delay.toFixed(1)} ms${Array.isArray(expiry.trialsWorstDelayMs) ? ` (median of ${expiry.trialsWorstDelayMs.map((each: number) => each.toFixed(1)).join(', ')})` : ''}, ${(reclaimed * 100).toFixed(0)}% reclaimed, ${expiry.remaining} left`,
      pass: delay <= 20 && reclaimed >= 0.9 && expiry.remaining === 0,
    });
  }
  return list;
}

/** The whole report as markdown. */
export function markdown(raw: RawResults, summary: Partial<Record<Mode, ModeSummary>>, checks: Verdict[]): string {
  const env = raw.environment;
  const lines: string[] = [];
  const settings = raw.settings;
  lines.push(`# session-manager benchmark — ${String(env.date)}`, '');
  lines.push(`- Command: \`${String(env.command)}\``);
  lines.push(`- session-manager from ${String(env.library)}`);
  lines.push(`- Node ${String(env.node)}, ${String(env.cpu)} × ${String(env.cores)} cores, ${String(env.platform)}`);
  lines.push(`- Packages: ${Object.entries(env.packages as Record<string, string>).map(([name, version]) => `${name} ${version}`).join(', ')}`);
  lines.push(
    `- Load: autocannon, ${String(settings.connections)} connections, ${String(settings.seconds)} s per measurement, ${String(settings.rounds)} rounds (modes alternated, order rotated each round), ` +
      `${String(settings.sessions)} pre-created sessions cycled; medians; ratios taken within each round.`,
  );
  lines.push('');

  lines.push('## Targets', '', '| target | measured | result |', '| --- | --- | --- |');
  for (const check of checks) lines.push(`| ${check.target} | ${check.measured} | ${check.pass === undefined ? 'NOT MEASURED' : check.pass ? 'PASS' : 'MISS'} |`);
  lines.push('');

  lines.push('## Throughput and latency (medians)', '');
  lines.push('| mode | /read req/s | p99 ms | ÷ bare | ÷ express-session | /rmw req/s | p99 ms | ÷ bare | ÷ express-session | POST /login req/s | ÷ express-session | failed requests |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const mode of MODES) {
    const entry = summary[mode];
    if (entry === undefined) {
      lines.push(`| ${mode} | skipped: ${raw.skipped[mode] ?? 'not run'} |||||||||||`);
      continue;
    }
    const cells: string[] = [mode];
    for (const path of PATHS) cells.push(fixed(entry.rps[path]), fixed(entry.p99[path]), fixed(entry.toBare[path], 3), fixed(entry.toExpressSession[path], 3));
    cells.push(fixed(entry.rps['/login']), fixed(entry.toExpressSession['/login'], 3), String(entry.failures));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('');

  lines.push(`## Lost updates (${raw.lostUpdateKeys} concurrent \`GET /set/k<i>\` of one session, keys surviving per trial)`, '', '| mode | surviving |', '| --- | --- |');
  for (const mode of MODES.filter((each) => each !== 'bare')) {
    const trials = raw.lostUpdates[mode];
    lines.push(`| ${mode} | ${trials === undefined ? `skipped: ${raw.skipped[mode] ?? 'not run'}` : typeof trials === 'string' ? trials : trials.map((kept) => `${kept}/${raw.lostUpdateKeys}`).join(', ')} |`);
  }
  lines.push('');

  lines.push('## Heap per session (username + counter, in-process, heapUsed delta after gc ÷ N)', '', '| store | sessions | bytes/session |', '| --- | ---: | ---: |');
  for (const [store, result] of Object.entries(raw.heap)) {
    lines.push(typeof result === 'string' ? `| ${store} | — | failed: ${result} |` : `| ${store} | ${result.count.toLocaleString('en')} | ${result.bytesPerSession.toFixed(0)} |`);
  }
  lines.push('');

  lines.push('## Mass expiry', '');
  const ours = raw.expiry['session-manager:memory'];
  if (typeof ours === 'object') {
    lines.push(
      `- session-manager:memory (the median sweep of ${Array.isArray(ours.trialsWorstDelayMs) ? ours.trialsWorstDelayMs.length : 1} by worst delay): ${Number(ours.expired).toLocaleString('en')} sessions swept in ${Number(ours.sweepMs).toFixed(0)} ms; worst event-loop delay ${Number(ours.worstDelayMs).toFixed(1)} ms ` +
        `(histogram ${Number(ours.histogramMaxMs).toFixed(1)}, 1 ms interval gap ${Number(ours.gapMaxMs).toFixed(1)}); heap ${mb(ours.heapBaseline)} → ${mb(ours.heapFull)} full → ${mb(ours.heapAfter)} after ` +
        `(${(Number(ours.reclaimedFraction) * 100).toFixed(0)}% reclaimed), ${String(ours.remaining)} left.`,
    );
  } else lines.push(`- session-manager:memory: ${ours ?? 'not measured'}`);
  const theirs = raw.expiry['express-session'];
  if (typeof theirs === 'object') {
    lines.push(
      `- express-session MemoryStore: never sweeps. ${Number(theirs.heldAfterExpiry).toLocaleString('en')} of ${Number(theirs.count).toLocaleString('en')} expired sessions still held 2 s after expiry; ` +
        `heap ${mb(theirs.heapBaseline)} → ${mb(theirs.heapFull)} full → ${mb(theirs.heapAfterExpiry)} after expiry (${(Number(theirs.reclaimedWithoutScanFraction) * 100).toFixed(0)}% reclaimed). ` +
        `The only thing that drops them, \`store.all()\`/\`length()\`, scans synchronously: it blocked the event loop ${Number(theirs.scanBlockMs).toFixed(0)} ms (heap then ${mb(theirs.heapAfterScan)}).`,
    );
  } else lines.push(`- express-session MemoryStore: ${theirs ?? 'not measured'}`);
  lines.push('');

  const skipped = Object.entries(raw.skipped);
  if (skipped.length > 0) {
    lines.push('## Skipped', '');
    for (const [mode, reason] of skipped) lines.push(`- ${mode}: ${reason.replace(/\s+/g, ' ').slice(0, 400)}`);
    lines.push('');
  }
  return lines.join('\n');
}

function mb(bytes: unknown): string {
  return `${(Number(bytes) / 1048576).toFixed(0)} MB`;
}
