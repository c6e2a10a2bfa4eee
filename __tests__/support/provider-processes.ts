import { spawn } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const HAMMER = join(__dirname, 'provider-hammer.ts');
const MOVE_RACE = join(__dirname, 'provider-move-race.ts');
/** Key prefix of each child: the first sets `a0`, `a1`…, the second `b0`, `b1`… */
const PREFIXES = ['a', 'b'] as const;

export interface TwoProcessUpdates {
  /** The session both children update; the test creates it first (live for longer than the run). */
  sid: string;
  /** Keys each child sets, one update each: `a<i>` and `b<i>` = `JSON.stringify(i)`, for i in [0, perProcess). */
  perProcess: number;
  /** Updates each child keeps in flight at once. Default 4. */
  inFlight?: number;
  /** Milliseconds after which the children are killed and the run rejects. Default 60000. */
  timeoutMs?: number;
}

/**
 * Runs two real Node processes that each build `provider` from
 * `providerOptions` (through the registry, as `sessions()` does) and update
 * one session concurrently: the first sets keys `a0…a<perProcess-1>`, the second
 * `b0…b<perProcess-1>`, each to the JSON of its number. Both connect first and
 * start together on a signal, so their updates interleave on the store.
 * Resolves when both exited cleanly; rejects with the child's stderr otherwise
 * (and then kills the other).
 *
 * @example
 * await provider.create('shared', new Map(), now, now + 10 * MINUTE);
 * await runTwoProcessUpdates('file', { dir }, { sid: 'shared', perProcess: 150 });
 * // then read 'shared' and expect all 300 keys
 */
export async function runTwoProcessUpdates(provider: string, providerOptions: Record<string, unknown>, run: TwoProcessUpdates): Promise<void> {
  const { sid, perProcess, inFlight = 4, timeoutMs = 60_000 } = run;
  const children = PREFIXES.map((prefix) => {
    const args = [provider, JSON.stringify(providerOptions), sid, prefix, String(perProcess), String(inFlight)];
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', HAMMER, ...args], { cwd: ROOT });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const ready = new Promise<void>((done) => child.stdout.once('data', () => done()));
    const exited = new Promise<void>((done, fail) =>
      child.on('exit', (code, signal) => (code === 0 ? done() : fail(new Error(`${provider} hammer ${prefix} exited with ${code ?? signal}: ${stderr}`)))),
    );
    return { child, ready, exited };
  });
  const timer = setTimeout(() => children.forEach(({ child }) => child.kill('SIGKILL')), timeoutMs);
  try {
    // A child that fails before it is ready rejects at once instead of leaving the other waiting.
    await Promise.race([Promise.all(children.map((c) => c.ready)), Promise.all(children.map((c) => c.exited))]);
    for (const { child } of children) child.stdin.end('go\n');
    await Promise.all(children.map((c) => c.exited));
  } finally {
    clearTimeout(timer);
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Asserts that `values` holds exactly the keys both children of {@link runTwoProcessUpdates} set, each with its value. */
export function expectEveryKeyOfBoth(values: ReadonlyMap<string, string>, perProcess: number): void {
  expect(values.size).toBe(2 * perProcess);
  for (let i = 0; i < perProcess; i++) {
    expect(values.get(`a${i}`)).toBe(String(i));
    expect(values.get(`b${i}`)).toBe(String(i));
  }
}

/**
 * Two real processes race on the sessions `sids` (each created by the caller
 * with `{ sudo: true }`): one moves each `s` to `${s}_to` (adding `moved`),
 * the other updates each `s` (deleting `sudo`, setting `u`). Resolves what
 * each side's calls answered, per session, in the order of `sids`.
 */
export async function runMoveRace(
  provider: string,
  providerOptions: Record<string, unknown>,
  sids: string[],
  timeoutMs = 60_000,
): Promise<{ moves: ('moved' | 'gone' | 'taken')[]; updates: boolean[] }> {
  const children = (['move', 'update'] as const).map((role) => {
    const args = [provider, JSON.stringify(providerOptions), JSON.stringify(sids), role];
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', MOVE_RACE, ...args], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    const ready = new Promise<void>((done) => child.stdout.once('data', () => done()));
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<unknown>((done, fail) =>
      child.on('exit', (code, signal) =>
        code === 0 ? done(JSON.parse(stdout.trim().split('\n').pop()!)) : fail(new Error(`${provider} ${role} racer exited with ${code ?? signal}: ${stderr}`)),
      ),
    );
    return { child, ready, exited };
  });
  const timer = setTimeout(() => children.forEach(({ child }) => child.kill('SIGKILL')), timeoutMs);
  try {
    await Promise.race([Promise.all(children.map((c) => c.ready)), Promise.all(children.map((c) => c.exited))]);
    for (const { child } of children) child.stdin.end('go\n');
    const [moves, updates] = await Promise.all(children.map((c) => c.exited));
    return { moves: moves as ('moved' | 'gone' | 'taken')[], updates: updates as boolean[] };
  } finally {
    clearTimeout(timer);
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
