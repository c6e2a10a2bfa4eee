/** Turns the raw results of a run into medians, target verdicts and the markdown table. */
import { BLOCK_TARGET_MS, COUNT_TARGET_MS, countVerdicts, LIST_TARGET, type CountResult } from './count';
import type { LoadResult } from './load';
import { MODES, TWINS, type Mode, type TwinnedMode } from './modes';

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
  /** Counts and per-user listings at scale (bench/count.ts), per provider: the result, or why it was not measured. */
  counts?: Record<string, CountResult | string>;
}

/** A run of `--only count`: the other sections were not run. */
const onlyCounts = (raw: RawResults): boolean => raw.settings.only === 'count';

type Key = Path | '/login';

export interface ModeSummary {
  rps: Partial<Record<Key, number>>;
  p99: Partial<Record<Key, number>>;
  /** Throughput ratios, each the median of the per-round ratios. */
  toBare: Partial<Record<Key, number>>;
  toFloor: Partial<Record<Key, number>>;
  toExpressSession: Partial<Record<Key, number>>;
  /** A session-manager provider against its express-session twin on the same store (TWINS). */
  toTwin: Partial<Record<Key, number>>;
  /** p99 latency ÷ the floor's p99, median of the per-round ratios. */
  p99ToFloor: Partial<Record<Key, number>>;
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

/** The measurements of one route, round by round. */
export function roundsOf(raw: RawResults, key: Key): Partial<Record<Mode, LoadResult>>[] {
  if (key === '/login') return raw.creation;
  return raw.rounds.map((round) => Object.fromEntries(Object.entries(round).flatMap(([mode, byPath]) => (byPath[key] ? [[mode, byPath[key]]] : []))));
}

/** `mode` ÷ `reference` in each round both ran in, then the median; NaN when no round had both. */
export function ratioWithin(rounds: Partial<Record<Mode, LoadResult>>[], mode: Mode, reference: Mode, pick: (run: LoadResult) => number = (run) => run.rps): number {
  return median(
    rounds.flatMap((round) => {
      const run = round[mode];
      const base = round[reference];
      return run && base && pick(base) > 0 ? [pick(run) / pick(base)] : [];
    }),
  );
}

const isTwinned = (mode: Mode): mode is TwinnedMode => mode in TWINS;

/** Medians per mode; ratios are taken within each round, then their median. */
export function summarise(raw: RawResults): Partial<Record<Mode, ModeSummary>> {
  const summary: Partial<Record<Mode, ModeSummary>> = {};
  const series = (rounds: Partial<Record<Mode, LoadResult>>[], key: Key): void => {
    for (const mode of MODES) {
      const runs = rounds.map((round) => round[mode]).filter((run): run is LoadResult => run !== undefined);
      if (runs.length === 0) continue;
      const entry = (summary[mode] ??= { rps: {}, p99: {}, toBare: {}, toFloor: {}, toExpressSession: {}, toTwin: {}, p99ToFloor: {}, failures: 0 });
      entry.rps[key] = median(runs.map((run) => run.rps));
      entry.p99[key] = median(runs.map((run) => run.p99));
      entry.failures += runs.reduce((sum, run) => sum + run.errors + run.non2xx, 0);
      entry.toBare[key] = ratioWithin(rounds, mode, 'bare');
      entry.toFloor[key] = ratioWithin(rounds, mode, 'floor');
      entry.toExpressSession[key] = ratioWithin(rounds, mode, 'express-session');
      if (isTwinned(mode)) entry.toTwin[key] = ratioWithin(rounds, mode, TWINS[mode]);
      entry.p99ToFloor[key] = ratioWithin(rounds, mode, 'floor', (run) => run.p99);
    }
  };
  for (const path of PATHS) series(roundsOf(raw, path), path);
  series(raw.creation, '/login');
  return summary;
}

const fixed = (value: number | undefined, digits = 0): string => (value === undefined || Number.isNaN(value) ? '—' : value.toFixed(digits));

/** Every target of the brief, measured in this run; `pass` is undefined when it could not be measured. */
export function verdicts(raw: RawResults, summary: Partial<Record<Mode, ModeSummary>>): Verdict[] {
  const list: Verdict[] = [];
  if (onlyCounts(raw)) return countChecks(raw);
  const known = (value: number | undefined): value is number => value !== undefined && !Number.isNaN(value);
  /** Why a comparison of `modes` has no value: the first one skipped, else not run. */
  const missing = (...modes: Mode[]): string => modes.map((mode) => (raw.skipped[mode] ? `${mode}: ${raw.skipped[mode]}` : summary[mode] ? '' : `${mode} not run`)).find((reason) => reason !== '') ?? 'not measured';
  const atLeast = (target: string, value: number | undefined, minimum: number, modes: Mode[], exclusive = false): void => {
    list.push({
      target: `${target} ${exclusive ? '>' : '≥'} ${minimum.toFixed(2)}`,
      measured: known(value) ? value.toFixed(3) : missing(...modes),
      pass: known(value) ? (exclusive ? value > minimum : value >= minimum) : undefined,
    });
  };

  // The floor: the least a signed-cookie session middleware can do (bench/server.ts).
  atLeast('session-manager:memory /read ÷ floor', summary['session-manager:memory']?.toFloor['/read'], 0.95, ['session-manager:memory', 'floor']);
  atLeast('session-manager:memory /rmw ÷ floor', summary['session-manager:memory']?.toFloor['/rmw'], 0.9, ['session-manager:memory', 'floor']);
  atLeast('session-manager:redis /rmw ÷ floor', summary['session-manager:redis']?.toFloor['/rmw'], 0.9, ['session-manager:redis', 'floor']);
  for (const path of PATHS) {
    atLeast(`session-manager:memory ${path} ÷ session-manager:redis`, ratioWithin(roundsOf(raw, path), 'session-manager:memory', 'session-manager:redis'), 1, ['session-manager:memory', 'session-manager:redis'], true);
  }

  // Each persistent provider against its express-session twin on the same store.
  for (const mode of (Object.keys(TWINS) as TwinnedMode[]).filter((each) => each !== 'session-manager:memory')) {
    for (const path of PATHS) atLeast(`${mode} ${path} ÷ ${TWINS[mode]}`, summary[mode]?.toTwin[path], 1.5, [mode, TWINS[mode]]);
  }

  // Tail latency against the floor's.
  for (const mode of ['session-manager:memory', 'session-manager:redis'] as const) {
    for (const path of PATHS) {
      const ratio = summary[mode]?.p99ToFloor[path];
      const ours = summary[mode]?.p99[path];
      const floor = summary.floor?.p99[path];
      list.push({
        target: `${mode} ${path} p99 ≤ 1.20 × floor's p99`,
        measured: known(ratio) ? `${fixed(ours)} ms vs ${fixed(floor)} ms (${ratio.toFixed(2)}×)` : missing(mode, 'floor'),
        pass: known(ratio) ? ratio <= 1.2 : undefined,
      });
    }
  }

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
  return [...list, ...countChecks(raw)];
}

/** The targets of issue #11 per provider measured by bench/count.ts; one NOT MEASURED line for a provider that could not be. */
function countChecks(raw: RawResults): Verdict[] {
  return Object.entries(raw.counts ?? {}).flatMap(([provider, result]) =>
    typeof result === 'string'
      ? [{ target: `${provider}: count() ≤ ${COUNT_TARGET_MS[provider as keyof typeof COUNT_TARGET_MS] ?? '?'} ms, 20 concurrent block nothing, listByUser`, measured: result, pass: undefined }]
      : countVerdicts(result).filter((verdict) => !verdict.target.endsWith('(no target)')),
  );
}

/** The markdown section of bench/count.ts's results. */
function countSection(raw: RawResults): string[] {
  const counts = Object.entries(raw.counts ?? {});
  if (counts.length === 0) return [];
  const lines = ['## Counts and per-user listings at scale (issue #11)', ''];
  lines.push(
    'Each provider in its own process (bench/count.ts), alone on the machine: the store filled with the sessions below, 1,000 users having 5 sessions each among them, ' +
      'written by the provider itself (see the fill column). Through a manager on a provider built as an app builds it: one `count()` (a first call, then up to 20 sequential calls: median, max); ' +
      `20 concurrent \`count()\` calls: their total time, the worst event-loop delay (monitorEventLoopDelay at 1 ms and a 1 ms interval's gap) and trivial HTTP requests to a server in the same process, sent one after another meanwhile (slowest; idle: the same without the counts). ` +
      "Five such trials (three when a count takes over 100 ms, one over a second), each figure the median over them; CPU ms is this process's own CPU time during the calls (the requests' included): a loop delay far above what that CPU time explains was spent waiting for a core other processes held " +
      '(here the database or Redis servers run on the same machine as the bench). ' +
      '`listByUser()` of users with 5 sessions (60 calls over 20 users) and the round trips of one call (Redis: batches of commands sent while nothing was in flight, through a wrapped client; PostgreSQL: `pool.query` calls). ' +
      `Targets: count() median ≤ ${Object.entries(COUNT_TARGET_MS).map(([name, ms]) => `${ms} ms (${name})`).join(', ')}; ` +
      `20 concurrent block nothing: loop delay and slowest request ≤ ${BLOCK_TARGET_MS} ms (the bound this bench sets for mass expiry); listByUser ${Object.entries(LIST_TARGET).map(([name, target]) => `${name} ${target.ms !== undefined ? `≤ ${target.ms} ms` : `≤ ${target.roundTrips} round trips`}`).join(', ')}.`,
    '',
  );
  lines.push(
    '| provider | sessions | fill | count() ms: first / median / max (calls) | round trips | count target | 20 concurrent: total ms (CPU ms) | worst loop delay ms | HTTP during: requests, slowest ms (idle) | block target | listByUser ms: median / max | round trips (commands) | listByUser target |',
  );
  lines.push('| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |');
  const mark = (pass: boolean | undefined): string => (pass === undefined ? '—' : pass ? 'PASS' : 'MISS');
  for (const [provider, result] of counts) {
    if (typeof result === 'string') {
      lines.push(`| ${provider} | not measured: ${oneLine(result)} ||||||||||||`);
      continue;
    }
    const [count, block, list] = countVerdicts(result);
    lines.push(
      [
        '',
        provider,
        result.sessions.toLocaleString('en'),
        `${(result.fillMs / 1000).toFixed(0)} s, ${oneLine(result.fillMethod)}`,
        `${result.firstCountMs.toFixed(2)} / ${result.countMedianMs.toFixed(2)} / ${result.countMaxMs.toFixed(2)} (${result.countMs.length})`,
        result.countRoundTrips === undefined ? '—' : String(result.countRoundTrips),
        `≤ ${COUNT_TARGET_MS[result.provider]} ms: ${mark(count.pass)}`,
        `${result.concurrentTotalMs.toFixed(1)} (${result.concurrentCpuMs.toFixed(0)})`,
        result.worstDelayMs.toFixed(1),
        `${result.pingsDuring}, ${result.pingMaxMs.toFixed(1)} (${result.pingIdleMaxMs.toFixed(1)})`,
        mark(block.pass),
        `${result.listMedianMs.toFixed(2)} / ${result.listMaxMs.toFixed(2)}`,
        result.listRoundTrips === undefined ? '—' : `${result.listRoundTrips} (${result.listCommands})`,
        mark(list.pass),
        '',
      ]
        .join(' | ')
        .trim(),
    );
    for (const note of result.notes) lines.push(`|  | note: ${oneLine(note)} ||||||||||||`);
  }
  lines.push('');
  return lines;
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
  if (onlyCounts(raw)) {
    lines.push('');
    lines.push('## Targets', '', '| target | measured | result |', '| --- | --- | --- |');
    for (const check of checks) lines.push(`| ${check.target} | ${oneLine(check.measured)} | ${check.pass === undefined ? 'NOT MEASURED' : check.pass ? 'PASS' : 'MISS'} |`);
    lines.push('');
    return [...lines, ...countSection(raw)].join('\n');
  }
  lines.push(
    `- Load: autocannon, ${String(settings.connections)} connections, ${String(settings.seconds)} s per measurement, ${String(settings.rounds)} rounds (modes alternated, order rotated each round), ` +
      `${String(settings.sessions)} pre-created sessions cycled; medians; ratios taken within each round.`,
  );
  lines.push('');

  lines.push('## Targets', '', '| target | measured | result |', '| --- | --- | --- |');
  for (const check of checks) lines.push(`| ${check.target} | ${oneLine(check.measured)} | ${check.pass === undefined ? 'NOT MEASURED' : check.pass ? 'PASS' : 'MISS'} |`);
  lines.push('');

  lines.push('## Throughput and latency (medians)', '');
  lines.push(
    '`floor` is Express plus one middleware doing the least any signed-cookie session middleware must do: find the cookie, verify its signature ' +
      '(cookie-signature, the same secret), look the id up in a Map (a write puts the entry back; a new session gets its id and Set-Cookie on its first write). ' +
      '÷ floor is the distance to the physical limit of this design; `bare` (no sessions) is the ceiling of Express itself.',
    '',
  );
  lines.push('| mode | /read req/s | p99 ms | ÷ floor | ÷ bare | ÷ express-session | /rmw req/s | p99 ms | ÷ floor | ÷ bare | ÷ express-session | POST /login req/s | ÷ floor | ÷ express-session | failed requests |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const mode of MODES) {
    const entry = summary[mode];
    if (entry === undefined) {
      lines.push(`| ${mode} | skipped: ${oneLine(raw.skipped[mode] ?? 'not run')} ||||||||||||||`);
      continue;
    }
    const cells: string[] = [mode];
    for (const path of PATHS) cells.push(fixed(entry.rps[path]), fixed(entry.p99[path]), fixed(entry.toFloor[path], 3), fixed(entry.toBare[path], 3), fixed(entry.toExpressSession[path], 3));
    cells.push(fixed(entry.rps['/login']), fixed(entry.toFloor['/login'], 3), fixed(entry.toExpressSession['/login'], 3), String(entry.failures));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('');

  lines.push('## session-manager against express-session on the same store (same run; ratios taken within each round, medians)', '');
  lines.push('| provider | express-session twin | /read ÷ twin | /rmw ÷ twin | POST /login ÷ twin | /read p99 ms (ours / twin) | /rmw p99 ms (ours / twin) |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const mode of Object.keys(TWINS) as TwinnedMode[]) {
    const twin = TWINS[mode];
    const ours = summary[mode];
    const theirs = summary[twin];
    if (ours === undefined || theirs === undefined) {
      const absent = ours === undefined ? mode : twin;
      lines.push(`| ${mode} | ${twin} | ${absent} ${raw.skipped[absent] ? `skipped: ${oneLine(raw.skipped[absent]!)}` : 'not run'} |||||`);
      continue;
    }
    lines.push(
      `| ${mode} | ${twin} | ${fixed(ours.toTwin['/read'], 3)} | ${fixed(ours.toTwin['/rmw'], 3)} | ${fixed(ours.toTwin['/login'], 3)} | ` +
        `${fixed(ours.p99['/read'])} / ${fixed(theirs.p99['/read'])} | ${fixed(ours.p99['/rmw'])} / ${fixed(theirs.p99['/rmw'])} |`,
    );
  }
  lines.push(
    '',
    'Set-up of the twins (bench/server.ts): each as its README shows, on the same kind of store as our provider in the run — better-sqlite3-session-store on a new ' +
      "sqlite file opened in WAL mode as our provider opens its own; connect-pg-simple on the bench's PostgreSQL (its own pg pool, table created if missing); " +
      "session-file-store in a new temp dir (its writes go through write-file-atomic, which fsyncs every file and has no switch in the store; our file provider runs with its default `fsync: false`); connect-redis on the bench's Redis. " +
      'express-session runs with resave: false, saveUninitialized: false, so an unchanged session costs a store `touch` per request where the store has one.',
    '',
  );

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

  lines.push(...countSection(raw));

  const skipped = Object.entries(raw.skipped);
  if (skipped.length > 0) {
    lines.push('## Skipped', '');
    for (const [mode, reason] of skipped) lines.push(`- ${mode}: ${oneLine(reason)}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** A reason fit for one table cell or list item. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 400);
}

function mb(bytes: unknown): string {
  return `${(Number(bytes) / 1048576).toFixed(0)} MB`;
}
