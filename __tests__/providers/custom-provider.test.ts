// A provider written outside this package, tested as its author would: the
// conformance suite from `session-manager/testing` (here '../../lib/testing'),
// then the provider behind `sessions()` over HTTP. The provider is the one the
// README's "Your own provider" shows, verbatim (checked below).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import request from 'supertest';
import { OptionError, sessions } from '../../lib/index';
import { FileProvider } from '../../lib/providers/file';
import {
  loadDriver,
  optionError,
  providerConformance,
  rejectUnknownOptions,
  type ConformanceOptions,
  type Provider,
  type StoredEntry,
  type StoredSession,
  type TestBody,
  type TestRunner,
} from '../../lib/testing';

// README: the provider
/** Sessions in a Map, every call delayed like a round trip to a server: a complete, minimal provider. */
export class MapProvider implements Provider {
  readonly name = 'map';
  readonly #sessions = new Map<string, StoredSession>();
  readonly #latencyMs: number;

  constructor(options: Record<string, unknown> = {}) {
    const { latencyMs = 1 } = rejectUnknownOptions('map', options, ['latencyMs']);
    if (typeof latencyMs !== 'number' || !(latencyMs >= 0)) throw optionError('map', 'latencyMs', latencyMs, 'milliseconds, 0 or more');
    this.#latencyMs = latencyMs;
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    await this.#roundTrip();
    if (this.#sessions.has(sid)) return false; // taken (even if expired): the manager draws another id
    this.#sessions.set(sid, { values: new Map(values), createdAt, expiresAt });
    return true;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    await this.#roundTrip();
    const stored = this.#sessions.get(sid);
    return stored && { ...stored, values: new Map(stored.values) }; // a copy: the caller owns it
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    await this.#roundTrip();
    const stored = this.#sessions.get(sid);
    if (stored === undefined || stored.expiresAt <= now) return false; // never brings a session back
    for (const [key, json] of changes) {
      if (json === undefined) stored.values.delete(key);
      else stored.values.set(key, json);
    }
    stored.expiresAt = expiresAt;
    return true;
  }

  async destroy(sid: string): Promise<void> {
    await this.#roundTrip();
    this.#sessions.delete(sid);
  }

  async gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    await this.#roundTrip();
    let deleted = 0;
    for (const [sid, stored] of this.#sessions) {
      if (stored.expiresAt > now) continue;
      this.#sessions.delete(sid);
      onExpired?.(sid);
      deleted += 1;
    }
    return deleted;
  }

  async count(now: number): Promise<number> {
    await this.#roundTrip();
    let live = 0;
    for (const stored of this.#sessions.values()) if (now < stored.expiresAt) live += 1;
    return live;
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    for (const sid of [...this.#sessions.keys()]) {
      const stored = await this.read(sid); // one at a time, never all at once
      if (stored !== undefined && now < stored.expiresAt) yield { sid, ...stored };
    }
  }

  async close(): Promise<void> {
    this.#sessions.clear();
  }

  #roundTrip(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.#latencyMs * (1 + Math.random())));
  }
}

providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new MapProvider(), {
  name: 'map',
  skip: [
    { reason: 'no touch(): the manager refreshes with an update that changes no key', groups: ['touch'] },
    { reason: 'no move(): regenerate() falls back to read, create, destroy', groups: ['move'] },
    { reason: 'a round trip each call: no synchronous read', groups: ['readNow'] },
    { reason: 'no user index: manager.listByUser() says so', groups: ['byUser'] },
    { reason: 'the Map lives and dies with the instance', groups: ['persistent'] },
  ],
});
// README: end

const SECRET = 'a-test-secret-that-is-long-enough-0123456789';

describe('the README shows this provider verbatim', () => {
  it("has the code between the markers above in its section 'Your own provider'", () => {
    const source = readFileSync(__filename, 'utf8');
    const region = source.slice(source.indexOf('// README: the provider\n') + '// README: the provider\n'.length, source.indexOf('// README: end\n'));
    const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Your own provider'));
    expect(region.length).toBeGreaterThan(1000);
    expect(section.slice(0, section.indexOf('\n## '))).toContain(region);
  });
});

