import type { Provider, StoredEntry } from '../../lib/providers/provider';
import { expectEveryKeyOfBoth, runMoveRace, runTwoProcessUpdates } from './provider-processes';

export interface ConformanceOptions {
  /** Builds a fresh, empty provider for one test. */
  create: () => Promise<Provider> | Provider;
  /** Tears the provider down after each test (default: `provider.close()`). */
  destroy?: (provider: Provider) => Promise<void>;
  /**
   * Set (with the reason) for a provider whose backend deletes expired entries
   * by itself, so `gc()` may resolve 0: the suite then checks only that expired
   * sessions are neither counted nor listed.
   */
  gcByBackend?: string;
  /**
   * Set for a provider whose storage outlives the instance (a folder, a
   * database file, a server): the suite then checks that a new instance reads
   * and changes what the first wrote, and that two processes updating one
   * session keep every key of both.
   */
  persistent?: PersistentOptions;
}

export interface PersistentOptions {
  /** A new instance over the storage of `provider` (one that `create()` made), as after a restart. */
  reopen: (provider: Provider) => Promise<Provider> | Provider;
  /** The registry name and options a child process passes to build a provider over the storage of `provider`. */
  processOptions: (provider: Provider) => { name: string; options: Record<string, unknown> };
  /** Keys each of the two processes sets. */
  perProcess: number;
  /** Updates each process keeps in flight at once (default: that of `runTwoProcessUpdates`). */
  inFlight?: number;
  /** Extra checks on `provider` after both processes updated session `sid`, e.g. that no lock file is left. */
  afterProcesses?: (provider: Provider, sid: string) => Promise<void> | void;
}

const MINUTE = 60_000;

function values(entries: Record<string, unknown>): Map<string, string> {
  return new Map(Object.entries(entries).map(([key, value]) => [key, JSON.stringify(value)]));
}

function decoded(map: Map<string, string> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  for (const [key, json] of map ?? []) out[key] = JSON.parse(json);
  return out;
}

let counter = 0;
/** A well-formed id unique to this run, so shared servers never mix tests. */
function freshId(): string {
  counter += 1;
  return `conf_${process.pid}_${Date.now().toString(36)}_${counter}_${Math.random().toString(36).slice(2)}`;
}

async function collect(iterable: AsyncIterable<StoredEntry>): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  for await (const entry of iterable) out.push(entry);
  return out;
}

/**
 * The one suite every provider runs. Each test gets a fresh provider; times are
 * near the real clock so backends with their own TTL (Redis) agree with `now`.
 */
