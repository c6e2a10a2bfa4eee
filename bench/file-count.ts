// The file provider past one process (issues #11, #14): count() over many
// sessions, and the cost of one update. Run one part at a time:
//   npx ts-node --transpile-only bench/file-count.ts count [sessions=100000]
//   npx ts-node --transpile-only bench/file-count.ts update [updates=5000] [shared]
// `count` fills a fresh folder (expiries spread over an hour, as a steady
// state leaves them), then times one count(), then 20 concurrent ones, with
// the worst event-loop delay seen meanwhile. `update` times sequential
// updates of 100 sessions and 64 in flight; `shared` opens a second
// instance on the folder first, which writes once, so the folder is shared and
// the per-session lock files are in use.
// For syscalls per update: strace -f -c -o /tmp/trace.txt npx ts-node --transpile-only bench/file-count.ts update 2000
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FileProvider } from '../lib/providers/file';
import { watchLoop } from './loop-watch';

const HOUR_MS = 3_600_000;

async function inBatches(total: number, inFlight: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < total) await work(next++);
  }));
}

async function benchCount(sessions: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-count-'));
  const provider = new FileProvider({ dir });
  try {
    const now = Date.now();
    const filling = performance.now();
    await inBatches(sessions, 64, (i) =>
      provider.create(`bench-${i}`, new Map([['user', JSON.stringify(`u${i}`)], ['n', String(i)]]), now, now + 60_000 + Math.floor((i / sessions) * HOUR_MS)),
    );
    console.log(`filled ${sessions} sessions in ${((performance.now() - filling) / 1000).toFixed(1)} s`);
    const first = await watchLoop(() => provider.count(Date.now()));
    console.log(`count() first call: ${first.elapsedMs.toFixed(1)} ms = ${first.value}, worst loop delay ${first.worstDelayMs.toFixed(1)} ms`);
    const one = await watchLoop(() => provider.count(Date.now()));
    console.log(`count() one call: ${one.elapsedMs.toFixed(1)} ms = ${one.value}, worst loop delay ${one.worstDelayMs.toFixed(1)} ms`);
    const twenty = await watchLoop(() => Promise.all(Array.from({ length: 20 }, () => provider.count(Date.now()))));
    console.log(`count() x20 concurrent: ${twenty.elapsedMs.toFixed(1)} ms, worst loop delay ${twenty.worstDelayMs.toFixed(1)} ms, answers ${[...new Set(twenty.value)].join(',')}`);
    // A write moves an entry, so the next count re-reads the bucket it landed in.
    await provider.update('bench-1', new Map([['n', '0']]), Date.now() + HOUR_MS, Date.now());
    const afterWrite = await watchLoop(() => provider.count(Date.now()));
    console.log(`count() after a write: ${afterWrite.elapsedMs.toFixed(1)} ms, worst loop delay ${afterWrite.worstDelayMs.toFixed(1)} ms`);
    const reopened = new FileProvider({ dir });
    const cold = await watchLoop(() => reopened.count(Date.now()));
    console.log(`count() by a new instance (cold cache): ${cold.elapsedMs.toFixed(1)} ms = ${cold.value}, worst loop delay ${cold.worstDelayMs.toFixed(1)} ms`);
    await reopened.close();
  } finally {
    await provider.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchUpdate(updates: number, shared: boolean): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-update-'));
  const provider = new FileProvider({ dir });
  const other = shared ? new FileProvider({ dir }) : undefined;
  try {
    const now = Date.now();
    const sids = Array.from({ length: 100 }, (_, i) => `bench-${i}`);
    for (const sid of sids) await provider.create(sid, new Map([['user', '"ann"']]), now, now + HOUR_MS);
    // A change makes `other` one of the folder's writers: the first hands the folder over, lock files from then on.
    if (other) await other.destroy('no such session');
    await provider.update(sids[0], new Map([['warm', '1']]), Date.now() + HOUR_MS, Date.now());
    let started = performance.now();
    for (let i = 0; i < updates; i++) {
      const at = Date.now();
      await provider.update(sids[i % sids.length], new Map([['n', String(i)]]), at + HOUR_MS, at);
    }
    let ms = performance.now() - started;
    console.log(`${shared ? 'shared' : 'alone'}: sequential ${updates} updates: ${((ms * 1000) / updates).toFixed(0)} µs each, ${Math.round(updates / (ms / 1000))}/s`);
    started = performance.now();
    await inBatches(updates, 64, async (i) => {
      const at = Date.now();
      await provider.update(sids[i % sids.length], new Map([[`k${i % 10}`, String(i)]]), at + HOUR_MS, at);
    });
    ms = performance.now() - started;
    console.log(`${shared ? 'shared' : 'alone'}: 64 in flight, ${updates} updates: ${Math.round(updates / (ms / 1000))}/s`);
  } finally {
    await other?.close();
    await provider.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const [part = 'count', amount, flag] = process.argv.slice(2);
(part === 'count' ? benchCount(Number(amount ?? 100_000)) : benchUpdate(Number(amount ?? 5000), flag === 'shared')).catch((err) => {
  console.error(err);
  process.exit(1);
});
