import { OptionError } from '../../lib/errors';
import { MemoryProvider } from '../../lib/providers/memory';
import { providerConformance } from '../../lib/testing';

providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new MemoryProvider(), {
  name: 'memory',
  skip: [{ reason: 'sessions live in this process only', groups: ['persistent'] }],
});

describe('memory provider', () => {
  const now = Date.now();
  const values = (n: number) => new Map([['n', String(n)]]);

  it('beyond maxSessions, evicts a new session never used again before one that was used', async () => {
    const provider = new MemoryProvider({ maxSessions: 3 });
    for (const sid of ['a', 'b', 'c']) await provider.create(sid, values(1), now, now + 60_000);
    await provider.update('a', values(2), now + 120_000, now); // a was used again: established
    await provider.create('d', values(1), now, now + 60_000);
    expect(await provider.read('b')).toBeUndefined();
    for (const sid of ['a', 'c', 'd']) expect(await provider.read(sid)).toBeDefined();
    await expect(provider.count(now)).resolves.toBe(3);
  });

  it('keeps memory bounded by maxSessions under a flood of new sessions', async () => {
    const provider = new MemoryProvider({ maxSessions: 100 });
    for (let i = 0; i < 10_000; i++) await provider.create(`flood${i}`, values(i), now, now + 60_000 + i);
    await expect(provider.count(now)).resolves.toBe(100);
    expect(await provider.read('flood9999')).toBeDefined();
    expect(await provider.read('flood0')).toBeUndefined();
  });

  it('rejects a bad maxSessions', () => {
    expect(() => new MemoryProvider({ maxSessions: 0 })).toThrow(OptionError);
    expect(() => new MemoryProvider({ maxSessions: 0 })).toThrow(/option maxSessions is invalid: 0/);
  });

  it('keeps a session refreshed after it was filed, and collects it once it does expire', async () => {
    const provider = new MemoryProvider();
    await provider.create('s', values(1), now, now + 1_000);
    await provider.touch('s', now + 10_000, now + 500);
    await expect(provider.gc(now + 5_000)).resolves.toBe(0);
    expect(await provider.read('s')).toBeDefined();
    await expect(provider.gc(now + 10_000)).resolves.toBe(1);
    expect(await provider.read('s')).toBeUndefined();
  });

  it('collects a session whose expiry was moved earlier', async () => {
    const provider = new MemoryProvider();
    await provider.create('s', values(1), now, now + 60_000);
    await provider.touch('s', now + 2_000, now);
    await expect(provider.gc(now + 3_000)).resolves.toBe(1);
  });

  it('sweeps 200,000 expired sessions in slices, yielding to the event loop', async () => {
    const provider = new MemoryProvider({ maxSessions: 300_000 });
    for (let i = 0; i < 200_000; i++) await provider.create(`s${i}`, values(i), now, now + 1_000 + (i % 50) * 10);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const deleted = await provider.gc(now + 60_000);
    clearInterval(timer);
    expect(deleted).toBe(200_000);
    expect(ticks).toBeGreaterThan(0); // other callbacks ran during the sweep
    await expect(provider.count(now + 60_000)).resolves.toBe(0);
  });
});