export function runProviderConformance(name: string, options: ConformanceOptions): void {
  describe(`${name} provider conformance`, () => {
    let provider: Provider;
    let now: number;

    beforeEach(async () => {
      provider = await options.create();
      now = Date.now();
    });

    afterEach(async () => {
      await (options.destroy ? options.destroy(provider) : provider.close());
    });

    describe('create and read', () => {
      it('stores values, createdAt and expiresAt', async () => {
        const sid = freshId();
        await expect(provider.create(sid, values({ username: 'ann', n: 1 }), now, now + MINUTE)).resolves.toBe(true);
        const stored = await provider.read(sid);
        expect(stored).toBeDefined();
        expect(decoded(stored!.values)).toEqual({ username: 'ann', n: 1 });
        expect(stored!.createdAt).toBe(now);
        expect(stored!.expiresAt).toBe(now + MINUTE);
      });

      it('stores a session with no values', async () => {
        const sid = freshId();
        await provider.create(sid, new Map(), now, now + MINUTE);
        const stored = await provider.read(sid);
        expect(stored?.values.size).toBe(0);
      });

      it('refuses an id that exists and leaves it unchanged', async () => {
        const sid = freshId();
        await provider.create(sid, values({ owner: 'first' }), now, now + MINUTE);
        await expect(provider.create(sid, values({ owner: 'second' }), now, now + 2 * MINUTE)).resolves.toBe(false);
        const stored = await provider.read(sid);
        expect(decoded(stored!.values)).toEqual({ owner: 'first' });
        expect(stored!.expiresAt).toBe(now + MINUTE);
      });

      it('answers undefined for an unknown id', async () => {
        await expect(provider.read(freshId())).resolves.toBeUndefined();
      });

      it('hands out a fresh map on every read', async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        const first = await provider.read(sid);
        first!.values.set('a', '2');
        const second = await provider.read(sid);
        expect(second!.values.get('a')).toBe('1');
      });

      it('round-trips unicode, nested values and awkward keys exactly', async () => {
        const sid = freshId();
        const data = {
          '__proto__': { polluted: true },
          constructor: 'not a function',
          'a.b': 'dotted',
          '$': 'dollar',
          'with "quotes" and \\ backslash': [1, 'two', { three: 3 }],
          'ключ': 'значение',
          emoji: '👋🏽 — "quoted" \n newline \u0000 nul',
          nested: { deep: { deeper: [true, false, null, 1.5e300, -0.25] } },
          empty: {},
          list: [],
          number: 42,
          bool: false,
          nothing: null,
        };
        const input = new Map(Object.keys(data).map((key) => [key, JSON.stringify((data as Record<string, unknown>)[key])]));
        input.set('__proto__', JSON.stringify({ polluted: true }));
        await provider.create(sid, input, now, now + MINUTE);
        const stored = await provider.read(sid);
        expect(new Map([...stored!.values].map(([k, v]) => [k, JSON.parse(v)]))).toEqual(
          new Map([...input].map(([k, v]) => [k, JSON.parse(v)])),
        );
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      });
    });

    describe('update', () => {
      it('sets and deletes only the named keys and moves the expiry', async () => {
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

      it('deleting a key that is not there is harmless', async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await expect(provider.update(sid, new Map([['missing', undefined]]), now + MINUTE, now)).resolves.toBe(true);
        expect(decoded((await provider.read(sid))!.values)).toEqual({ a: 1 });
      });

      it('never brings back a missing session', async () => {
        const sid = freshId();
        await expect(provider.update(sid, values({ a: 1 }), now + MINUTE, now)).resolves.toBe(false);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      it('never brings back a destroyed session', async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await provider.destroy(sid);
        await expect(provider.update(sid, values({ b: 2 }), now + MINUTE, now)).resolves.toBe(false);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      it('leaves an expired session alone', async () => {
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

      it('keeps every key of 50 concurrent updates of one session', async () => {
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
      it('moves the expiry and keeps the values', async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await expect(provider.touch!(sid, now + 3 * MINUTE, now)).resolves.toBe(true);
        const stored = await provider.read(sid);
        expect(stored!.expiresAt).toBe(now + 3 * MINUTE);
        expect(decoded(stored!.values)).toEqual({ a: 1 });
      });

      it('answers false for a missing session and creates nothing', async () => {
        const sid = freshId();
        await expect(provider.touch!(sid, now + MINUTE, now)).resolves.toBe(false);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      it('answers false for an expired session', async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        const later = now + 2 * MINUTE;
        await expect(provider.touch!(sid, later + MINUTE, later)).resolves.toBe(false);
      });
    });


    describe('move (atomic regenerate)', () => {
      it('is implemented', () => {
        expect(typeof provider.move).toBe('function');
      });

      it('gives the new id the stored values plus the changes, and deletes the old one', async () => {
        const [from, to] = [freshId(), freshId()];
        await provider.create(from, values({ user: 'ann', sudo: true }), now - MINUTE, now + MINUTE);
        const moved = await provider.move!(from, to, new Map([['sudo', undefined], ['at', '1']]), now, now + 5 * MINUTE, now);
        expect(moved instanceof Map ? decoded(moved) : moved).toEqual({ user: 'ann', at: 1 });
        await expect(provider.read(from)).resolves.toBeUndefined();
        const stored = await provider.read(to);
        expect(decoded(stored!.values)).toEqual({ user: 'ann', at: 1 });
        expect(stored!.createdAt).toBe(now);
        expect(stored!.expiresAt).toBe(now + 5 * MINUTE);
        await expect(provider.count!(now)).resolves.toBe(1);
      });

      it('starts from the values as stored now, not as some request saw them', async () => {
        const [from, to] = [freshId(), freshId()];
        await provider.create(from, values({ user: 'ann', sudo: true }), now, now + MINUTE);
        await provider.update(from, new Map([['sudo', undefined]]), now + MINUTE, now); // a concurrent revocation
        const moved = await provider.move!(from, to, new Map(), now, now + MINUTE, now);
        expect(decoded(moved as Map<string, string>)).toEqual({ user: 'ann' });
      });

      it('creates nothing when the old session is gone or expired', async () => {
        const [missing, expired, to1, to2] = [freshId(), freshId(), freshId(), freshId()];
        await expect(provider.move!(missing, to1, new Map(), now, now + MINUTE, now)).resolves.toBeUndefined();
        await provider.create(expired, values({ a: 1 }), now, now + MINUTE);
        const later = now + 2 * MINUTE;
        await expect(provider.move!(expired, to2, new Map(), later, later + MINUTE, later)).resolves.toBeUndefined();
        await expect(provider.read(to1)).resolves.toBeUndefined();
        await expect(provider.read(to2)).resolves.toBeUndefined();
      });

      it('changes nothing when the new id is taken', async () => {
        const [from, to] = [freshId(), freshId()];
        await provider.create(from, values({ who: 'from' }), now, now + MINUTE);
        await provider.create(to, values({ who: 'to' }), now, now + MINUTE);
        await expect(provider.move!(from, to, values({ x: 1 }), now, now + 2 * MINUTE, now)).resolves.toBe(false);
        expect(decoded((await provider.read(from))!.values)).toEqual({ who: 'from' });
        expect(decoded((await provider.read(to))!.values)).toEqual({ who: 'to' });
      });

      it('loses no acknowledged update that races with it', async () => {
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

    describe('destroy', () => {
      it('removes the session', async () => {
        const sid = freshId();
        await provider.create(sid, values({ a: 1 }), now, now + MINUTE);
        await provider.destroy(sid);
        await expect(provider.read(sid)).resolves.toBeUndefined();
      });

      it('is a no-op for an unknown id', async () => {
        await expect(provider.destroy(freshId())).resolves.toBeUndefined();
      });

      it('does not touch other sessions', async () => {
        const [a, b] = [freshId(), freshId()];
        await provider.create(a, values({ who: 'a' }), now, now + MINUTE);
        await provider.create(b, values({ who: 'b' }), now, now + MINUTE);
        await provider.destroy(a);
        expect(decoded((await provider.read(b))!.values)).toEqual({ who: 'b' });
      });
    });

    describe('expiry, gc, count and entries', () => {
      async function seed(): Promise<{ live: string[]; expired: string[]; later: number }> {
        const live = [freshId(), freshId(), freshId()];
        const expired = [freshId(), freshId()];
        for (const sid of live) await provider.create(sid, values({ sid }), now, now + 10 * MINUTE);
        for (const sid of expired) await provider.create(sid, values({ sid }), now, now + MINUTE);
        return { live, expired, later: now + 2 * MINUTE };
      }

      it('counts live sessions only', async () => {
        const { later } = await seed();
        await expect(provider.count!(now)).resolves.toBe(5);
        await expect(provider.count!(later)).resolves.toBe(3);
      });

      it('lists live sessions only, with their values and expiry', async () => {
        const { live, later } = await seed();
        const listed = await collect(provider.entries!(later));
        expect(listed.map((entry) => entry.sid).sort()).toEqual([...live].sort());
        for (const entry of listed) {
          expect(decoded(entry.values)).toEqual({ sid: entry.sid });
          expect(entry.expiresAt).toBe(now + 10 * MINUTE);
          expect(entry.createdAt).toBe(now);
        }
      });

      it('collects expired sessions and keeps live ones', async () => {
        const { live, expired, later } = await seed();
        const reported: string[] = [];
        const deleted = await provider.gc!(later, (sid) => reported.push(sid));
        if (!options.gcByBackend) {
          expect(deleted).toBe(2);
          expect(reported.sort()).toEqual([...expired].sort());
          for (const sid of expired) await expect(provider.read(sid)).resolves.toBeUndefined();
        }
        for (const sid of live) expect(await provider.read(sid)).toBeDefined();
        await expect(provider.count!(later)).resolves.toBe(3);
      });

      it('collects nothing when nothing has expired', async () => {
        await seed();
        await expect(provider.gc!(now)).resolves.toBe(0);
        await expect(provider.count!(now)).resolves.toBe(5);
      });

      it('counts zero and lists nothing when empty', async () => {
        await expect(provider.count!(now)).resolves.toBe(0);
        await expect(collect(provider.entries!(now))).resolves.toEqual([]);
      });
    });

    const persistent = options.persistent;
    if (persistent) {
      describe('when the storage outlives the instance', () => {
        it('a new instance over the same storage reads and changes what the first wrote', async () => {
          const sid = freshId();
          await provider.create(sid, values({ user: 'ann' }), now, now + MINUTE);
          await provider.update(sid, values({ cart: [1, 2] }), now + 2 * MINUTE, now);
          const second = await persistent.reopen(provider);
          try {
            const stored = await second.read(sid);
            expect(Object.fromEntries(stored!.values)).toEqual({ user: '"ann"', cart: '[1,2]' });
            expect(stored!.expiresAt).toBe(now + 2 * MINUTE);
            await expect(second.update(sid, values({ user: 'bob' }), now + MINUTE, now)).resolves.toBe(true);
          } finally {
            await second.close();
          }
          expect((await provider.read(sid))!.values.get('user')).toBe('"bob"');
        });

        it('two processes updating one session keep every key of both', async () => {
          const sid = freshId();
          const { perProcess, inFlight } = persistent;
          await provider.create(sid, new Map(), now, now + 10 * MINUTE);
          const { name: registryName, options: providerOptions } = persistent.processOptions(provider);
          await runTwoProcessUpdates(registryName, providerOptions, { sid, perProcess, inFlight });
          expectEveryKeyOfBoth((await provider.read(sid))!.values, perProcess);
          await persistent.afterProcesses?.(provider, sid);
        }, 60_000);

        it('a move in one process loses no acknowledged update of another', async () => {
          const sids = Array.from({ length: 40 }, () => freshId());
          for (const sid of sids) await provider.create(sid, values({ sudo: true }), now, now + 10 * MINUTE);
          const { name: registryName, options: providerOptions } = persistent.processOptions(provider);
          const { moves, updates } = await runMoveRace(registryName, providerOptions, sids);
          expect(moves.every((result) => result === 'moved')).toBe(true);
          for (const [i, sid] of sids.entries()) await expectMovedWithUpdate(sid, updates[i]);
        }, 60_000);
      });
    }
  });
}