describe('the MapProvider behind sessions()', () => {
  /** A clock the test moves by hand. */
  let time: number;
  let provider: MapProvider;
  let app: express.Express;
  let middleware: ReturnType<typeof sessions>;

  beforeEach(() => {
    time = Date.now();
    provider = new MapProvider();
    middleware = sessions({ provider, secret: SECRET, touchAfter: 0, clock: () => time });
    app = express();
    app.use(middleware);
    app.get('/visit', (req, res) => {
      req.session.set('visits', ((req.session.get('visits') as number | undefined) ?? 0) + 1);
      res.json({ ok: true });
    });
    app.post('/login', async (req, res) => {
      await req.session.regenerate();
      req.session.set('username', 'alice');
      res.redirect('/me');
    });
    app.get('/me', (req, res) => {
      res.json({ username: req.session.get('username') ?? null, visits: req.session.get('visits') ?? null });
    });
  });

  afterEach(() => middleware.manager.close());

  /** The one stored session. */
  async function onlySession(): Promise<StoredEntry> {
    const listed: StoredEntry[] = [];
    for await (const entry of provider.entries(time)) listed.push(entry);
    expect(listed).toHaveLength(1);
    return listed[0];
  }

  it('logs in and reads back over HTTP (regenerate without move: read, create, destroy)', async () => {
    const agent = request.agent(app);
    await agent.get('/visit').expect(200);
    const before = await onlySession();

    const login = await agent.post('/login').expect(302);
    expect(login.headers.location).toBe('/me');
    const after = await onlySession(); // a new handle; the old session is gone
    expect(after.sid === before.sid).toBe(false);
    await expect(provider.read(before.sid)).resolves.toBeUndefined();

    await agent.get('/me').expect(200, { username: 'alice', visits: 1 });
    await expect(middleware.manager.count()).resolves.toBe(1);
  });

  it('refreshes the expiry of a read-only session without touch (an update that changes no key)', async () => {
    const agent = request.agent(app);
    await agent.get('/visit').expect(200);
    const { expiresAt } = await onlySession();
    time += 60_000;
    await agent.get('/me').expect(200, { username: null, visits: 1 });
    const deadline = Date.now() + 2_000; // the refresh may land just after the response
    while ((await onlySession()).expiresAt === expiresAt && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await onlySession()).expiresAt).toBe(expiresAt + 60_000);
  });
});

