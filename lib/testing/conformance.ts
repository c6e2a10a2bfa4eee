import { missingProviderMethods, USER_KEY, type Provider, type StoredEntry, type StoredSession } from '../providers/provider';
import { runMoveRace, runTwoProcessUpdates, type ChildEnv, type ChildProvider } from './processes';

/** What the suite asks of an assertion: matchers every jest-compatible `expect` has (Jest, Vitest, the `expect` package). */
export interface Matchers {
  toBe(expected: unknown): unknown;
  toEqual(expected: unknown): unknown;
  toBeUndefined(): unknown;
  toBeDefined(): unknown;
  toBeInstanceOf(expected: unknown): unknown;
  toHaveLength(expected: number): unknown;
}

export interface Assertion extends Matchers {
  resolves: Matchers;
  rejects: Matchers;
}

export type TestBody = () => Promise<void>;

export interface TestFunction {
  /** Called as `it(name, body)`, or `it(name, body, timeoutMs)` for the slow cases (the form Jest and Vitest take). */
  (name: string, body: TestBody, timeoutMs?: number): unknown;
  skip(name: string, body: TestBody): unknown;
}

/** The test runner's functions: pass your runner's own, e.g. `{ describe, it, expect, beforeEach, afterEach }`. */
export interface TestRunner {
  describe(name: string, body: () => void): unknown;
  it: TestFunction;
  expect(actual: unknown): Assertion;
  beforeEach(hook: () => Promise<void>): unknown;
  afterEach(hook: () => Promise<void>): unknown;
}

/** Names of the groups of tests, as `skip` takes them. */
export const CONFORMANCE_GROUPS = [
  'create',
  'read',
  'update',
  'touch',
  'destroy',
  'expiry',
  'gc',
  'count',
  'entries',
  'move',
  'readNow',
  'byUser',
  'persistent',
] as const;

/**
 * A group of tests: one per method (`expiry` = `gc`, `count` and `entries`
 * together), and `persistent`: a new instance over the same storage, and two
 * processes sharing it.
 */
export type ConformanceGroup = (typeof CONFORMANCE_GROUPS)[number];

export interface ConformanceSkip {
  /** Why: shown in the name of every skipped test. */
  reason: string;
  groups: ConformanceGroup[];
}

/** Builds a fresh, empty provider for one test. */
export type ProviderUnderTest = () => Promise<Provider> | Provider;

export interface ConformanceOptions {
  /** Names the suite: `<name> provider conformance`. */
  name?: string;
  /** Tears the provider down after each test (default: `provider.close()`). */
  destroy?: (provider: Provider) => Promise<void> | void;
  /**
   * Set (with the reason) for a provider whose backend deletes expired entries
   * by itself, so `gc()` may resolve 0: the suite then checks only that expired
   * sessions are neither counted nor listed.
   */
  gcByBackend?: string;
  /**
   * For a provider whose storage outlives the instance (a folder, a database
   * file, a server): the suite then checks that a new instance reads and
   * changes what the first wrote, and that two processes sharing the storage
   * lose no update. Without it, skip `persistent` with a reason.
   */
  persistent?: PersistentOptions;
  /**
   * Groups of tests not to run, each with the reason. A provider without an
   * optional method (`touch`, `gc`, `count`, `entries`, `move`, `readNow`) must
   * skip its group, and one without `persistent` options the group
   * `persistent`: otherwise a test says so. Skipped tests are reported as
   * skipped, the reason in their names.
   */
  skip?: ConformanceSkip[];
}

export interface PersistentOptions {
  /** A new instance over the storage of `provider` (one the factory made), as after a restart. */
  reopen: (provider: Provider) => Promise<Provider> | Provider;
  /**
   * How a child process builds a provider over the storage of `provider`: a
   * built-in or registered `name` and its `options`, plus, for your own
   * provider, `module`: the absolute path of a module that registers it
   * (`register(name, factory)`), which the child loads first. The child runs
   * plain `node` (use `env` for a loader such as ts-node).
   */
  processOptions: (provider: Provider) => ChildProvider;
  /** Keys each of the two processes sets. */
  perProcess: number;
  /** Updates each process keeps in flight at once. Default 4. */
  inFlight?: number;
  /** Variables added to the children's environment, e.g. `{ NODE_OPTIONS: '--require ts-node/register' }`. */
  env?: ChildEnv;
  /** Extra checks on `provider` after both processes updated session `sid`, e.g. that no lock file is left. */
  afterProcesses?: (provider: Provider, sid: string) => Promise<void> | void;
}

