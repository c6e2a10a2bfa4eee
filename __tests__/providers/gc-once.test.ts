import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { Pool } from 'pg';
import type { Provider } from '../../lib/providers/provider';
import { resolveProvider } from '../../lib/providers/registry';
import { skipReason } from '../support/services';

// Issue #11: with N app instances on one store, an expired session is deleted
// once, not raced by every instance. Three real processes run the provider's
// gc() at the same moment on one store holding EXPIRED expired sessions and
// LIVE live ones; every expired row must be deleted (and reported) by exactly
// one of them, and the live ones must stay.

const ROOT = join(__dirname, '..', '..');
const PROCESSES = 3;
const EXPIRED = 3000;
const LIVE = 500;
const MINUTE = 60_000;

/** What one child reports: how many rows its gc() deleted, and which (the sids its onExpired saw). */
interface ChildReport {
  pid: number;
  deleted: number;
  sids: string[];
  ms: number;
}

/**
 * The child: builds the provider as `sessions()` would, says it is ready,
 * waits for the parent's start line (so the three start together), runs one
 * gc(now) and prints what it deleted.
 */
const CHILD = `
const { resolveProvider } = require('./lib/providers/registry.ts');
const [name, options, now] = JSON.parse(process.argv[1]);
const provider = resolveProvider(name, options);
(async () => {
  await provider.count(now); // connected, table ready
  process.stdout.write('ready\\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
  const sids = [];
  const started = Date.now();
  const deleted = await provider.gc(now, (sid) => sids.push(sid));
  process.stdout.write(JSON.stringify({ pid: process.pid, deleted, sids, ms: Date.now() - started }) + '\\n');
  await provider.close();
})().catch((error) => { console.error(error); process.exit(1); });
`;

/** Starts PROCESSES children, releases them together, resolves their reports. */
async function collectConcurrently(name: string, options: Record<string, unknown>, now: number): Promise<ChildReport[]> {
  const children = Array.from({ length: PROCESSES }, () =>
    spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', CHILD, JSON.stringify([name, options, now])], {
      cwd: ROOT,
      env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true' },
    }),
  );
  const timer = setTimeout(() => children.forEach((child) => child.kill('SIGKILL')), 60_000);
  try {
    const lines = children.map((child) => {
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const output: string[] = [];
      const ready = new Promise<void>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          output.push(line);
          if (line === 'ready') resolve();
        });
        child.once('exit', (code) => reject(new Error(`child exited with ${code} before it was ready: ${stderr}`)));
      });
      const report = new Promise<ChildReport>((resolve, reject) => {
        child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(output[output.length - 1]) as ChildReport) : reject(new Error(`child exited with ${code}: ${stderr}`))));
      });
      report.catch(() => undefined); // observed below
      return { ready, report };
    });
    await Promise.all(lines.map((line) => line.ready));
    for (const child of children) child.stdin.end('go\n');
    return await Promise.all(lines.map((line) => line.report));
  } finally {
    clearTimeout(timer);
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** The deleted counts sum to exactly EXPIRED, every expired sid reported once, by one process; the live ones stay. */
async function expectCollectedOnce(label: string, reports: ChildReport[], expiredSids: string[], provider: Provider, now: number): Promise<void> {
  console.log(`${label}: rows deleted per process: ${reports.map((report) => `pid ${report.pid}: ${report.deleted} (${report.ms} ms)`).join(', ')}`);
  expect(reports.reduce((sum, report) => sum + report.deleted, 0)).toBe(EXPIRED);
  for (const report of reports) expect(report.sids).toHaveLength(report.deleted);
  const reported = reports.flatMap((report) => report.sids);
  expect(new Set(reported).size).toBe(reported.length); // none deleted (or reported) twice
  expect([...reported].sort()).toEqual([...expiredSids].sort()); // none missed
  await expect(provider.count!(now)).resolves.toBe(LIVE);
  await expect(provider.gc!(now)).resolves.toBe(0);
}

const sidsOf = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`);

describe('gc once across three processes', () => {
  describe('sqlite', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'sm-gc-once-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it(`deletes each of ${EXPIRED} expired sessions exactly once, and no live one`, async () => {
      const path = join(dir, 'sessions.db');
      // Small batches: many short write transactions per process, so the three interleave on the lock.
      const options = { path, gcBatchSize: 20 };
      const provider = resolveProvider('sqlite', options);
      const now = Date.now();
      try {
        await provider.count!(now); // creates the table
        const expired = sidsOf('old', EXPIRED);
        const db = new Database(path);
        try {
          const insert = db.prepare('INSERT INTO sessions (sid, values_json, created_at, expires_at) VALUES (?, ?, ?, ?)');
          db.transaction(() => {
            for (const sid of expired) insert.run(sid, '{"a":"1"}', now - 2 * MINUTE, now - MINUTE);
            for (const sid of sidsOf('new', LIVE)) insert.run(sid, '{"a":"1"}', now, now + 10 * MINUTE);
          })();
        } finally {
          db.close();
        }
        const reports = await collectConcurrently('sqlite', options, now);
        await expectCollectedOnce('sqlite', reports, expired, provider, now);
      } finally {
        await provider.close();
      }
    });
  });

  const reason = skipReason('postgres');
  (reason ? describe.skip : describe)(`postgres${reason ? ` (skipped: ${reason})` : ''}`, () => {
    const connectionString = process.env.DATABASE_URL ?? '';
    let admin: Pool;
    beforeAll(() => {
      admin = new Pool({ connectionString, max: 1 });
    });
    afterAll(() => admin.end());

    it(`deletes each of ${EXPIRED} expired sessions exactly once, and no live one`, async () => {
      const table = `gc_once_${process.pid}_${Date.now()}`;
      const options = { connectionString, table };
      const provider = resolveProvider('postgres', options);
      const now = Date.now();
      try {
        await provider.count!(now); // creates the table
        // 3000 expired rows: three batches of 1000 (the provider's GC batch), so each process can take one at once.
        await admin.query(
          `INSERT INTO "${table}" (sid, data, created_at, expires_at)
           SELECT 'old' || lpad(i::text, 5, '0'), '{}'::jsonb, $1::bigint - 120000, $1::bigint - 60000 FROM generate_series(0, $2 - 1) i
           UNION ALL
           SELECT 'new' || lpad(i::text, 5, '0'), '{}'::jsonb, $1::bigint, $1::bigint + 600000 FROM generate_series(0, $3 - 1) i`,
          [now, EXPIRED, LIVE],
        );
        const reports = await collectConcurrently('postgres', options, now);
        await expectCollectedOnce('postgres', reports, sidsOf('old', EXPIRED), provider, now);
      } finally {
        await admin.query(`DROP TABLE IF EXISTS "${table}"`);
        await provider.close();
      }
    });
  });
});
