/**
 * Quick load tests (the long versions are `npm run soak`): bounded request
 * counts on a real socket on 127.0.0.1, sizes small enough to stay within a
 * few seconds each, figures printed for docs/RELIABILITY.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createManager } from '../../lib/index';
import { MemoryProvider } from '../../lib/providers/memory';
import type { SessionOptions } from '../../lib/options';
import { gcUnderTraffic, heapAfterGc, mb, newVisitors, sessionsLoad, startApp, Client } from '../../bench/reliability';
import { serviceUrl, stopPrivateServers, unavailable } from './servers';

const report = (title: string, figures: unknown): void => {
  // One line per scenario, for docs/RELIABILITY.md.
  process.stdout.write(`[reliability] ${title}: ${JSON.stringify(figures)}\n`);
};

describe('load: 20,000 requests over 1,000 sessions (memory provider)', () => {
  it('answers every request, loses no acknowledged write, and does not grow the heap after warm-up', async () => {
    const figures = await sessionsLoad({ requests: 20_000, sessions: 1_000, concurrency: 16, timeLimitMs: 40_000 });
    report('sessions load', { ...figures, heapByQuarter: figures.heapByQuarter.map(mb) });
    expect(figures.requestsDone).toBe(20_000);
    expect(figures.failures).toBe(0);
    expect(figures.lostWrites).toBe(0);
    expect(figures.storedSessions).toBe(1_000);
    // From the end of the second quarter to the end of the fourth the working
    // set is steady (every key of every session already exists): the heap may
    // move by allocator noise, not by a per-request leak (10,000 requests × 200 B = 2 MB).
    const [, second, , fourth] = figures.heapByQuarter;
    expect(fourth - second).toBeLessThan(2 * 1024 * 1024);
  }, 60_000);
});

describe('load: new visitors', () => {
  it('stores nothing for 5,000 visitors that set nothing (saveUninitialized false)', async () => {
    const figures = await newVisitors({ requests: 5_000, saveUninitialized: false, maxSessions: 1_000, concurrency: 16, timeLimitMs: 20_000 });
    report('new visitors, saveUninitialized false', { ...figures, heapGrowth: mb(figures.heapGrowth) });
    expect(figures.requests).toBe(5_000);
    expect(figures.failures).toBe(0);
    expect(figures.cookiesSet).toBe(0);
    expect(figures.maxCount).toBe(0);
    expect(figures.finalCount).toBe(0);
  }, 30_000);

  it('never keeps more than maxSessions (1,000) for 5,000 visitors (saveUninitialized true)', async () => {
    const figures = await newVisitors({ requests: 5_000, saveUninitialized: true, maxSessions: 1_000, concurrency: 16, timeLimitMs: 20_000 });
    report('new visitors, saveUninitialized true, maxSessions 1000', { ...figures, heapGrowth: mb(figures.heapGrowth) });
    expect(figures.requests).toBe(5_000);
    expect(figures.failures).toBe(0);
    expect(figures.cookiesSet).toBe(5_000);
    expect(figures.maxCount).toBeLessThanOrEqual(1_000);
    expect(figures.finalCount).toBe(1_000);
  }, 30_000);

  // Evicted sessions must not linger in the expiry wheel: memory follows maxSessions, not the number of visitors,
  // whether the visitors' expiries spread over an hour or all fall in the second being filled.
  it.each([
    ['spread over an hour', 3_600],
    ['all in one second', 1],
  ])('keeps memory bounded by maxSessions, however many visitors were evicted (expiries %s)', async (what, seconds) => {
    const provider = new MemoryProvider({ maxSessions: 1_000 });
    const now = Date.now();
    const before = heapAfterGc();
    for (let i = 0; i < 200_000; i++) {
      await provider.create(`visitor_${i.toString(36).padStart(35, '0')}`, new Map(), now, now + 3_600_000 + (i % seconds) * 1000);
    }
    const growth = heapAfterGc() - before;
    report(`memory provider, 200,000 evicted visitors, expiries ${what}`, { stored: await provider.count(now), heapGrowth: mb(growth) });
    await provider.close();
    // 1,000 small sessions take well under 1 MB; allow 5.
    expect(growth).toBeLessThan(5 * 1024 * 1024);
  }, 30_000);
});

describe('load: GC of 200,000 expired sessions under traffic', () => {
  it('keeps the event loop and requests responsive while it sweeps a mass expiry (all due in one second)', async () => {
    const figures = await gcUnderTraffic({ expired: 200_000, liveSessions: 200, concurrency: 16, timeLimitMs: 30_000, spreadSeconds: 1 });
    report('gc under traffic, 200,000 due in one second', figures);
    expect(figures.deleted).toBe(200_000);
    expect(figures.failures).toBe(0);
    expect(figures.requestsDuringSweep).toBeGreaterThan(0);
    expect(figures.loopTurnsDuringSweep).toBeGreaterThan(0);
    expect(figures.worstLoopDelayMs).toBeLessThan(200);
    expect(figures.p99MsDuringSweep).toBeLessThan(200);
    expect(figures.liveAfter).toBe(200);
  }, 60_000);

  // Sessions spread over many expiry seconds (the normal case) must be swept in slices too.
  // Asserted on loop turns (deterministic), not on time.
  it('yields to the event loop while it sweeps sessions whose expiries are spread over ten minutes', async () => {
    const figures = await gcUnderTraffic({ expired: 200_000, liveSessions: 200, concurrency: 16, timeLimitMs: 30_000, spreadSeconds: 600 });
    report('gc under traffic, 200,000 spread over 600 s', figures);
    expect(figures.deleted).toBe(200_000);
    expect(figures.failures).toBe(0);
    expect(figures.loopTurnsDuringSweep).toBeGreaterThan(0);
    expect(figures.worstLoopDelayMs).toBeLessThan(200);
  }, 60_000);
});

describe('load: no timers or handles left after manager.close()', () => {
  type Case = [string, () => Promise<SessionOptions>, string | undefined];
  const dirs: string[] = [];
  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-handles-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(async () => {
    dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true }));
    await stopPrivateServers();
  });

  /** A GC interval no other timer in the process uses, to find the manager's timer among all timers. */
  const GC_INTERVAL_SECONDS = 4321;
  const cases: Case[] = [
    ['memory', async () => ({ provider: 'memory' }), undefined],
    ['file', async () => ({ provider: 'file', providerOptions: { dir: join(tempDir(), 'sessions') } }), undefined],
    ['sqlite', async () => ({ provider: 'sqlite', providerOptions: { path: join(tempDir(), 'sessions.db') } }), undefined],
    ['redis', async () => ({ provider: 'redis', providerOptions: { url: await serviceUrl('redis'), prefix: `handles:${process.pid}:` } }), unavailable('redis')],
    [
      'postgres',
      async () => ({ provider: 'postgres', providerOptions: { connectionString: await serviceUrl('postgres'), table: `handles_${process.pid}` } }),
      unavailable('postgres'),
    ],
  ];

  it.each(cases)('%s: after 200 requests, server.close() and manager.close() leave the process as it was', async (name, options, skip) => {
    if (skip !== undefined) {
      console.warn(`skipped (${name}): ${skip}`);
      return;
    }
    const resolved = await options(); // starts a private server first when needed: not part of "before"
    await settle();
    const before = resources();
    const timers: Array<{ timer: NodeJS.Timeout; ms: unknown }> = [];
    const spy = jest.spyOn(global, 'setTimeout').mockImplementation(((...args: Parameters<typeof setTimeout>) => {
      const timer = realSetTimeout(...args);
      timers.push({ timer, ms: args[1] });
      return timer;
    }) as typeof setTimeout);
    const app = await startApp({ ...resolved, gcInterval: GC_INTERVAL_SECONDS });
    const client = new Client(app.url, 4);
    try {
      const cookie = (await client.get('/set/a/1')).cookie!;
      for (let i = 0; i < 200; i++) expect((await client.get(i % 2 ? `/set/k/${i}` : '/get/k', cookie)).status).toBe(200);
    } finally {
      spy.mockRestore();
      client.close();
      await app.close();
    }
    await settle();
    // Node marks a cleared (or fired) timer `_destroyed`; the interval is taken from the call, as clearing resets it.
    const gcTimers = timers.filter(({ ms }) => ms === GC_INTERVAL_SECONDS * 1000);
    expect(gcTimers.length).toBeGreaterThan(0); // the GC loop was armed…
    expect(gcTimers.every(({ timer }) => (timer as unknown as { _destroyed: boolean })._destroyed)).toBe(true); // …and is cleared
    await expectNoneAdded(before); // no socket, file handle or ref'd timer left
  });

  it('createManager(): close() stops the GC loop even while sweeps keep running', async () => {
    await settle();
    const before = resources();
    const manager = createManager({ provider: new MemoryProvider(), gcInterval: 0.001 });
    let sweeps = 0;
    manager.on('expired', () => undefined);
    const gc = manager.gc.bind(manager);
    manager.gc = () => {
      sweeps++;
      return gc();
    };
    await new Promise((resolve) => setTimeout(resolve, 30)); // several GC rounds
    await manager.close();
    const after = sweeps;
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(after).toBeGreaterThan(0);
    expect(sweeps).toBe(after); // no sweep after close()
    await settle();
    await expectNoneAdded(before);
  });

  /**
   * Every kind of resource is there at most as often as before (one left over
   * from an earlier test may have ended meanwhile). A socket's own timers may
   * outlive close() by a few milliseconds, so this waits up to 1 s for the
   * count to settle: a real leak (a timer re-armed, a socket kept open) stays.
   */
  async function expectNoneAdded(before: string[]): Promise<void> {
    const count = (list: string[]): Record<string, number> => list.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r]: (acc[r] ?? 0) + 1 }), {});
    const was = count(before);
    const added = (): Array<[string, number]> => Object.entries(count(resources())).filter(([kind, n]) => n > (was[kind] ?? 0));
    for (const deadline = Date.now() + 1000; added().length > 0 && Date.now() < deadline; ) await new Promise((resolve) => realSetTimeout(resolve, 20));
    expect(added()).toEqual([]);
  }

  function resources(): string[] {
    return process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').sort();
  }

  async function settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => realSetTimeout(resolve, 50));
  }
});

const realSetTimeout = setTimeout;
