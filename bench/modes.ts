import { resolve } from 'node:path';

/** The servers the benchmark compares, and what the runner tells each of them. */
export const MODES = [
  'bare',
  'express-session',
  'express-session+memorystore',
  'express-session+connect-redis',
  'session-manager:memory',
  'session-manager:file',
  'session-manager:sqlite',
  'session-manager:redis',
  'session-manager:postgres',
] as const;

export type Mode = (typeof MODES)[number];

export function isMode(value: unknown): value is Mode {
  return (MODES as readonly unknown[]).includes(value);
}

/** The stores whose heap per session is measured in-process (bench/heap.ts). */
export const HEAP_STORES = ['express-session', 'express-session+memorystore', 'session-manager:memory'] as const;
export type HeapStore = (typeof HEAP_STORES)[number];

/** The same 32+ character secret for every session library. */
export const SECRET = 'bench-secret-0123456789-abcdefghijklmnop';

/** Passed to each server as JSON in BENCH_CONFIG. */
export interface BenchConfig {
  /** Where file/sqlite providers put their data. */
  scratchDir: string;
  redisUrl?: string;
  redisSkip?: string;
  postgresUrl?: string;
  postgresSkip?: string;
}

/** A real express-session `Cookie`, as it saves one (its constructor takes the options; its type declares none). */
export function expressSessionCookie(session: typeof import('express-session'), options: Record<string, unknown>): unknown {
  return new (session.Cookie as unknown as new (options: Record<string, unknown>) => unknown)(options);
}

/**
 * session-manager itself: `lib/`, or the copy BENCH_LIB names (a path to its
 * `index.ts`), to measure a candidate change without touching `lib/`.
 */
export function loadLibrary(): typeof import('../lib/index') {
  return require(process.env.BENCH_LIB ? resolve(process.env.BENCH_LIB) : '../lib/index') as typeof import('../lib/index');
}
