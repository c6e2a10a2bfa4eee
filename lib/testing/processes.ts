// The multi-process cases of the conformance suite: real Node processes that
// build a provider over the same storage and race on it. The children are the
// modules next to this one (hammer, move-race), compiled to dist like it; run
// from the TypeScript sources (ts-jest, ts-node), they are started through
// ts-node instead.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { extname, isAbsolute, join } from 'node:path';

/** What a child process needs to build a provider over the storage under test. */
export interface ChildProvider {
  /**
   * An absolute path the child `require`s (or imports) first: a module that
   * registers the provider under `name` with `register()`. Not needed for a
   * built-in provider.
   */
  module?: string;
  /** A built-in or registered provider name. */
  name: string;
  /** Its options (JSON: what `sessions({ providerOptions })` would get). */
  options: Record<string, unknown>;
}

/** Variables added to the children's environment, e.g. `NODE_OPTIONS`. */
export type ChildEnv = Record<string, string | undefined>;

const FROM_SOURCE = extname(__filename) === '.ts';

function start(script: 'hammer' | 'move-race', args: string[], env: ChildEnv | undefined): ChildProcessWithoutNullStreams {
  const command = FROM_SOURCE
    ? ['-r', 'ts-node/register/transpile-only', join(__dirname, `${script}.ts`)]
    : [join(__dirname, `${script}.js`)];
  return spawn(process.execPath, [...command, ...args], {
    // From source, ts-node is found (and reads tsconfig.json) from the package root.
    cwd: FROM_SOURCE ? join(__dirname, '..', '..') : undefined,
    // Without `env`, the environment of the real process (not a test runner's copy of it).
    env: env === undefined ? undefined : { ...process.env, ...env },
  });
}

function specOf(provider: ChildProvider): string {
  if (provider.module !== undefined && !isAbsolute(provider.module)) {
    throw new Error(`processOptions().module must be an absolute path (the child runs elsewhere): ${provider.module}`);
  }
  return JSON.stringify(provider);
}

interface Child {
  child: ChildProcessWithoutNullStreams;
  /** Settles at the child's first line of output. */
  ready: Promise<void>;
  /** Resolves the child's last line of output when it exits with 0; rejects with its stderr otherwise. */
  exited: Promise<string>;
}

function watch(child: ChildProcessWithoutNullStreams, what: string): Child {
  let stdout = '';
  let stderr = '';
  const ready = new Promise<void>((done) => child.stdout.once('data', () => done()));
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<string>((done, fail) => {
    child.on('error', fail);
    child.on('exit', (code, signal) =>
      code === 0 ? done(stdout.trim().split('\n').pop() ?? '') : fail(new Error(`${what} exited with ${code ?? signal}: ${stderr}`)),
    );
  });
  exited.catch(() => undefined); // observed below; never an unhandled rejection
  return { child, ready, exited };
}

/** Starts `children` together once each is ready, and resolves what each printed last. Kills them all on failure or after `timeoutMs`. */
async function race(children: Child[], timeoutMs: number): Promise<string[]> {
  const timer = setTimeout(() => children.forEach(({ child }) => child.kill('SIGKILL')), timeoutMs);
  try {
    // A child that fails before it is ready rejects at once instead of leaving the other waiting.
    await Promise.race([Promise.all(children.map((c) => c.ready)), Promise.all(children.map((c) => c.exited))]);
    for (const { child } of children) child.stdin.end('go\n');
    return await Promise.all(children.map((c) => c.exited));
  } finally {
    clearTimeout(timer);
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

export interface TwoProcessUpdates {
  /** The session both children update; the caller creates it first (live for longer than the run). */
  sid: string;
  /** Keys each child sets, one update each: `a<i>` and `b<i>` = `JSON.stringify(i)`, for i in [0, perProcess). */
  perProcess: number;
  /** Updates each child keeps in flight at once. Default 4. */
  inFlight?: number;
  env?: ChildEnv;
  /** Milliseconds after which the children are killed and the run rejects. Default 60000. */
  timeoutMs?: number;
}

/**
 * Two real Node processes build `provider` and update one session
 * concurrently: the first sets keys `a0…`, the second `b0…`, each to the JSON
 * of its number. Both connect first and start together on a signal, so their
 * updates interleave on the store. Resolves when both exited cleanly.
 */
export async function runTwoProcessUpdates(provider: ChildProvider, run: TwoProcessUpdates): Promise<void> {
  const { sid, perProcess, inFlight = 4, env, timeoutMs = 60_000 } = run;
  const spec = specOf(provider);
  const children = ['a', 'b'].map((prefix) =>
    watch(start('hammer', [spec, sid, prefix, String(perProcess), String(inFlight)], env), `${provider.name} hammer ${prefix}`),
  );
  await race(children, timeoutMs);
}

export type MoveResult = 'moved' | 'gone' | 'taken';

/**
 * Two real processes race on the sessions `sids` (each created by the caller
 * with `{ sudo: true }`): one moves each `s` to `${s}_to` (adding `moved`),
 * the other updates each `s` (deleting `sudo`, setting `u`). Resolves what
 * each side's calls answered, per session, in the order of `sids`.
 */
export async function runMoveRace(
  provider: ChildProvider,
  sids: string[],
  { env, timeoutMs = 60_000 }: { env?: ChildEnv; timeoutMs?: number } = {},
): Promise<{ moves: MoveResult[]; updates: boolean[] }> {
  const spec = specOf(provider);
  const children = (['move', 'update'] as const).map((role) =>
    watch(start('move-race', [spec, JSON.stringify(sids), role], env), `${provider.name} ${role} racer`),
  );
  const [moves, updates] = await race(children, timeoutMs);
  return { moves: JSON.parse(moves) as MoveResult[], updates: JSON.parse(updates) as boolean[] };
}
