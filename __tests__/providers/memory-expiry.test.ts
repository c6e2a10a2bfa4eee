import { ExpiryHeap, secondOf } from '../../lib/providers/expiry-heap';
import { MemoryProvider } from '../../lib/providers/memory';

const now = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;
const values = (n: number) => new Map([['n', String(n)]]);

/** A fixed pseudo-random sequence (a linear congruential generator), so the test is the same every run. */
function sequence(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe('expiry heap', () => {
  it('gives entries back by expiry second, whatever order they were filed in', () => {
    const heap = new ExpiryHeap();
    const random = sequence(7);
    const filed: number[] = [];
    for (let i = 0; i < 5_000; i++) {
      const expiresAt = now + Math.floor(random() * DAY);
      filed.push(secondOf(expiresAt));
      heap.add(String(filed.length - 1), expiresAt);
    }
    const into = { second: 0 };
    const seconds: number[] = [];
    for (let sid = heap.take(Infinity, into); sid !== undefined; sid = heap.take(Infinity, into)) {
      expect(filed[Number(sid)]).toBe(into.second);
      seconds.push(into.second);
    }
    expect(seconds).toEqual([...filed].sort((a, b) => a - b));
  });

  it('takes nothing filed after the given second, and files into an emptied second again', () => {
    const heap = new ExpiryHeap();
    heap.add('later', now + 5_000);
    heap.add('first', now);
    expect(heap.take(secondOf(now))).toBe('first');
    expect(heap.take(secondOf(now))).toBeUndefined();
    heap.add('again', now);
    expect(heap.take(secondOf(now))).toBe('again');
    expect(heap.take()).toBe('later');
    expect(heap.take()).toBeUndefined();
  });
});

describe('memory provider: expiry over a long lifetime', () => {
  it('sweeps 100,000 established sessions spread over a day, one per second or so, yielding to the event loop', async () => {
    const provider = new MemoryProvider({ maxSessions: 200_000 });
    for (let i = 0; i < 100_000; i++) {
      const createdAt = now + Math.floor((i * DAY) / 100_000);
      await provider.create(`s${i}`, values(i), createdAt, createdAt + DAY);
      await provider.touch(`s${i}`, createdAt + DAY, createdAt); // used again: established
    }
    await expect(provider.gc(now + DAY + DAY / 2 - 1)).resolves.toBe(50_000); // the first half
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const deleted = await provider.gc(now + 3 * DAY);
    clearInterval(timer);
    expect(deleted).toBe(50_000);
    expect(ticks).toBeGreaterThan(0);
    await expect(provider.count(now + 3 * DAY)).resolves.toBe(0);
  });

  it('collects new sessions of mixed lifetimes, each when it is due', async () => {
    const provider = new MemoryProvider();
    const expired: string[] = [];
    for (let i = 0; i < 3_000; i++) await provider.create(`s${i}`, values(i), now, now + (i % 3 === 0 ? DAY : 60_000));
    await expect(provider.gc(now + 60_000, (sid) => expired.push(sid))).resolves.toBe(2_000);
    expect(expired.every((sid) => Number(sid.slice(1)) % 3 !== 0)).toBe(true);
    await expect(provider.count(now + 60_000)).resolves.toBe(1_000);
    await expect(provider.gc(now + DAY)).resolves.toBe(1_000);
  });

  it('keeps a session refreshed past the second it was filed in, and collects a moved one under its new id', async () => {
    const provider = new MemoryProvider();
    await provider.create('kept', values(1), now, now + 1_000);
    await provider.update('kept', values(2), now + 5_000, now + 500);
    await provider.create('from', values(1), now, now + 1_000);
    await provider.move('from', 'to', new Map(), now, now + 2_000, now);
    await expect(provider.gc(now + 2_000, (sid) => expect(sid).toBe('to'))).resolves.toBe(1);
    expect(provider.readNow('kept')).toBeDefined();
    await expect(provider.gc(now + 5_000)).resolves.toBe(1);
  });
});
