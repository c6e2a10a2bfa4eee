/**
 * The long versions of __tests__/reliability/load.test.ts (memory provider,
 * one process, real socket on 127.0.0.1, bounded concurrency):
 *
 *   npm run soak                 1,000,000 requests over 10,000 sessions;
 *                                100,000 new visitors (saveUninitialized false, then true with maxSessions 10,000);
 *                                GC of 1,000,000 expired sessions under traffic
 *                                (all due at once, then spread over an hour: ~280 per expiry second)
 *   npm run soak -- --scale 0.1  the same at a tenth of the sizes
 *   npm run soak -- --only gc    only some scenarios: load, visitors, gc
 *
 * Every scenario stops at its own deadline (the whole run stays under ~10 min),
 * prints what it did and measured, and the run ends with a JSON summary line
 * (also written to bench/results/soak-latest.json). Exit code 1 when a
 * scenario saw a failed request or a lost write.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { gcUnderTraffic, mb, newVisitors, sessionsLoad } from './reliability';

const args = process.argv.slice(2);
const scaleAt = args.indexOf('--scale');
const scale = scaleAt === -1 ? 1 : Number(args[scaleAt + 1]);
if (!(scale > 0 && scale <= 1)) throw new Error('--scale takes a number in (0, 1]');
const n = (count: number): number => Math.max(1, Math.round(count * scale));
const onlyAt = args.indexOf('--only');
const only = onlyAt === -1 ? ['load', 'visitors', 'gc'] : args[onlyAt + 1].split(',');

function log(message: string): void {
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function main(): Promise<void> {
  const summary: Record<string, unknown> = {
    node: process.version,
    cpus: cpus().length,
    scale,
    startedAt: new Date().toISOString(),
  };
  let failed = false;

  if (only.includes('load')) {
    log(`sessions load: ${n(1_000_000)} requests over ${n(10_000)} sessions, concurrency 32, limit 420 s`);
    const load = await sessionsLoad({ requests: n(1_000_000), sessions: n(10_000), concurrency: 32, keysPerSession: 5, timeLimitMs: 420_000, log });
    const [, second, , fourth] = load.heapByQuarter;
    summary.sessionsLoad = { ...load, heapByQuarter: load.heapByQuarter.map(mb), heapGrowthSecondToLastQuarter: mb(fourth - second) };
    log(`  ${JSON.stringify(summary.sessionsLoad)}`);
    failed ||= load.failures > 0 || load.lostWrites > 0;
  }

  for (const saveUninitialized of only.includes('visitors') ? [false, true] : []) {
    log(`new visitors: ${n(100_000)}, saveUninitialized ${saveUninitialized}, maxSessions ${n(10_000)}, limit 60 s`);
    const visitors = await newVisitors({ requests: n(100_000), saveUninitialized, maxSessions: n(10_000), concurrency: 32, timeLimitMs: 60_000, sampleEvery: 5_000 });
    summary[`newVisitors_saveUninitialized_${saveUninitialized}`] = { ...visitors, heapGrowth: mb(visitors.heapGrowth) };
    log(`  ${JSON.stringify(summary[`newVisitors_saveUninitialized_${saveUninitialized}`])}`);
    failed ||= visitors.failures > 0 || visitors.maxCount > (saveUninitialized ? n(10_000) : 0);
  }

  for (const spreadSeconds of only.includes('gc') ? [1, 3600] : []) {
    log(`gc under traffic: ${n(1_000_000)} expired sessions spread over ${spreadSeconds} s, 1,000 live, concurrency 32, limit 90 s`);
    const sweep = await gcUnderTraffic({ expired: n(1_000_000), liveSessions: 1_000, concurrency: 32, timeLimitMs: 90_000, spreadSeconds });
    summary[`gcUnderTraffic_spread_${spreadSeconds}s`] = sweep;
    log(`  ${JSON.stringify(sweep)}`);
    failed ||= sweep.failures > 0 || sweep.deleted !== n(1_000_000);
  }

  summary.finishedAt = new Date().toISOString();
  const dir = join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'soak-latest.json'), `${JSON.stringify(summary, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
