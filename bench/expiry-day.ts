/**
 * The memory provider with day-long sessions (many expiry buckets), in-process:
 * `node -r ts-node/register/transpile-only bench/expiry-day.ts [count] [cap]`
 * (defaults 1,000,000 and 100,000; BENCH_LIB=/other/lib/index.ts measures a copy).
 *
 * - sweep: `count` sessions with a `maxLifetime` of one day, created evenly over
 *   the day (one-second buckets: about 86,400 of them), then one `gc()` of all
 *   of them while a 1 ms interval and `monitorEventLoopDelay` watch the event
 *   loop. Run with every session used again after creation (established), with
 *   none (new visitors), and with `cap` established sessions (about one per bucket).
 * - flood: a store at `cap` established sessions spread over the day, then new
 *   sessions, each one evicting another; creates per second, for new visitors
 *   that never come back and for ones used right after creation.
 *
 * Times go to the provider explicitly; the wall clock only measures.
 */
import { loadLibrary } from './modes';
import { watchLoop } from './loop-watch';

type MemoryProvider = import('../lib/providers/memory').MemoryProvider;

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);
const session = (i: number) => new Map([['username', JSON.stringify(`user${i}`)], ['counter', '1']]);
const sid = (prefix: string, i: number) => `${prefix}${i.toString(36).padStart(8, '0')}`;

function provider(maxSessions: number): MemoryProvider {
  return new (loadLibrary().MemoryProvider)({ maxSessions });
}

/** Fills `store` with `count` sessions created evenly over one day; `established` ones are used once more. */
async function fill(store: MemoryProvider, prefix: string, count: number, established: boolean): Promise<void> {
  for (let i = 0; i < count; i++) {
    const createdAt = T0 + Math.floor((i * DAY) / count);
    await store.create(sid(prefix, i), session(i), createdAt, createdAt + DAY);
    if (established) await store.touch(sid(prefix, i), createdAt + DAY, createdAt);
  }
}

async function sweep(count: number, established: boolean): Promise<Record<string, unknown>> {
  const store = provider(count + 1);
  const filling = performance.now();
  await fill(store, 's', count, established);
  const fillMs = performance.now() - filling;
  const { value: expired, worstDelayMs, elapsedMs } = await watchLoop(() => store.gc(T0 + 3 * DAY));
  await store.close();
  return { established, count, createsPerSecond: Math.round(count / (fillMs / 1000)), expired, sweepMs: Math.round(elapsedMs), worstDelayMs: round(worstDelayMs) };
}

async function flood(cap: number, creates: number, usedAgain: boolean): Promise<Record<string, unknown>> {
  const store = provider(cap);
  await fill(store, 'old', cap, true);
  const now = T0 + DAY / 2;
  const started = performance.now();
  for (let i = 0; i < creates; i++) {
    await store.create(sid('new', i), session(i), now, now + DAY);
    if (usedAgain) await store.touch(sid('new', i), now + DAY, now);
  }
  const seconds = (performance.now() - started) / 1000;
  let oldKept = 0;
  for (let i = 0; i < cap; i++) if (store.readNow(sid('old', i)) !== undefined) oldKept++;
  await store.close();
  return { usedAgain, cap, creates, createsPerSecond: Math.round(creates / seconds), microsPerCreate: round((seconds * 1e6) / creates), oldKept };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 1_000_000);
  const cap = Number(process.argv[3] ?? 100_000);
  const results = [
    await sweep(count, true),
    await sweep(count, false),
    await sweep(cap, true), // fewer sessions per bucket: the old structure's worst case
    await flood(cap, 20_000, false),
    await flood(cap, 20_000, true),
  ];
  for (const result of results) process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
