import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExpiryJournal } from '../../lib/providers/file-journal';

// The count journal of the file provider, with a clock moved by hand: two
// journals over one folder stand for two processes.

const MINUTE = 60_000;

describe('the count journal of the file provider', () => {
  let root: string;
  let dir: string;
  let clock: number;
  let errors: unknown[];
  let journals: ExpiryJournal[];

  const journal = (): ExpiryJournal => {
    const made = new ExpiryJournal(dir, (err) => errors.push(err), () => clock);
    journals.push(made);
    return made;
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'sm-journal-'));
    dir = join(root, 'journal');
    clock = Date.UTC(2030, 0, 1, 12, 0, 0);
    errors = [];
    journals = [];
  });

  afterEach(async () => {
    await Promise.all(journals.map((made) => made.close()));
    rmSync(root, { recursive: true, force: true });
    expect(errors).toEqual([]);
  });

  it('counts what another process appended, live expiries only', async () => {
    const [a, b] = [journal(), journal()];
    a.record([[clock + MINUTE, 1]]);
    a.record([[clock + 2 * MINUTE, 1]]);
    b.record([[clock + 30 * MINUTE, 1]]);
    await a.flush();
    await b.flush();
    await expect(b.count(clock)).resolves.toBe(3);
    a.record([[clock + MINUTE, -1], [clock + 40 * MINUTE, 1]]); // a move
    await a.flush();
    await expect(b.count(clock)).resolves.toBe(3);
    await expect(b.count(clock + 2 * MINUTE)).resolves.toBe(2); // exactly at its expiry: not live
    await expect(a.count(clock + 2 * MINUTE - 1)).resolves.toBe(3);
    await expect(a.count(clock + 31 * MINUTE)).resolves.toBe(1);
    await expect(a.count(clock)).resolves.toBe(3); // asking about a later time forgets nothing an earlier one needs
  });

  it('appends the records of one turn of the event loop in one write, and a count in the same process waits for them', async () => {
    const a = journal();
    for (let i = 0; i < 1000; i++) a.record([[clock + MINUTE + i, 1]]);
    await expect(a.count(clock)).resolves.toBe(1000);
    expect(readdirSync(dir)).toHaveLength(1);
  });

  it('ignores a record still being written', async () => {
    const [a, b] = [journal(), journal()];
    a.record([[clock + MINUTE, 1]]);
    await a.flush();
    const segment = join(dir, readdirSync(dir)[0]);
    const [expiry, delta] = [Buffer.alloc(8), Buffer.alloc(8)];
    expiry.writeDoubleLE(clock + 5 * MINUTE);
    delta.writeDoubleLE(1);
    appendFileSync(segment, expiry); // the first half of a record: its writer has not finished
    await expect(b.count(clock)).resolves.toBe(1);
    appendFileSync(segment, delta);
    await expect(b.count(clock)).resolves.toBe(2);
  });

  it('folds settled segments into a snapshot; a reader that kept up rebases, a new one loads it', async () => {
    const [a, b] = [journal(), journal()];
    for (let minute = 0; minute < 5; minute++) {
      a.record([[clock + 60 * MINUTE + minute, 1]]);
      b.record([[clock + 60 * MINUTE + 100 + minute, 1]]);
      await a.flush();
      await b.flush();
      await expect(a.count(clock)).resolves.toBe(2 * (minute + 1));
      await expect(b.count(clock)).resolves.toBe(2 * (minute + 1));
      clock += MINUTE;
    }
    await Promise.all([a.compact(), b.compact()]); // the folds the counts above may have started, at an earlier clock
    await a.compact();
    const names = readdirSync(dir).sort();
    expect(names.filter((name) => name.startsWith('snapshot.'))).toHaveLength(1);
    expect(names.filter((name) => !name.startsWith('snapshot.'))).toEqual([String(clock / MINUTE - 1)]); // the minute before this one is not settled
    await expect(b.count(clock)).resolves.toBe(10);
    await expect(a.count(clock)).resolves.toBe(10);
    a.record([[clock + 60 * MINUTE, -1]]);
    await a.flush();
    await expect(journal().count(clock)).resolves.toBe(9); // a new process: snapshot plus the segments after it
    await expect(b.count(clock)).resolves.toBe(9);
  });

  it('drops long-expired expiries from the snapshot and still counts the rest', async () => {
    const a = journal();
    a.record([[clock - 20 * MINUTE, 1], [clock + 20 * MINUTE, 1], [clock + 20 * MINUTE, 1], [clock + 25 * MINUTE, 1], [clock + 25 * MINUTE, -1]]);
    await a.flush();
    clock += 3 * MINUTE;
    await a.compact();
    await expect(journal().count(clock)).resolves.toBe(2);
  });

  it('answers 20 concurrent counts from shared reads', async () => {
    const a = journal();
    for (let i = 0; i < 500; i++) a.record([[clock + MINUTE + i, 1]]);
    const answers = await Promise.all(Array.from({ length: 20 }, () => a.count(clock)));
    expect(new Set(answers)).toEqual(new Set([500]));
  });
});