/** The optional method behind each group that has one. */
const OPTIONAL_METHODS = {
  touch: 'touch',
  gc: 'gc',
  count: 'count',
  entries: 'entries',
  move: 'move',
  readNow: 'readNow',
  byUser: 'listByUser',
} as const satisfies Partial<Record<ConformanceGroup, keyof Provider>>;
type OptionalGroup = keyof typeof OPTIONAL_METHODS;

/** The groups a group belongs to: skipping `expiry` skips `gc`, `count` and `entries`. */
const PARENTS: Partial<Record<ConformanceGroup, ConformanceGroup>> = { gc: 'expiry', count: 'expiry', entries: 'expiry' };

const MINUTE = 60_000;
const PROCESS_TIMEOUT_MS = 60_000;
/** Time allowed to a test that runs two child processes. */
const PROCESS_TEST_TIMEOUT_MS = 90_000;

function values(entries: Record<string, unknown>): Map<string, string> {
  return new Map(Object.entries(entries).map(([key, value]) => [key, JSON.stringify(value)]));
}

function decoded(map: Map<string, string> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  for (const [key, json] of map ?? []) out[key] = JSON.parse(json);
  return out;
}

/** A comparable form of a map: its entries, sorted by key, values decoded. */
function sortedEntries(map: ReadonlyMap<string, string>): [string, unknown][] {
  return [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, json]) => [key, JSON.parse(json)]);
}

let counter = 0;
/** An id unique to this run, so tests sharing a server never mix. */
function freshId(): string {
  counter += 1;
  return `conf_${process.pid}_${Date.now().toString(36)}_${counter}_${Math.random().toString(36).slice(2)}`;
}

async function collect(iterable: AsyncIterable<StoredEntry>): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  for await (const entry of iterable) out.push(entry);
  return out;
}

/** Throws at registration when `skip` names an unknown group or gives no reason. */
function skipReasons(skip: ConformanceSkip[] | undefined): Map<ConformanceGroup, string> {
  const reasons = new Map<ConformanceGroup, string>();
  for (const entry of skip ?? []) {
    if (typeof entry?.reason !== 'string' || entry.reason.trim() === '') {
      throw new TypeError(`providerConformance: every skip needs a reason (groups ${JSON.stringify(entry?.groups)})`);
    }
    if (!Array.isArray(entry.groups) || entry.groups.length === 0) {
      throw new TypeError(`providerConformance: skip "${entry.reason}" names no groups`);
    }
    for (const group of entry.groups) {
      if (!(CONFORMANCE_GROUPS as readonly string[]).includes(group)) {
        throw new TypeError(`providerConformance: unknown group "${String(group)}" in skip (groups: ${CONFORMANCE_GROUPS.join(', ')})`);
      }
      reasons.set(group, entry.reason);
    }
  }
  return reasons;
}

/**
 * The suite every provider passes, for any test runner with a jest-compatible
 * `expect`: it registers its tests with the functions you give it. Each test
 * gets a fresh provider from `factory`; times are near the real clock, so a
 * backend with its own TTL agrees with `now`.
 *
 * @example
 * import { providerConformance } from 'session-manager/testing';
 * providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new MyProvider(), {
 *   name: 'mystore',
 *   skip: [{ reason: 'no move(): regenerate() falls back to read, create, destroy', groups: ['move'] }],
 * });
 */
