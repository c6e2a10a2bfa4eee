/**
 * CPU per request of several servers loaded at the same time, window after
 * window: every server sees the same machine noise, so the paired difference
 * to the first one is steadier than separate runs (a 2 µs change shows).
 *
 *   npx ts-node --transpile-only bench/cpu-paired.ts '[{"name":"wave1","mode":"session-manager:memory","lib":"/tmp/wave1/lib/index.ts"},{"name":"now","mode":"session-manager:memory"},{"name":"floor","mode":"floor"}]' /read [windows=12] [seconds=3]
 *
 * `lib` measures a copy of lib/ (as BENCH_LIB); CPU is user+system time from /proc (Linux only).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { login, measure, startServer, type RunningServer } from './load';
import type { Mode } from './modes';

interface Variant {
  name: string;
  mode: Mode;
  lib?: string;
}

const CLOCK_TICKS_PER_SECOND = 100;

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

async function main(): Promise<void> {
  const variants = JSON.parse(process.argv[2]) as Variant[];
  const route = process.argv[3] ?? '/read';
  const windows = Number(process.argv[4] ?? 12);
  const seconds = Number(process.argv[5] ?? 3);
  const servers: Array<{ variant: Variant; server: RunningServer; cookies: string[] }> = [];
  for (const variant of variants) {
    if (variant.lib) process.env.BENCH_LIB = variant.lib;
    else delete process.env.BENCH_LIB;
    const server = await startServer(variant.mode, { scratchDir: mkdtempSync(join(tmpdir(), 'cpu-paired-')) });
    servers.push({ variant, server, cookies: await login(server.port, 1000) });
  }
  // Half the benchmark's connections each: the servers share the machine.
  const load = (each: (typeof servers)[number], duration: number) => measure(each.server.port, route, duration, { cookies: each.cookies, connections: 25 });
  await Promise.all(servers.map((each) => load(each, 2))); // warm-up
  const perRequest = servers.map((): number[] => []);
  for (let window = 0; window < windows; window++) {
    const before = servers.map((each) => cpuMs(each.server.child.pid!));
    const results = await Promise.all(servers.map((each) => load(each, seconds)));
    servers.forEach((each, i) => perRequest[i].push(((cpuMs(each.server.child.pid!) - before[i]) * 1000) / results[i].requests));
  }
  for (const each of servers) await each.server.stop();
  servers.forEach((each, i) => {
    const differences = perRequest[i].map((value, window) => value - perRequest[0][window]).sort((a, b) => a - b);
    console.log(
      `${each.variant.name} ${route}: median ${median(perRequest[i]).toFixed(1)} µs/request; paired difference to ${variants[0].name}: median ${median(differences).toFixed(1)} (${differences[0].toFixed(1)} to ${differences[differences.length - 1].toFixed(1)})`,
    );
  });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
