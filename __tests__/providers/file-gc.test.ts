import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileProvider } from '../../lib/providers/file';
import { USER_KEY } from '../../lib/providers/provider';

// Several app processes on one folder, each running its gc loop: every
// expired session must be deleted, and reported as expired, exactly once.

const MINUTE = 60_000;
const EXPIRED = 3000;
const LIVE = 100;
const PROCESSES = 3;

/** What each child prints last: how many it deleted, and which sessions it reported. */
interface GcReport {
  pid: number;
  deleted: number;
  reported: string[];
}

// A child: builds a provider over `dir`, prints "ready", waits for the start line, runs one gc at `now`.
const CHILD = `
const { FileProvider } = require(${JSON.stringify(join(__dirname, '..', '..', 'lib', 'providers', 'file.ts'))});
const [dir, now] = [process.argv[1], Number(process.argv[2])];
const provider = new FileProvider({ dir });
process.stdout.write('ready\\n');
process.stdin.once('data', async () => {
  try {
    const reported = [];
    const deleted = await provider.gc(now, (sid) => reported.push(sid));
    await provider.close();
    process.stdout.write(JSON.stringify({ pid: process.pid, deleted, reported }) + '\\n');
    process.exit(0);
  } catch (err) {
    console.error(err);
    process.exit(1);
  }
});
`;

function startChild(dir: string, now: number): { ready: Promise<void>; done: Promise<GcReport>; go: () => void } {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', CHILD, dir, String(now)], {
    cwd: join(__dirname, '..', '..'),
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  child.stderr.on('data', (chunk) => (err += chunk));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before it was ready: ${err}`)));
  });
  const done = new Promise<GcReport>((resolve, reject) => {
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!) as GcReport) : reject(new Error(`child exited with ${code}: ${err}`))));
  });
  ready.catch(() => undefined);
  return { ready, done, go: () => child.stdin.end('go\n') };
}

describe('file provider gc with three processes on one folder', () => {
  let root: string;

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'sm-file-gc-'));
  });

  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it(`deletes each of ${EXPIRED} expired sessions once: the deletions the processes report add up to ${EXPIRED}`, async () => {
    const dir = join(root, 'sessions');
    const seeder = new FileProvider({ dir });
    const now = Date.now();
    const expired = Array.from({ length: EXPIRED }, (_, i) => `expired-${i}`);
    const live = Array.from({ length: LIVE }, (_, i) => `live-${i}`);
    let next = 0;
    const all = [...expired, ...live];
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < all.length) {
          const i = next++;
          const values = new Map([['n', String(i)]]);
          if (i % 10 === 0) values.set(USER_KEY, JSON.stringify(`user-${i % 7}`)); // some bound: their markers go too
          await seeder.create(all[i], values, now - 2 * MINUTE, i < EXPIRED ? now - MINUTE + (i % 1000) : now + 10 * MINUTE);
        }
      }),
    );
    await expect(seeder.count(now)).resolves.toBe(LIVE);
    await seeder.close();

    const children = Array.from({ length: PROCESSES }, () => startChild(dir, now));
    await Promise.all(children.map((child) => child.ready));
    for (const child of children) child.go();
    const reports = await Promise.all(children.map((child) => child.done));

    console.log(`gc deletions per process: ${reports.map((report) => `pid ${report.pid}: ${report.deleted}`).join(', ')}`);
    expect(reports.reduce((sum, report) => sum + report.deleted, 0)).toBe(EXPIRED);
    const reported = reports.flatMap((report) => report.reported);
    expect(reported).toHaveLength(EXPIRED); // reported once each
    expect(new Set(reported)).toEqual(new Set(expired));
    for (const report of reports) expect(report.reported).toHaveLength(report.deleted);

    const after = new FileProvider({ dir });
    try {
      await expect(after.count(now)).resolves.toBe(LIVE);
      const sessionFiles = readdirSync(dir).filter((name) => name.endsWith('.json'));
      expect(sessionFiles).toHaveLength(LIVE);
      expect(readdirSync(join(dir, 'index')).filter((name) => name.startsWith('claim.'))).toEqual([]); // no claim left behind
      await expect(after.gc(now)).resolves.toBe(0);
      for (const sid of live.slice(0, 5)) expect(await after.read(sid)).toBeDefined();
    } finally {
      await after.close();
    }
  }, 60_000);
});
