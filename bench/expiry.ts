/**
 * Mass expiry, in-process (run with --expose-gc):
 * `node --expose-gc -r ts-node/register/transpile-only bench/expiry.ts <store> <count>`.
 *
 * session-manager:memory: `count` sessions created through the manager, the
 * clock moved past their expiry, then the manager's GC (what its timer runs)
 * sweeps them while `monitorEventLoopDelay` (1 ms resolution) and a 1 ms
 * interval gap monitor watch the event loop. Reports the worst delay, the
 * sweep time and the heap before, full and after.
 *
 * express-session: its MemoryStore has no sweep at all; expired sessions stay
 * until someone reads them. Reports the heap they keep after expiry and, for
 * the record, how long the one thing that does drop them (`store.all()`, which
 * prunes as it scans, synchronously) blocks the event loop.
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { expressSessionCookie, loadLibrary } from './modes';

/**
 * Garbage from start-up (module loading) is only released after a turn of
 * the event loop (about 1.3 MB here, 13 B per session at 100,000): collect,
 * wait, collect again before the baseline.
 */
async function settle(): Promise<void> {
  heap();
  await new Promise((resolve) => setTimeout(resolve, 200));
}

function heap(): number {
  const gc = (global as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}

/** Watches the event loop while `work` runs: the worst delay from both monitors, in ms. */
async function watchLoop<T>(work: () => Promise<T>): Promise<{ value: T; worstDelayMs: number; histogramMaxMs: number; gapMaxMs: number; elapsedMs: number }> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let gapMax = 0;
  const interval = setInterval(() => {
    const now = performance.now();
    gapMax = Math.max(gapMax, now - last - 1); // the interval asks for 1 ms; anything beyond is delay
    last = now;
  }, 1);
  histogram.enable();
  await new Promise((resolve) => setTimeout(resolve, 20)); // both monitors running before the work starts
  const started = performance.now();
  last = started;
  const value = await work();
  const elapsedMs = performance.now() - started;
  await new Promise((resolve) => setTimeout(resolve, 5)); // the tick after the work is measured too
  histogram.disable();
  clearInterval(interval);
  const histogramMaxMs = histogram.max / 1e6;
  return { value, worstDelayMs: Math.max(histogramMaxMs, gapMax), histogramMaxMs, gapMaxMs: gapMax, elapsedMs };
}

async function ours(count: number): Promise<Record<string, unknown>> {
  const { createManager } = loadLibrary();
  let clock = Date.now();
  const manager = createManager({
    provider: 'memory',
    providerOptions: { maxSessions: count + 1 },
    maxLifetime: 60,
    clock: () => clock,
    onError: (err) => console.error(err),
  });
  await settle();
  const baseline = heap();
  for (let i = 0; i < count; i++) {
    await manager.create(new Map([['username', JSON.stringify(`user${i}`)], ['counter', '1']]));
    if ((i & 0xffff) === 0) clock += 1000; // creation spread over many seconds, as real traffic is
  }
  const full = heap();
  clock += 61_000; // everything is past its idle lifetime now
  const sweep = await watchLoop(() => manager.gc());
  const after = heap();
  const remaining = await manager.count();
  await manager.close();
  return {
    store: 'session-manager:memory',
    count,
    expired: sweep.value,
    remaining,
    sweepMs: sweep.elapsedMs,
    worstDelayMs: sweep.worstDelayMs,
    histogramMaxMs: sweep.histogramMaxMs,
    gapMaxMs: sweep.gapMaxMs,
    heapBaseline: baseline,
    heapFull: full,
    heapAfter: after,
    reclaimedFraction: (full - after) / (full - baseline),
  };
}

async function expressSession(count: number): Promise<Record<string, unknown>> {
  const session = (await import('express-session')).default;
  const store = new session.MemoryStore();
  await settle();
  const baseline = heap();
  for (let i = 0; i < count; i++) {
    const cookie = expressSessionCookie(session, { maxAge: 50, httpOnly: true });
    const data = { cookie, username: `user${i}`, counter: 1 } as unknown as import('express-session').SessionData;
    await new Promise<void>((resolve, reject) => store.set(randomBytes(24).toString('base64url'), data, (err) => (err ? reject(err) : resolve())));
  }
  const full = heap();
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // well past every maxAge; MemoryStore has no timer to notice
  const afterWaiting = heap();
  const heldKeys = Object.keys((store as unknown as { sessions: Record<string, string> }).sessions).length;
  // The only way to drop them: a full synchronous scan that prunes as it goes.
  const scan = await watchLoop(() => new Promise<unknown>((resolve) => store.all!((err, all) => resolve(err ?? Object.keys(all ?? {}).length))));
  const afterScan = heap();
  return {
    store: 'express-session',
    count,
    sweeps: false,
    heldAfterExpiry: heldKeys,
    heapBaseline: baseline,
    heapFull: full,
    heapAfterExpiry: afterWaiting,
    reclaimedWithoutScanFraction: (full - afterWaiting) / (full - baseline),
    scanLiveResult: scan.value,
    scanBlockMs: scan.worstDelayMs,
    heapAfterScan: afterScan,
  };
}

async function main(): Promise<void> {
  const store = process.argv[2];
  const count = Number(process.argv[3] ?? 1_000_000);
  if (!Number.isSafeInteger(count) || count < 1) throw new Error('usage: expiry.ts <store> <count>');
  let result: Record<string, unknown>;
  if (store === 'session-manager:memory') result = await ours(count);
  else if (store === 'express-session') result = await expressSession(count);
  else throw new Error(`unknown store ${store}`);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
