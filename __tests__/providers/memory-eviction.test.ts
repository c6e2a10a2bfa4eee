import { OptionError } from '../../lib/errors';
import { MemoryProvider } from '../../lib/providers/memory';
import { Probation } from '../../lib/providers/probation';
import { resolveProvider } from '../../lib/providers/registry';

const now = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;
const values = (n: number) => new Map([['n', String(n)]]);

/** A provider at `maxSessions` that records what it evicts. */
function recording(maxSessions: number): { provider: MemoryProvider; evicted: string[] } {
  const evicted: string[] = [];
  return { provider: new MemoryProvider({ maxSessions, onEvict: (sid) => evicted.push(sid) }), evicted };
}

/** Creates `count` sessions `prefix0`… and uses each once, so they are established; expiries rise with the index. */
async function establish(provider: MemoryProvider, prefix: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await provider.create(`${prefix}${i}`, values(i), now, now + 60 * MINUTE + i);
    await provider.read(`${prefix}${i}`);
  }
}

describe('memory provider: fair eviction at maxSessions', () => {
  it('a flood of 10,000 new visitors evicts only new visitors while there is room for them', async () => {
    const { provider, evicted } = recording(110);
    await establish(provider, 'user', 100);
    for (let i = 0; i < 10_000; i++) await provider.create(`new${i}`, values(i), now, now + MINUTE);
    for (let i = 0; i < 100; i++) expect(provider.readNow(`user${i}`)).toBeDefined();
    expect(evicted).toHaveLength(9_990);
    expect(evicted).toEqual(Array.from({ length: 9_990 }, (_, i) => `new${i}`)); // oldest first
    await expect(provider.count(now)).resolves.toBe(110);
  });

  it('at a cap full of established sessions, the first newcomer evicts one of them and the rest evict each other', async () => {
    const { provider, evicted } = recording(100);
    await establish(provider, 'user', 100);
    for (let i = 0; i < 10_000; i++) await provider.create(`new${i}`, values(i), now, now + MINUTE);
    expect(evicted).toHaveLength(10_000);
    expect(evicted[0]).toBe('user0'); // no newcomer to evict yet: the established session expiring soonest goes
    expect(evicted.slice(1)).toEqual(Array.from({ length: 9_999 }, (_, i) => `new${i}`));
    for (let i = 1; i < 100; i++) expect(provider.readNow(`user${i}`)).toBeDefined();
    expect(provider.readNow('new9999')).toBeDefined();
  });

  it('evicts new sessions oldest first, whatever their expiry', async () => {
    const { provider, evicted } = recording(3);
    await provider.create('p1', values(1), now, now + 60 * MINUTE);
    await provider.create('p2', values(2), now, now + MINUTE);
    await provider.create('p3', values(3), now, now + 30 * MINUTE);
    await provider.create('p4', values(4), now, now + MINUTE);
    await provider.create('p5', values(5), now, now + MINUTE);
    expect(evicted).toEqual(['p1', 'p2']);
  });

  it.each([
    ['a read that finds it', (provider: MemoryProvider) => provider.read('a')],
    ['readNow', async (provider: MemoryProvider) => provider.readNow('a')],
    ['update', (provider: MemoryProvider) => provider.update('a', values(2), now + 2 * MINUTE, now)],
    ['touch', (provider: MemoryProvider) => provider.touch('a', now + 2 * MINUTE, now)],
  ])('%s establishes a new session', async (_use, use) => {
    const { provider, evicted } = recording(2);
    await provider.create('a', values(1), now, now + MINUTE);
    await use(provider);
    await provider.create('b', values(1), now, now + 5 * MINUTE);
    await provider.create('c', values(1), now, now + 5 * MINUTE);
    expect(evicted).toEqual(['b']);
    expect(provider.readNow('a')).toBeDefined();
  });

  it('the target of a move is established, and the old id leaves probation', async () => {
    const { provider, evicted } = recording(2);
    await provider.create('anonymous', values(1), now, now + MINUTE);
    await expect(provider.move('anonymous', 'signed-in', new Map(), now, now + MINUTE, now)).resolves.toBeInstanceOf(Map);
    await provider.create('b', values(1), now, now + 5 * MINUTE);
    await provider.create('c', values(1), now, now + 5 * MINUTE);
    expect(evicted).toEqual(['b']);
    expect(provider.readNow('signed-in')).toBeDefined();
  });

  it('a failed use establishes nothing', async () => {
    const { provider, evicted } = recording(2);
    await provider.create('a', values(1), now, now + MINUTE);
    await expect(provider.touch('a', now + 5 * MINUTE, now + 2 * MINUTE)).resolves.toBe(false); // expired by then
    await provider.create('b', values(1), now, now + 5 * MINUTE);
    await provider.create('c', values(1), now, now + 5 * MINUTE);
    expect(evicted).toEqual(['a']);
  });

  it('skips new sessions that were destroyed, collected or used before their turn', async () => {
    const { provider, evicted } = recording(4);
    await provider.create('destroyed', values(1), now, now + 5 * MINUTE);
    await provider.create('expired', values(1), now, now + MINUTE);
    await provider.create('used', values(1), now, now + 5 * MINUTE);
    await provider.create('waiting', values(1), now, now + 5 * MINUTE);
    await provider.destroy('destroyed');
    await expect(provider.gc(now + 2 * MINUTE)).resolves.toBe(1);
    await provider.touch('used', now + 6 * MINUTE, now + 2 * MINUTE);
    for (const sid of ['x', 'y', 'z']) await provider.create(sid, values(1), now + 2 * MINUTE, now + 7 * MINUTE);
    expect(evicted).toEqual(['waiting']);
    expect(provider.readNow('used')).toBeDefined();
  });

  it('evicts established sessions soonest-expiring first when no new one is left', async () => {
    const { provider, evicted } = recording(3);
    await establish(provider, 'user', 3); // user0 expires first
    await provider.touch('user0', now + 120 * MINUTE, now); // until it comes back
    await provider.create('new', values(1), now, now + MINUTE);
    expect(evicted).toEqual(['user1']);
  });

  it('an id reused after its session was destroyed is judged as the new session it now is', async () => {
    const { provider, evicted } = recording(2);
    await establish(provider, 'user', 1);
    await provider.destroy('user0');
    await provider.create('user0', values(2), now, now + MINUTE); // new again: its old expiry entry is stale
    await provider.create('old', values(1), now, now + 30 * MINUTE);
    await provider.read('old');
    await provider.create('next', values(1), now, now + MINUTE);
    expect(evicted).toEqual(['user0']);
    await expect(provider.gc(now + 2 * MINUTE)).resolves.toBe(1); // `next`, once, through the probation queue
    expect(provider.readNow('old')).toBeDefined();
  });

  it('reports no eviction below the cap, and none for sessions it collects', async () => {
    const { provider, evicted } = recording(10);
    for (let i = 0; i < 10; i++) await provider.create(`s${i}`, values(i), now, now + MINUTE);
    await expect(provider.gc(now + MINUTE)).resolves.toBe(10);
    for (let i = 0; i < 10; i++) await provider.create(`t${i}`, values(i), now + MINUTE, now + 2 * MINUTE);
    expect(evicted).toEqual([]);
  });

  it('stores the new session before telling onEvict', async () => {
    let seen: unknown;
    const provider: MemoryProvider = new MemoryProvider({ maxSessions: 1, onEvict: () => (seen = provider.readNow('b')) });
    await provider.create('a', values(1), now, now + MINUTE);
    await provider.create('b', values(2), now, now + MINUTE);
    expect(seen).toBeDefined();
  });

  it('rejects an onEvict that is not a function, naming the option', () => {
    expect(() => new MemoryProvider({ onEvict: 'log' as unknown as () => void })).toThrow(OptionError);
    expect(() => new MemoryProvider({ onEvict: 'log' as unknown as () => void })).toThrow(/option onEvict is invalid/);
    expect(() => resolveProvider('memory', { onEvict: 1 })).toThrow(/onEvict/);
    expect(() => resolveProvider('memory', { onEvict: () => undefined })).not.toThrow();
  });
});

