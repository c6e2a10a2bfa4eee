/**
 * Heap bytes per session, measured in-process (run with --expose-gc):
 * `node --expose-gc -r ts-node/register/transpile-only bench/heap.ts <store> <count>`.
 * Each session is small: a username and a counter, stored the way each
 * library really stores it (ours through the manager and the memory provider;
 * express-session's stores get a real `Cookie` as express-session saves it).
 * Prints `{ store, count, bytesPerSession, heapDelta }` as JSON.
 */
import { randomBytes } from 'node:crypto';
import { expressSessionCookie, HEAP_STORES, loadLibrary, type HeapStore } from './modes';

/**
 * Garbage from start-up (module loading) is only released after a turn of
 * the event loop (about 1.3 MB here, 13 B per session at 100,000): collect,
 * wait, collect again before the baseline.
 */
async function settle(): Promise<void> {
  collect();
  await new Promise((resolve) => setTimeout(resolve, 200));
}

function collect(): number {
  const gc = (global as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with --expose-gc');
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}

/** Fills a store with `count` sessions; the returned value keeps the store reachable until measured. */
async function fill(store: HeapStore, count: number): Promise<unknown> {
  if (store === 'session-manager:memory') {
    const { createManager } = loadLibrary();
    const manager = createManager({ provider: 'memory', providerOptions: { maxSessions: count + 1 }, maxLifetime: 3600 });
    for (let i = 0; i < count; i++) {
      // As a login leaves it: JSON text per key, the form Session.set() hands the manager.
      await manager.create(new Map([['username', JSON.stringify(`user${i}`)], ['counter', JSON.stringify(i % 1000)]]));
    }
    return manager;
  }
  const session = (await import('express-session')).default;
  let target: import('express-session').Store;
  if (store === 'express-session') target = new session.MemoryStore();
  else {
    const MemoryStore = (await import('memorystore')).default(session);
    const memoryStore = new MemoryStore({ checkPeriod: 3_600_000 });
    memoryStore.stopInterval(); // no timer during the measurement
    target = memoryStore;
  }
  for (let i = 0; i < count; i++) {
    const cookie = expressSessionCookie(session, { maxAge: 3_600_000, httpOnly: true, sameSite: 'lax' });
    const data = { cookie, username: `user${i}`, counter: i % 1000 } as unknown as import('express-session').SessionData;
    // express-session's default genid: 24 random bytes, base64url (32 characters).
    await new Promise<void>((resolve, reject) => target.set(randomBytes(24).toString('base64url'), data, (err) => (err ? reject(err) : resolve())));
  }
  return target;
}

async function main(): Promise<void> {
  const store = process.argv[2] as HeapStore;
  const count = Number(process.argv[3] ?? 100_000);
  if (!HEAP_STORES.includes(store) || !Number.isSafeInteger(count) || count < 1) throw new Error('usage: heap.ts <store> <count>');
  // Load the modules first so their code is not counted.
  await import('express-session');
  await import('memorystore');
  loadLibrary();
  await settle();
  const before = collect();
  const kept = await fill(store, count);
  const after = collect();
  const heapDelta = after - before;
  process.stdout.write(JSON.stringify({ store, count, bytesPerSession: heapDelta / count, heapDelta, kept: kept !== undefined }) + '\n');
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
