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