describe('probation queue', () => {
  /** A queue over a plain map of sid → [segment, expiresAt], standing in for the provider's sessions. */
  function queue(): { probation: Probation; members: Map<string, [number, number]>; add: (sid: string, expiresAt: number) => void } {
    const members = new Map<string, [number, number]>();
    const probation = new Probation((sid, segment) => {
      const member = members.get(sid);
      return member !== undefined && member[0] === segment ? member[1] : undefined;
    });
    return { probation, members, add: (sid, expiresAt) => members.set(sid, [probation.add(sid, expiresAt), expiresAt]) };
  }

  it('holds a few entries per probationary session, however many sessions were used since', () => {
    const { probation, members, add } = queue();
    for (let i = 0; i < 100_000; i++) {
      add(`s${i}`, now + MINUTE);
      if (i % 100 !== 0) {
        const [segment] = members.get(`s${i}`)!;
        members.delete(`s${i}`);
        probation.leave(segment);
      }
    }
    expect(members.size).toBe(1_000);
    expect(probation.held).toBeLessThanOrEqual(4 * members.size + 1_024);
  });

  it('takes the oldest live member, across segments', () => {
    const { probation, members, add } = queue();
    for (let i = 0; i < 3_000; i++) add(`s${i}`, now + MINUTE);
    for (let i = 0; i < 2_500; i++) {
      const [segment] = members.get(`s${i}`)!;
      members.delete(`s${i}`);
      probation.leave(segment);
    }
    expect(probation.takeOldest()).toBe('s2500');
    expect(probation.takeOldest()).toBe('s2501');
  });

  it('finds the due members of a segment whatever their order', () => {
    const { probation, add } = queue();
    add('late', now + 60 * MINUTE);
    add('soon', now + MINUTE);
    expect(probation.due(now)).toEqual([]);
    const [segment] = probation.due(now + MINUTE);
    expect(probation.takeDue(segment, now + MINUTE)).toEqual(['soon']);
    expect(probation.due(now + 2 * MINUTE)).toEqual([]); // the segment's soonest expiry is exact again
    expect(probation.takeOldest()).toBe('late');
    expect(probation.takeOldest()).toBeUndefined();
  });
});