describe('the provider-writer kit', () => {
  it('rejects an unknown option and an invalid one, in the format of the built-in providers', () => {
    expect(() => new MapProvider({ latency: 5 })).toThrow(OptionError);
    expect(() => new MapProvider({ latency: 5 })).toThrow('[map] unknown option latency (known: latencyMs)');
    expect(() => new MapProvider({ latencyMs: -1 })).toThrow('[map] option latencyMs is invalid: -1 (milliseconds, 0 or more)');
    expect(() => new MapProvider({ latencyMs: 'fast' })).toThrow('[map] option latencyMs is invalid: "fast" (milliseconds, 0 or more)');
    expect(() => rejectUnknownOptions('map', 'latencyMs=1', ['latencyMs'])).toThrow('[map] options must be an object: "latencyMs=1"');
    expect(rejectUnknownOptions('map', undefined, ['latencyMs'])).toEqual({});
  });

  it('shows a value briefly, never an object or a long string in full', () => {
    expect(optionError('x', 'client', new Map(), 'expected a client').message).toMatch(/option client is invalid: a Map \(expected a client\)$/);
    expect(optionError('x', 'hook', () => 'secret', 'a number').message).toMatch(/invalid: a function \(a number\)$/);
    expect(optionError('x', 'config', { password: 'hunter2' }).message).toMatch(/invalid: an object$/);
    expect(optionError('x', 'name', 'y'.repeat(500)).message).toHaveLength('[session-manager] [x] option name is invalid: '.length + 63);
  });

  it('loads a driver on first use, or throws one OptionError saying what to do', () => {
    expect(loadDriver<typeof import('node:path')>('map', 'node:path', 'built in')).toBe(require('node:path'));
    let error: unknown;
    try {
      loadDriver('map', 'no-such-driver-for-session-manager', 'install it, or pass option client');
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(OptionError);
    expect((error as Error).message).toMatch(
      /^\[session-manager\] \[map\] cannot load the driver no-such-driver-for-session-manager: install it, or pass option client \(Cannot find module 'no-such-driver-for-session-manager'[^\n]*\)$/,
    );
    expect(((error as Error).cause as NodeJS.ErrnoException).code).toBe('MODULE_NOT_FOUND');
  });

  it("resolves a driver with the caller's require when given", () => {
    const asked: string[] = [];
    const driver = loadDriver('map', 'my-driver', 'install it', (id) => (asked.push(id), { connect: true }));
    expect(driver).toEqual({ connect: true });
    expect(asked).toEqual(['my-driver']);
  });
});

// A persistent provider of your own: the suite's child processes load it from
// `processOptions().module`, a module that registers it. Here a FileProvider
// registered under another name, by a module written for the test; only the
// cases that need the child processes run (file.test.ts runs the others).
describe('a provider the child processes load from processOptions().module', () => {
  const root = mkdtempSync(join(tmpdir(), 'sm-custom-'));
  const module = join(root, 'register-my-file.js');
  writeFileSync(
    module,
    [
      `const { register } = require(${JSON.stringify(join(__dirname, '..', '..', 'lib', 'providers', 'registry.ts'))});`,
      `const { FileProvider } = require(${JSON.stringify(join(__dirname, '..', '..', 'lib', 'providers', 'file.ts'))});`,
      `register('my-file', (options) => new FileProvider(options));`,
      '',
    ].join('\n'),
  );
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  let dirs = 0;
  const dirOf = new Map<Provider, string>();
  providerConformance(
    { describe, it, expect, beforeEach, afterEach },
    () => {
      const dir = join(root, `sessions-${(dirs += 1)}`);
      const provider = new FileProvider({ dir });
      dirOf.set(provider, dir);
      return provider;
    },
    {
      name: 'my-file',
      persistent: {
        reopen: (provider) => new FileProvider({ dir: dirOf.get(provider)! }),
        processOptions: (provider) => ({ module, name: 'my-file', options: { dir: dirOf.get(provider)! } }),
        perProcess: 50,
      },
      skip: [{ reason: 'file.test.ts runs these for the file provider', groups: ['create', 'read', 'update', 'touch', 'destroy', 'expiry', 'readNow'] }],
    },
  );
});

/** A test runner that only records: the suite's registrations, and a way to run one test with the hooks. */
function recordingRunner(): { runner: TestRunner; names: string[]; skipped: string[]; run(name: string): Promise<void> } {
  const tests = new Map<string, TestBody>();
  const skipped: string[] = [];
  const hooks: { before: (() => Promise<void>)[]; after: (() => Promise<void>)[] } = { before: [], after: [] };
  const path: string[] = [];
  const test = Object.assign((name: string, body: TestBody) => void tests.set([...path, name].join(' › '), body), {
    skip: (name: string) => void skipped.push([...path, name].join(' › ')),
  });
  const runner: TestRunner = {
    describe: (name, body) => {
      path.push(name);
      body();
      path.pop();
    },
    it: test,
    expect,
    beforeEach: (hook) => void hooks.before.push(hook),
    afterEach: (hook) => void hooks.after.push(hook),
  };
  const run = async (name: string): Promise<void> => {
    const body = tests.get(name);
    if (body === undefined) throw new Error(`no test ${name} among ${[...tests.keys()].join('\n')}`);
    for (const hook of hooks.before) await hook();
    try {
      await body();
    } finally {
      for (const hook of hooks.after) await hook();
    }
  };
  return { runner, names: [...tests.keys()], skipped, run };
}

describe('providerConformance itself', () => {
  const PERSISTENT_SKIP: ConformanceOptions['skip'] = [{ reason: 'in memory', groups: ['persistent'] }];

  it("fails 'implements touch (or skips 'touch' with a reason)' for a provider without touch that does not skip it", async () => {
    const recorded = recordingRunner();
    providerConformance(recorded.runner, () => new MapProvider({ latencyMs: 0 }), {
      name: 'map',
      skip: [...PERSISTENT_SKIP!, { reason: 'not here', groups: ['move', 'readNow'] }],
    });
    await expect(recorded.run("map provider conformance › touch › implements touch (or skips 'touch' with a reason)")).rejects.toBeInstanceOf(Error);
    await expect(recorded.run("map provider conformance › expiry: gc, count and entries › implements gc (or skips 'gc' with a reason)")).resolves.toBeUndefined();
    await expect(recorded.run('map provider conformance › update › never brings back a destroyed session')).resolves.toBeUndefined();
  });

  it('registers the tests of a skipped group as skipped, the reason in their names', () => {
    const recorded = recordingRunner();
    providerConformance(recorded.runner, () => new MapProvider(), {
      skip: [{ reason: 'counted elsewhere', groups: ['expiry'] }, ...PERSISTENT_SKIP!],
    });
    const expiry = recorded.skipped.filter((name) => name.startsWith('provider conformance › expiry'));
    expect(expiry.length).toBe(9);
    expect(expiry.every((name) => name.endsWith(' (skipped: counted elsewhere)'))).toBe(true);
    expect(recorded.skipped).toContain("provider conformance › expiry: gc, count and entries › implements count (or skips 'count' with a reason) (skipped: counted elsewhere)");
    expect(recorded.names.some((name) => name.includes('expiry'))).toBe(false);
  });

  it('fails a provider that has no persistent options and does not skip the group', async () => {
    const recorded = recordingRunner();
    providerConformance(recorded.runner, () => new MapProvider({ latencyMs: 0 }), { name: 'map' });
    const name = "map provider conformance › when the storage outlives the instance › is given persistent options (or skips 'persistent' with a reason)";
    await expect(recorded.run(name)).rejects.toBeInstanceOf(Error);
  });

  it('refuses, at registration, a skip without a reason or with an unknown group', () => {
    const { runner } = recordingRunner();
    const factory = (): Provider => new MapProvider();
    expect(() => providerConformance(runner, factory, { skip: [{ reason: ' ', groups: ['move'] }] })).toThrow('every skip needs a reason');
    expect(() => providerConformance(runner, factory, { skip: [{ reason: 'r', groups: ['moves' as 'move'] }] })).toThrow('unknown group "moves"');
    expect(() => providerConformance(runner, factory, { skip: [{ reason: 'r', groups: [] }] })).toThrow('names no groups');
  });
});
