import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createManager } from '../lib/index';
import { Progress } from '../lib/cli/progress';

// The operator's CLI, run as a real child process against real stores. lib/ is
// transpiled once (as ts-node --transpile-only would, without its start-up cost
// on every run) into a folder inside the project, so drivers resolve from node_modules.

const ROOT = join(__dirname, '..');
let cliDir: string;

beforeAll(() => {
  const ts = require('typescript') as typeof import('typescript');
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  cliDir = mkdtempSync(join(ROOT, '.tmp', 'cli-test-'));
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => (statSync(join(dir, name)).isDirectory() ? walk(join(dir, name)) : name.endsWith('.ts') ? [join(dir, name)] : []));
  for (const file of walk(join(ROOT, 'lib'))) {
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    const target = join(cliDir, 'lib', relative(join(ROOT, 'lib'), file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, outputText);
  }
});

afterAll(() => {
  if (cliDir) rmSync(cliDir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `env` entries set to undefined are removed from the child's environment. */
function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete childEnv[name];
  return new Promise((resolve) => {
    execFile(process.execPath, [join(cliDir, 'lib', 'cli.js'), ...args], { cwd: ROOT, env: childEnv, timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

async function cliJson(args: string[]): Promise<Record<string, unknown>> {
  const run = await cli([...args, '--json']);
  if (run.code !== 0) throw new Error(`exit ${run.code}: ${run.stderr}`);
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

const HOUR = 3_600_000;
const unique = `${process.pid}_${Date.now()}`;

interface Store {
  provider: string;
  flags: string[];
  options: Record<string, unknown>;
  /** What gc() removes of the expired sessions seeded (every store: Redis deletes the hashes by TTL, gc trims its expiry index). */
  gcRemoves: number;
  cleanup: () => void;
}

const EXPIRED = 2;
const stores: Array<[string, () => Store | string]> = [
  ['file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-cli-file-'));
    return { provider: 'file', flags: ['--dir', dir], options: { dir }, gcRemoves: EXPIRED, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }],
  ['sqlite', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-cli-sqlite-'));
    const path = join(dir, 'sessions.db');
    return { provider: 'sqlite', flags: ['--path', path], options: { path }, gcRemoves: EXPIRED, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }],
  ['redis', () => {
    const url = process.env.REDIS_URL;
    if (!url) return 'no Redis server (REDIS_URL unset and redis-server not installed)';
    const prefix = `cli-${unique}:`;
    return { provider: 'redis', flags: ['--provider', 'redis', '--url', url, '--prefix', prefix], options: { url, prefix }, gcRemoves: EXPIRED, cleanup: () => {} };
  }],
  ['postgres', () => {
    const connectionString = process.env.DATABASE_URL;
    if (!connectionString) return 'no PostgreSQL (DATABASE_URL unset and PostgreSQL not installed)';
    const table = `cli_${unique}`;
    return {
      provider: 'postgres',
      flags: ['--provider', 'postgres', '--connection-string', connectionString, '--table', table],
      options: { connectionString, table },
      gcRemoves: EXPIRED,
      cleanup: () => {},
    };
  }],
];

describe.each(stores)('session-manager CLI on a %s store', (name, makeStore) => {
  const store = makeStore();
  if (typeof store === 'string') {
    if (process.env.CI) throw new Error(`${name}: ${store}`);
    it.skip(`skipped: ${store}`, () => {});
    return;
  }
  const live: Array<{ sid: string; handle: string; data: Record<string, unknown> }> = [];

  beforeAll(async () => {
    const manager = createManager({ provider: store.provider, providerOptions: store.options });
    // A clock two hours back: these sessions expired an hour ago.
    const past = createManager({ provider: store.provider, providerOptions: store.options, clock: () => Date.now() - 2 * HOUR, maxLifetime: 3600 });
    try {
      for (let i = 0; i < 5; i++) {
        const data = { user: `user-${i}`, cart: [i, { sku: `p${i}` }] };
        const record = await manager.create(new Map(Object.entries(data).map(([key, value]) => [key, JSON.stringify(value)])));
        live.push({ sid: record.sid, handle: record.key, data });
      }
      for (let i = 0; i < EXPIRED; i++) await past.create(new Map([['old', JSON.stringify(i)]]));
    } finally {
      await Promise.all([manager.close(), past.close()]);
    }
  });

  afterAll(() => store.cleanup());

  it('count: live sessions only, as text and as JSON', async () => {
    expect(await cliJson(['count', ...store.flags])).toEqual({ count: 5 });
    const text = await cli(['count', ...store.flags]);
    expect(text).toMatchObject({ code: 0, stdout: '5\n' });
  });

  it('list: handles, times and data keys; --limit; progress on stderr (not a TTY) while --json stdout parses', async () => {
    const run = await cli(['list', ...store.flags, '--json', '--progress-every', '2']);
    expect(run.code).toBe(0);
    const listed = JSON.parse(run.stdout) as { sessions: Array<{ handle: string; createdAt: string; expiresAt: string; keys: string[] }>; truncated: boolean };
    expect(listed.truncated).toBe(false);
    expect(listed.sessions.map((session) => session.handle).sort()).toEqual(live.map((session) => session.handle).sort());
    for (const session of listed.sessions) {
      expect(session.keys.sort()).toEqual(['cart', 'user']);
      expect(Date.parse(session.expiresAt)).toBeGreaterThan(Date.now());
      expect(Date.parse(session.createdAt)).toBeLessThanOrEqual(Date.now());
    }
    expect(run.stdout).not.toContain(live[0].sid); // no raw id in a listing
    expect(run.stderr.trim().split('\n')).toEqual(['list: 2', 'list: 4', 'list: 5']);

    const limited = await cliJson(['list', ...store.flags, '--limit', '2']);
    expect(limited).toMatchObject({ truncated: true });
    expect(limited.sessions).toHaveLength(2);

    const text = await cli(['list', ...store.flags, '--quiet']);
    expect(text.code).toBe(0);
    expect(text.stderr).toBe('');
    expect(text.stdout).toMatch(/^HANDLE\s+CREATED\s+EXPIRES\s+KEYS\n/);
    expect(text.stdout).toContain(live[1].handle);
    expect(text.stdout).toMatch(/cart,user|user,cart/);
    expect(text.stdout).toMatch(/5 sessions\n$/);
  });

  it('show: a session\'s data as JSON, by handle or raw id; an unknown one exits 4', async () => {
    const shown = await cliJson(['show', live[0].handle, ...store.flags]);
    expect(shown).toMatchObject({ handle: live[0].handle, data: live[0].data });
    const text = await cli(['show', live[1].sid, ...store.flags]);
    expect(text.code).toBe(0);
    expect(JSON.parse(text.stdout)).toEqual(live[1].data);

    const unknown = await cli(['show', 'A'.repeat(43), ...store.flags]);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('no live session with that handle or id');
  });

  it('destroy: by raw id or handle, the count drops; a second destroy exits 4', async () => {
    expect(await cliJson(['destroy', live[4].sid, ...store.flags])).toEqual({ destroyed: live[4].handle });
    const byHandle = await cli(['destroy', live[3].handle, ...store.flags]);
    expect(byHandle).toMatchObject({ code: 0, stdout: `destroyed ${live[3].handle}\n` });
    expect(await cliJson(['count', ...store.flags])).toEqual({ count: 3 });

    const again = await cli(['destroy', live[4].sid, ...store.flags, '--json']);
    expect(again.code).toBe(4);
    expect(JSON.parse(again.stdout)).toMatchObject({ error: { kind: 'not-found', exitCode: 4 } });
    expect(again.stderr).not.toContain(live[4].sid); // a raw id is never echoed
  });

  it('gc: removes the expired sessions and says how many, with progress', async () => {
    const run = await cli(['gc', ...store.flags, '--json', '--progress-every', '1']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ removed: store.gcRemoves });
    expect(run.stderr).toBe(Array.from({ length: store.gcRemoves }, (_, i) => `gc: ${i + 1}\n`).join(''));
    expect(await cliJson(['gc', ...store.flags])).toEqual({ removed: 0 });
  });

  it('purge: refused without --yes (exit 2, nothing destroyed); with --yes every session ends', async () => {
    const refused = await cli(['purge', ...store.flags]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('refused without --yes');
    expect(await cliJson(['count', ...store.flags])).toEqual({ count: 3 });

    const run = await cli(['purge', '--yes', ...store.flags, '--json', '--progress-every', '1']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ destroyed: 3, expiredRemoved: 0 });
    expect(run.stderr).toBe('purge: 3/3 (100%)\n'); // destroys go in batches: one line per batch at most
    expect(await cliJson(['count', ...store.flags])).toEqual({ count: 0 });
    expect(await cliJson(['list', ...store.flags])).toEqual({ sessions: [], truncated: false });
  });
});

describe('session-manager CLI: usage, errors, unsupported commands', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sm-cli-misc-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('--help prints usage on stdout and exits 0', async () => {
    const run = await cli(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: session-manager <command>');
    expect(run.stdout).toContain('Exit codes: 0 ok, 1 store error, 2 usage error, 3 not supported, 4 not found');
  });

  it.each([
    [[], 'no command given'],
    [['frobnicate', '--dir', '.'], 'unknown command "frobnicate"'],
    [['count', '--frob'], "Unknown option '--frob'"],
    [['show', '--dir', '.'], 'show: missing HANDLE'],
    [['count', 'extra', '--dir', '.'], 'count: unexpected argument "extra"'],
    [['list', '--limit', '0', '--dir', '.'], '--limit must be a positive integer'],
    [['count', '--limit', '2', '--dir', '.'], '--limit applies to "list" only'],
    [['count', '--dir', '.', '--prefix', 'x:'], 'the flags name several providers'],
    [['count', '--provider', 'file', '--dir', '.', '--prefix', 'x:'], '--prefix does not apply to provider file'],
    [['count', '--provider', 'memory'], 'the memory provider lives inside the app'],
    [['count', '--provider', 'nope'], 'unknown provider "nope"'],
    [['count', '--provider', 'sqlite'], 'provider sqlite needs --path'],
  ])('usage error %j: exit 2 with the reason and the usage', async (args, reason) => {
    const run = await cli(args as string[], { REDIS_URL: undefined, DATABASE_URL: undefined });
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(reason);
    expect(run.stderr).toContain('Usage: session-manager');
  });

  it('with REDIS_URL and DATABASE_URL both set and no store flag, asks for --provider', async () => {
    const run = await cli(['count'], { REDIS_URL: 'redis://127.0.0.1:1', DATABASE_URL: 'postgres://u@127.0.0.1:1/db' });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('both REDIS_URL and DATABASE_URL are set: pick one with --provider');
  });

  it('an unreachable Redis: exit 1, saying which store and what failed, without the URL', async () => {
    const run = await cli(['count', '--json'], { REDIS_URL: 'redis://:hunter2@127.0.0.1:1', DATABASE_URL: undefined });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^session-manager: redis store \(\$REDIS_URL\): .*failed: .*ECONNREFUSED/);
    expect(run.stderr).not.toContain('hunter2');
    expect(JSON.parse(run.stdout)).toMatchObject({ error: { kind: 'store', exitCode: 1 } });
  });

  it('an unreachable PostgreSQL: exit 1', async () => {
    const run = await cli(['count', '--connection-string', 'postgres://postgres@127.0.0.1:1/postgres']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^session-manager: postgres store \(--connection-string\): .*ECONNREFUSED/);
  });

  it('a malformed URL: exit 2 with what is expected', async () => {
    const run = await cli(['count', '--url', 'localhost:6379']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('redis store (--url): option url is invalid: expected redis[s]://');
  });

  it('a missing folder or database file: exit 1, and nothing is created', async () => {
    const missing = join(dir, 'no-such-folder');
    const file = await cli(['count', '--dir', missing]);
    expect(file.code).toBe(1);
    expect(file.stderr).toContain(`file store: no such folder ${JSON.stringify(missing)}`);
    const sqlite = await cli(['count', '--path', join(dir, 'no.db')]);
    expect(sqlite.code).toBe(1);
    expect(sqlite.stderr).toContain('sqlite store: no such database file');
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('progress', () => {
  function fakeStream(isTTY: boolean): { isTTY: boolean; columns: number; text: string; write(text: string): boolean } {
    return {
      isTTY,
      columns: 80,
      text: '',
      write(text: string) {
        this.text += text;
        return true;
      },
    };
  }

  it('on a terminal: one line redrawn with \\r (throttled), cleared at the end', () => {
    let now = 0;
    const stream = fakeStream(true);
    const progress = new Progress(stream, 'purge', 4, { every: 1000, enabled: true, redrawMs: 100, clock: () => now });
    progress.tick();
    progress.tick(); // within 100 ms: not redrawn
    now = 200;
    progress.tick(2);
    progress.finish();
    expect(stream.text).not.toContain('\n');
    expect(stream.text.split('\r').filter(Boolean)).toEqual([
      'purge [######------------------] 1/4 (25%)\x1b[K',
      'purge [########################] 4/4 (100%)\x1b[K',
      '\x1b[K',
    ]);
  });

  it('elsewhere: a plain line every N items, and a last one', () => {
    const stream = fakeStream(false);
    const progress = new Progress(stream, 'gc', undefined, { every: 2, enabled: true });
    for (let i = 0; i < 5; i++) progress.tick();
    progress.finish();
    expect(stream.text).toBe('gc: 2\ngc: 4\ngc: 5\n');
  });

  it('disabled (--quiet): nothing', () => {
    const stream = fakeStream(true);
    const progress = new Progress(stream, 'list', 3, { every: 1, enabled: false });
    progress.tick(3);
    progress.finish();
    expect(stream.text).toBe('');
    expect(progress.done).toBe(3);
  });
});

describe.each(['file', 'sqlite'])('session-manager CLI: sessions by user on a %s store', (provider) => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-cli-user-'));
  const flags = provider === 'file' ? ['--provider', 'file', '--dir', dir] : ['--provider', 'sqlite', '--path', join(dir, 's.db')];
  const options = provider === 'file' ? { dir } : { path: join(dir, 's.db') };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('list --user lists one user\'s sessions; destroy-user ends them all', async () => {
    const manager = createManager({ provider: provider as 'file', providerOptions: options as never });
    const handles: Record<string, string[]> = { alice: [], bob: [] };
    try {
      for (const user of ['alice', 'alice', 'bob']) handles[user].push((await manager.create(new Map([['n', '1']]), undefined, undefined, user)).key);
    } finally {
      await manager.close();
    }
    const listed = (await cliJson(['list', '--user', 'alice', ...flags])) as { sessions: Array<{ handle: string; keys: string[] }> };
    expect(listed.sessions.map((session) => session.handle).sort()).toEqual(handles.alice.sort());
    expect(listed.sessions[0].keys).toEqual(['n']); // the manager's own keys are not the app's data
    expect(await cliJson(['list', '--user', 'nobody', ...flags])).toMatchObject({ sessions: [] });
    expect(await cliJson(['destroy-user', 'alice', ...flags])).toEqual({ destroyed: 2 });
    expect(await cliJson(['count', ...flags])).toEqual({ count: 1 });
    expect(await cliJson(['list', '--user', 'bob', ...flags])).toMatchObject({ sessions: [{ handle: handles.bob[0] }] });
  });
});

it('takes a handle or id that starts with "-" as the argument, not as a flag', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-cli-dash-'));
  try {
    const run = await cli(['show', '-nFMFvStJNZeuRYTseWSkysu9dpyXUPLoCFy9Bbffnc', '--provider', 'file', '--dir', dir]);
    expect(run.code).toBe(4); // looked up (and not found), not a usage error
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
