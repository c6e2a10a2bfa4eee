import { resolve } from 'node:path';

/** The servers the benchmark compares, and what the runner tells each of them. */
export const MODES = [
  'bare',
  'floor',
  'express-session',
  'express-session+memorystore',
  'express-session+connect-redis',
  'express-session+better-sqlite3-session-store',
  'express-session+connect-pg-simple',
  'express-session+session-file-store',
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

/**
 * Kept in every run, whatever --modes says: the ratios need them. `floor` is
 * the least a signed-cookie session middleware can do (bench/server.ts).
 */
export const REFERENCE_MODES = ['bare', 'floor', 'express-session'] as const satisfies readonly Mode[];

/** Each session-manager provider and its express-session counterpart on the same kind of store. */
export const TWINS = {
  'session-manager:memory': 'express-session',
  'session-manager:file': 'express-session+session-file-store',
  'session-manager:sqlite': 'express-session+better-sqlite3-session-store',
  'session-manager:redis': 'express-session+connect-redis',
  'session-manager:postgres': 'express-session+connect-pg-simple',
} as const satisfies Partial<Record<Mode, Mode>>;
export type TwinnedMode = keyof typeof TWINS;

/** The modes that need the bench's Redis or PostgreSQL server. */
export function usesRedis(mode: Mode): boolean {
  return mode === 'session-manager:redis' || mode === 'express-session+connect-redis';
}
export function usesPostgres(mode: Mode): boolean {
  return mode === 'session-manager:postgres' || mode === 'express-session+connect-pg-simple';
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