export function providerConformance(runner: TestRunner, factory: ProviderUnderTest, options: ConformanceOptions = {}): void {
  const { describe, it, expect, beforeEach, afterEach } = runner;
  const reasons = skipReasons(options.skip);
  const persistent = options.persistent;
  let provider: Provider;
  let now: number;

  const skippedBecause = (group: ConformanceGroup): string | undefined => {
    const parent = PARENTS[group];
    return reasons.get(group) ?? (parent === undefined ? undefined : reasons.get(parent));
  };
  const lacks = (group: ConformanceGroup): boolean =>
    group in OPTIONAL_METHODS && typeof provider[OPTIONAL_METHODS[group as OptionalGroup]] !== 'function';
  /** Whether a test may use the optional method of `group`. */
  const has = (group: OptionalGroup): boolean => skippedBecause(group) === undefined && !lacks(group);

  /**
   * Registers a test that needs the groups `needs`: skipped when one of them
   * is. When the provider lacks an optional method it needs, the test passes
   * without running: the group's "implements" test is the one that fails.
   */
  function test(name: string, needs: ConformanceGroup[], body: TestBody, timeoutMs?: number): void {
    const reason = needs.map(skippedBecause).find((why) => why !== undefined);
    if (reason !== undefined) {
      it.skip(`${name} (skipped: ${reason})`, async () => undefined);
      return;
    }
    const run: TestBody = async () => {
      if (!needs.some(lacks)) await body();
    };
    if (timeoutMs === undefined) it(name, run);
    else it(name, run, timeoutMs);
  }

  /** The test every optional group starts with: the method is there, or the group is skipped. */
  function implementsTest(group: OptionalGroup): void {
    const method = OPTIONAL_METHODS[group];
    const name = `implements ${method} (or skips '${group}' with a reason)`;
    const reason = skippedBecause(group);
    if (reason !== undefined) {
      it.skip(`${name} (skipped: ${reason})`, async () => undefined);
      return;
    }
    it(name, async () => {
      expect(typeof provider[method]).toBe('function');
    });
  }

  describe(`${options.name === undefined ? '' : `${options.name} `}provider conformance`, () => {
    beforeEach(async () => {
      provider = undefined as unknown as Provider; // a factory that throws leaves none to tear down
      provider = await factory();
      now = Date.now();
    });

    afterEach(async () => {
      if (provider === undefined) return;
      await (options.destroy ? options.destroy(provider) : provider.close());
    });

    it('has a name and every required method (create, read, update, destroy, close)', async () => {
      expect(typeof provider.name).toBe('string');
      expect(provider.name.length > 0).toBe(true);
      expect(missingProviderMethods(provider)).toEqual([]);
    });

    describe('create', () => {
      test('stores values, createdAt and expiresAt', ['create'], async () => {
        const sid = freshId();
        await expect(provider.create(sid, values({ username: 'ann', n: 1 }), now, now + MINUTE)).resolves.toBe(true);
        const stored = await provider.read(sid);
        expect(stored).toBeDefined();
        expect(decoded(stored!.values)).toEqual({ username: 'ann', n: 1 });
        expect(stored!.createdAt).toBe(now);
        expect(stored!.expiresAt).toBe(now + MINUTE);
      });

      test('stores a session with no values', ['create'], async () => {
        const sid = freshId();
        await expect(provider.create(sid, new Map(), now, now + MINUTE)).resolves.toBe(true);
        const stored = await provider.read(sid);
        expect(stored?.values.size).toBe(0);
      });

      test('refuses an id that exists and leaves it unchanged', ['create'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ owner: 'first' }), now, now + MINUTE);
        await expect(provider.create(sid, values({ owner: 'second' }), now, now + 2 * MINUTE)).resolves.toBe(false);
        const stored = await provider.read(sid);
        expect(decoded(stored!.values)).toEqual({ owner: 'first' });
        expect(stored!.expiresAt).toBe(now + MINUTE);
      });

      test('round-trips unicode, nested values and awkward keys exactly', ['create'], async () => {
        const sid = freshId();
        const data = {
          constructor: 'not a function',
          'a.b': 'dotted',
          $: 'dollar',
          'with "quotes" and \\ backslash': [1, 'two', { three: 3 }],
          ключ: 'значение',
          emoji: '👋🏽 — "quoted" \n newline \u0000 nul',
          nested: { deep: { deeper: [true, false, null, 1.5e300, -0.25] } },
          empty: {},
          list: [],
          number: 42,
          bool: false,
          nothing: null,
        };
        const input = values(data);
        input.set('__proto__', JSON.stringify({ polluted: true }));
        input.set('', '"empty key"');
        await provider.create(sid, input, now, now + MINUTE);
        const stored = await provider.read(sid);
        expect(sortedEntries(stored!.values)).toEqual(sortedEntries(input));
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      });
    });

    describe('read', () => {
      test('answers undefined for an unknown id', ['read'], async () => {
        await expect(provider.read(freshId())).resolves.toBeUndefined();
      });

      test('hands out a fresh map on every read', ['read'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        const first = await provider.read(sid);
        first!.values.set('a', '2');
        first!.values.set('b', '3');
        const second = await provider.read(sid);
        expect(sortedEntries(second!.values)).toEqual([['a', 1]]);
      });
    });

    describe('update', () => {
      test('sets and deletes only the named keys and moves the expiry', ['update'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ keep: 'k', change: 1, drop: true }), now, now + MINUTE);
        const changes = new Map<string, string | undefined>([
          ['change', '2'],
          ['drop', undefined],
          ['added', '"new"'],
        ]);
        await expect(provider.update(sid, changes, now + 2 * MINUTE, now)).resolves.toBe(true);
        const stored = await provider.read(sid);
        expect(decoded(stored!.values)).toEqual({ keep: 'k', change: 2, added: 'new' });
        expect(stored!.expiresAt).toBe(now + 2 * MINUTE);
        expect(stored!.createdAt).toBe(now);
      });

      test('deleting a key that is not there is harmless', ['update'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await expect(provider.update(sid, new Map([['missing', undefined]]), now + MINUTE, now)).resolves.toBe(true);
        expect(decoded((await provider.read(sid))!.values)).toEqual({ a: 1 });
      });

      test('never brings back a missing session', ['update'], async () => {
        const sid = freshId();
        await expect(provider.update(sid, values({ a: 1 }), now + MINUTE, now)).resolves.toBe(false);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      test('never brings back a destroyed session', ['update'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await provider.destroy(sid);
        await expect(provider.update(sid, values({ b: 2 }), now + MINUTE, now)).resolves.toBe(false);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      test('leaves an expired session alone', ['update'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        const later = now + 2 * MINUTE;
        await expect(provider.update(sid, values({ a: 2 }), later + MINUTE, later)).resolves.toBe(false);
        const stored = await provider.read(sid);
        if (stored) {
          expect(decoded(stored.values)).toEqual({ a: 1 });
          expect(stored.expiresAt).toBe(now + MINUTE);
        }
      });

      test('keeps every key of 50 concurrent updates of one session', ['update'], async () => {
        const sid = freshId();
        await provider.create(sid, new Map(), now, now + MINUTE);
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => provider.update(sid, values({ [`key${i}`]: i }), now + MINUTE, now)),
        );
        expect(results.every(Boolean)).toBe(true);
        const stored = decoded((await provider.read(sid))!.values);
        expect(Object.keys(stored)).toHaveLength(50);
        for (let i = 0; i < 50; i++) expect(stored[`key${i}`]).toBe(i);
      });
    });

    describe('touch', () => {
      implementsTest('touch');

      test('moves the expiry and keeps the values', ['touch'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await expect(provider.touch!(sid, now + 3 * MINUTE, now)).resolves.toBe(true);
        const stored = await provider.read(sid);
        expect(stored!.expiresAt).toBe(now + 3 * MINUTE);
        expect(decoded(stored!.values)).toEqual({ a: 1 });
      });

      test('answers false for a missing session and creates nothing', ['touch'], async () => {
        const sid = freshId();
        await expect(provider.touch!(sid, now + MINUTE, now)).resolves.toBe(false);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      test('answers false for an expired session', ['touch'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        const later = now + 2 * MINUTE;
        await expect(provider.touch!(sid, later + MINUTE, later)).resolves.toBe(false);
      });
    });

    describe('destroy', () => {
      test('removes the session', ['destroy'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await provider.destroy(sid);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      test('is a no-op for an unknown id', ['destroy'], async () => {
        await expect(provider.destroy(freshId())).resolves.toBeUndefined();
      });

      test('does not touch other sessions', ['destroy'], async () => {
        const [a, b] = [freshId(), freshId()];
        await provider.create(a, values({ who: 'a' }), now, now + MINUTE);
        await provider.create(b, values({ who: 'b' }), now, now + MINUTE);
        await provider.destroy(a);
        expect(decoded((await provider.read(b))!.values)).toEqual({ who: 'b' });
      });
    });

    describe('expiry: gc, count and entries', () => {
      /** Three sessions live until now + 10 min, two until now + 1 min; `later` (now + 2 min) is past the two. */
      async function seed(): Promise<{ live: string[]; expired: string[]; later: number }> {
        const live = [freshId(), freshId(), freshId()];
        const expired = [freshId(), freshId()];
        for (const sid of live) await provider.create(sid, values({ sid }), now, now + 10 * MINUTE);
        for (const sid of expired) await provider.create(sid, values({ sid }), now, now + MINUTE);
        return { live, expired, later: now + 2 * MINUTE };
      }

      implementsTest('gc');
      implementsTest('count');
      implementsTest('entries');

      test('collects expired sessions and keeps live ones', ['gc'], async () => {
        const { live, expired, later } = await seed();
        const reported: string[] = [];
        const deleted = await provider.gc!(later, (sid) => reported.push(sid));
        if (!options.gcByBackend) {
          expect(deleted).toBe(2);
          expect(reported.sort()).toEqual([...expired].sort());
          for (const sid of expired) await expect(provider.read(sid)).resolves.toBeUndefined();
        }
        for (const sid of live) expect(await provider.read(sid)).toBeDefined();
        if (has('count')) await expect(provider.count!(later)).resolves.toBe(3);
      });

      test('collects nothing when nothing has expired', ['gc'], async () => {
        const { live, expired } = await seed();
        await expect(provider.gc!(now)).resolves.toBe(0);
        for (const sid of [...live, ...expired]) expect(await provider.read(sid)).toBeDefined();
      });

      test('counts live sessions only', ['count'], async () => {
        const { later } = await seed();
        await expect(provider.count!(now)).resolves.toBe(5);
        await expect(provider.count!(later)).resolves.toBe(3);
      });

      test('counts zero when empty', ['count'], async () => {
        await expect(provider.count!(now)).resolves.toBe(0);
      });

      test('lists live sessions only, with their values and times', ['entries'], async () => {
        const { live, later } = await seed();
        const listed = await collect(provider.entries!(later));
        expect(listed.map((entry) => entry.sid).sort()).toEqual([...live].sort());
        for (const entry of listed) {
          expect(decoded(entry.values)).toEqual({ sid: entry.sid });
          expect(entry.expiresAt).toBe(now + 10 * MINUTE);
          expect(entry.createdAt).toBe(now);
        }
      });

      test('lists nothing when empty', ['entries'], async () => {
        await expect(collect(provider.entries!(now))).resolves.toEqual([]);
      });
    });

    describe('listByUser (sessions by user)', () => {
      implementsTest('byUser');
      const owned = (user: string, extra: Record<string, unknown> = {}): Map<string, string> => values({ ...extra, [USER_KEY]: user });
      const listed = async (user: string, at = now): Promise<string[]> => (await provider.listByUser!(user, at)).map((entry) => entry.sid).sort();

      test('finds the sessions created for a user, with their values, and no one else’s', ['byUser'], async () => {
        const user = `user:${freshId()}`;
        const [a, b, other] = [freshId(), freshId(), freshId()];
        await provider.create(a, owned(user, { n: 1 }), now, now + MINUTE);
        await provider.create(b, owned(user), now, now + MINUTE);
        await provider.create(other, owned(`${user}-other`), now, now + MINUTE);
        await provider.create(freshId(), values({ n: 2 }), now, now + MINUTE);
        const found = await provider.listByUser!(user, now);
        expect(found.map((entry) => entry.sid).sort()).toEqual([a, b].sort());
        const first = found.find((entry) => entry.sid === a)!;
        expect(decoded(first.values)).toEqual({ n: 1, [USER_KEY]: user });
        expect([first.createdAt, first.expiresAt]).toEqual([now, now + MINUTE]);
        await expect(provider.listByUser!(`nobody:${freshId()}`, now)).resolves.toEqual([]);
      });

      test('follows the user key through updates: bound later, rebound, unbound', ['byUser'], async () => {
        const [ann, bob] = [`ann:${freshId()}`, `bob:${freshId()}`];
        const sid = freshId();
        await provider.create(sid, values({ n: 1 }), now, now + MINUTE);
        await provider.update(sid, new Map([[USER_KEY, JSON.stringify(ann)]]), now + MINUTE, now);
        expect(await listed(ann)).toEqual([sid]);
        await provider.update(sid, new Map([[USER_KEY, JSON.stringify(bob)]]), now + MINUTE, now);
        expect([await listed(ann), await listed(bob)]).toEqual([[], [sid]]);
        await provider.update(sid, new Map([[USER_KEY, undefined]]), now + MINUTE, now);
        expect(await listed(bob)).toEqual([]);
      });

      test('never lists a destroyed or expired session', ['byUser'], async () => {
        const user = `user:${freshId()}`;
        const [gone, expiring, live] = [freshId(), freshId(), freshId()];
        await provider.create(gone, owned(user), now, now + MINUTE);
        await provider.create(expiring, owned(user), now, now + MINUTE);
        await provider.create(live, owned(user), now, now + 10 * MINUTE);
        await provider.destroy(gone);
        const later = now + 2 * MINUTE;
        expect(await listed(user, later)).toEqual([live]);
        if (has('gc')) await provider.gc!(later);
        expect(await listed(user, later)).toEqual([live]);
      });

      test('moves with the session: the new id is listed, the old one not', ['byUser', 'move'], async () => {
        const user = `user:${freshId()}`;
        const [from, to] = [freshId(), freshId()];
        await provider.create(from, owned(user), now, now + MINUTE);
        await provider.move!(from, to, new Map(), now, now + MINUTE, now);
        expect(await listed(user)).toEqual([to]);
      });

      test('takes user ids of any characters', ['byUser'], async () => {
        for (const user of ['a:b{c}d', 'ключ 👋 "q"', '*', '%', 'x'.repeat(300)]) {
          const sid = freshId();
          await provider.create(sid, owned(user), now, now + MINUTE);
          expect(await listed(user)).toEqual([sid]);
        }
      });

      test('finds 5 sessions of a user among 200 of others', ['byUser'], async () => {
        const user = `user:${freshId()}`;
        const mine: string[] = [];
        for (let i = 0; i < 205; i++) {
          const sid = freshId();
          if (i % 41 === 0) mine.push(sid);
          await provider.create(sid, owned(i % 41 === 0 ? user : `other:${i % 7}:${user}`), now, now + MINUTE);
        }
        expect(await listed(user)).toEqual(mine.sort());
      });
    });

    describe('move (atomic regenerate)', () => {
      implementsTest('move');

      test('gives the new id the stored values plus the changes, and deletes the old one', ['move'], async () => {
        const [from, to] = [freshId(), freshId()];
        await provider.create(from, values({ user: 'ann', sudo: true }), now - MINUTE, now + MINUTE);
        const moved = await provider.move!(from, to, new Map([['sudo', undefined], ['at', '1']]), now, now + 5 * MINUTE, now);
        expect(moved instanceof Map ? decoded(moved) : moved).toEqual({ user: 'ann', at: 1 });
        await expect(provider.read(from)).resolves.toBeUndefined();
        const stored = await provider.read(to);
        expect(decoded(stored!.values)).toEqual({ user: 'ann', at: 1 });
        expect(stored!.createdAt).toBe(now);
        expect(stored!.expiresAt).toBe(now + 5 * MINUTE);
        if (has('count')) await expect(provider.count!(now)).resolves.toBe(1);
      });

      test('starts from the values as stored now, not as some request saw them', ['move'], async () => {
        const [from, to] = [freshId(), freshId()];
        await provider.create(from, values({ user: 'ann', sudo: true }), now, now + MINUTE);
        await provider.update(from, new Map([['sudo', undefined]]), now + MINUTE, now); // a concurrent revocation
        const moved = await provider.move!(from, to, new Map(), now, now + MINUTE, now);
        expect(moved).toBeInstanceOf(Map);
        expect(decoded(moved as Map<string, string>)).toEqual({ user: 'ann' });
      });

      test('creates nothing when the old session is gone or expired', ['move'], async () => {
        const [missing, expired, to1, to2] = [freshId(), freshId(), freshId(), freshId()];
        await expect(provider.move!(missing, to1, new Map(), now, now + MINUTE, now)).resolves.toBeUndefined();
        await provider.create(expired, values({ a: 1 }), now, now + MINUTE);
        const later = now + 2 * MINUTE;
        await expect(provider.move!(expired, to2, new Map(), later, later + MINUTE, later)).resolves.toBeUndefined();
        await expect(provider.read(to1)).resolves.toBeUndefined();
        await expect(provider.read(to2)).resolves.toBeUndefined();
      });

      test('changes nothing when the new id is taken', ['move'], async () => {
        const [from, to] = [freshId(), freshId()];
        await provider.create(from, values({ who: 'from' }), now, now + MINUTE);
        await provider.create(to, values({ who: 'to' }), now, now + MINUTE);
        await expect(provider.move!(from, to, values({ x: 1 }), now, now + 2 * MINUTE, now)).resolves.toBe(false);
        expect(decoded((await provider.read(from))!.values)).toEqual({ who: 'from' });
        expect(decoded((await provider.read(to))!.values)).toEqual({ who: 'to' });
      });

      test('loses no acknowledged update that races with it', ['move'], async () => {
        const sids = Array.from({ length: 20 }, () => freshId());
        for (const sid of sids) await provider.create(sid, values({ sudo: true }), now, now + MINUTE);
        const results = await Promise.all(
          sids.flatMap((sid) => [
            provider.move!(sid, `${sid}_to`, new Map([['moved', '1']]), now, now + MINUTE, now),
            provider.update(sid, new Map([['sudo', undefined], ['u', '1']]), now + MINUTE, now),
          ]),
        );
        for (const [i, sid] of sids.entries()) {
          expect(results[2 * i]).toBeInstanceOf(Map);
          await expectMovedWithUpdate(sid, results[2 * i + 1] as boolean);
        }
      });
    });

    /** After a move of `sid` raced an update of it: only the new id is left, and it holds an acknowledged update. */
    async function expectMovedWithUpdate(sid: string, updateAcknowledged: boolean): Promise<void> {
      await expect(provider.read(sid)).resolves.toBeUndefined();
      const moved = decoded((await provider.read(`${sid}_to`))!.values);
      expect(moved.moved).toBe(1);
      if (updateAcknowledged) expect(moved).toEqual({ moved: 1, u: 1 });
      else expect(moved).toEqual({ moved: 1, sudo: true });
    }

    describe('readNow (synchronous read)', () => {
      implementsTest('readNow');

      test('answers as read does for present, missing, expired and destroyed sessions', ['readNow'], async () => {
        // Each case twice, alike: readNow reads one, read the other, so neither sees what the other may have done (a lazy delete).
        const pair = async (setUp: (sid: string) => Promise<void>): Promise<[StoredSession | undefined, StoredSession | undefined]> => {
          const [a, b] = [freshId(), freshId()];
          await setUp(a);
          await setUp(b);
          const synchronous = provider.readNow!(a);
          expect(synchronous instanceof Promise).toBe(false);
          return [synchronous, await provider.read(b)];
        };
        const comparable = (stored: StoredSession | undefined) =>
          stored && { values: sortedEntries(stored.values), createdAt: stored.createdAt, expiresAt: stored.expiresAt };
        const cases: Record<string, (sid: string) => Promise<void>> = {
          present: async (sid) => {
            await provider.create(sid, values({ user: 'ann', n: 1 }), now, now + MINUTE);
          },
          missing: async () => undefined,
          expired: async (sid) => {
            await provider.create(sid, values({ user: 'ann' }), now - 2 * MINUTE, now - MINUTE);
          },
          destroyed: async (sid) => {
            await provider.create(sid, values({ user: 'ann' }), now, now + MINUTE);
            await provider.destroy(sid);
          },
        };
        for (const [name, setUp] of Object.entries(cases)) {
          const [synchronous, asynchronous] = await pair(setUp);
          expect({ case: name, readNow: comparable(synchronous) }).toEqual({ case: name, readNow: comparable(asynchronous) });
          if (name === 'present') expect(synchronous).toBeDefined();
          if (name === 'missing' || name === 'destroyed') expect(synchronous).toBeUndefined();
        }
      });

      test('updateNow, when offered, writes as update does: per key, only while live, at once', ['readNow'], async () => {
        if (provider.updateNow === undefined) return; // optional even for a provider with readNow
        const sid = freshId();
        await provider.create(sid, values({ a: 1, b: 2 }), now, now + MINUTE);
        const result = provider.updateNow(sid, new Map([['a', '10'], ['b', undefined], ['c', '3']]), now + 2 * MINUTE, now);
        expect(result).toBe(true); // a boolean, not a promise
        const stored = provider.readNow!(sid)!;
        expect({ values: sortedEntries(stored.values), expiresAt: stored.expiresAt }).toEqual({ values: [['a', 10], ['c', 3]], expiresAt: now + 2 * MINUTE });
        const expired = freshId();
        await provider.create(expired, values({ a: 1 }), now - 2 * MINUTE, now - MINUTE);
        expect(provider.updateNow(expired, values({ a: 2 }), now + MINUTE, now)).toBe(false);
        const missing = freshId();
        expect(provider.updateNow(missing, values({ a: 2 }), now + MINUTE, now)).toBe(false);
        expect(await provider.read(missing)).toBeUndefined(); // never created by an update
      });

      test('hands out a fresh map on every call', ['readNow'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        provider.readNow!(sid)!.values.set('a', '2');
        expect(sortedEntries(provider.readNow!(sid)!.values)).toEqual([['a', 1]]);
      });
    });

    describe('when the storage outlives the instance', () => {
      if (persistent === undefined && skippedBecause('persistent') === undefined) {
        it("is given persistent options (or skips 'persistent' with a reason)", async () => {
          expect(options.persistent).toBeDefined();
        });
        return;
      }

      test('a new instance over the same storage reads and changes what the first wrote', ['persistent'], async () => {
        const sid = freshId();
        await provider.create(sid, values({ user: 'ann' }), now, now + MINUTE);
        await provider.update(sid, values({ cart: [1, 2] }), now + 2 * MINUTE, now);
        const second = await persistent!.reopen(provider);
        try {
          const stored = await second.read(sid);
          expect(sortedEntries(stored!.values)).toEqual([['cart', [1, 2]], ['user', 'ann']]);
          expect(stored!.expiresAt).toBe(now + 2 * MINUTE);
          await expect(second.update(sid, values({ user: 'bob' }), now + MINUTE, now)).resolves.toBe(true);
        } finally {
          await second.close();
        }
        expect((await provider.read(sid))!.values.get('user')).toBe('"bob"');
      });

      test(
        'two processes updating one session keep every key of both',
        ['persistent'],
        async () => {
          const sid = freshId();
          const { perProcess, inFlight, env } = persistent!;
          await provider.create(sid, new Map(), now, now + 10 * MINUTE);
          await runTwoProcessUpdates(persistent!.processOptions(provider), { sid, perProcess, inFlight, env, timeoutMs: PROCESS_TIMEOUT_MS });
          const stored = (await provider.read(sid))!.values;
          expect(stored.size).toBe(2 * perProcess);
          for (let i = 0; i < perProcess; i++) {
            expect(stored.get(`a${i}`)).toBe(String(i));
            expect(stored.get(`b${i}`)).toBe(String(i));
          }
          await persistent!.afterProcesses?.(provider, sid);
        },
        PROCESS_TEST_TIMEOUT_MS,
      );

      test(
        'a move in one process loses no acknowledged update of another',
        ['persistent', 'move'],
        async () => {
          const sids = Array.from({ length: 40 }, () => freshId());
          for (const sid of sids) await provider.create(sid, values({ sudo: true }), now, now + 10 * MINUTE);
          const { moves, updates } = await runMoveRace(persistent!.processOptions(provider), sids, { env: persistent!.env, timeoutMs: PROCESS_TIMEOUT_MS });
          expect(moves.filter((result) => result !== 'moved')).toEqual([]);
          for (const [i, sid] of sids.entries()) await expectMovedWithUpdate(sid, updates[i]);
        },
        PROCESS_TEST_TIMEOUT_MS,
      );
    });
  });
}
