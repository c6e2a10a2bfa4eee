import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { errorCode } from '../errors';

/** A record: the expiry (ms) and +1 or -1, two float64s: 16 bytes, so a record never straddles a page. */
const RECORD_BYTES = 16;
/** One segment per minute of wall-clock time. */
const SEGMENT_MS = 60_000;
/** A segment this many segments old gets no more appends (a writer picks its segment right before writing). */
const SETTLED_AFTER = 2;
/** Count buckets: the running totals are kept per minute of expiry, and per millisecond inside it. */
const COUNT_BUCKET_MS = 60_000;
/** A snapshot leaves out expiries older than this (before its writing): they can never be counted again. */
const SNAPSHOT_KEEP_EXPIRED_MS = 10 * 60_000;
const SEGMENT_NAME = /^\d{1,15}$/;
const SNAPSHOT_NAME = /^snapshot\.(\d{1,15})$/;
/** Reloads in one refresh before giving up (each means another process compacted meanwhile). */
const MAX_RELOADS = 5;

interface Bucket {
  total: number;
  byMs: Map<number, number>;
}

/**
 * The running count of the file provider's index: every change of an index
 * entry (added, moved, removed, claimed by gc) appends its effect on the
 * multiset of expiries, `(expiresAt, ±1)`, to `index/journal/<minute>` in one
 * `O_APPEND` write. Each process folds what it has not read yet into per-minute
 * totals, so `count(now)` reads a few kilobytes instead of 100,000 names.
 * Order does not matter (a sum), so processes append without coordination.
 *
 * Once a minute's segment is settled, any process folds the snapshot and the
 * settled segments into a new `snapshot.<minute>` (dropping long-expired
 * expiries) and deletes them. A record lost in a crash (between an entry's
 * change and its append) miscounts one session until the expiry it names
 * passes: every error here heals within one session lifetime.
 */
export class ExpiryJournal {
  readonly #dir: string;
  /** The snapshot the state is based on (-1: none). */
  #base = -1;
  /** Bytes of each segment folded into the state. */
  readonly #offsets = new Map<number, number>();
  readonly #buckets = new Map<number, Bucket>();
  #refreshing: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #compacting: Promise<void> | undefined;
  /** Wall-clock time of the last listing of the folder. */
  #lastListAt: number | undefined;
  /** Segments listed since the base snapshot. */
  readonly #seen = new Set<number>();
  /** Segments read to their end once settled: all they will ever hold is in the state. */
  readonly #finished = new Set<number>();

  readonly #onError: (err: unknown) => void;
  readonly #clock: () => number;
  /** Records not written yet: all those of one turn of the event loop go in one write. */
  #pending: number[] = [];
  /** The write running, and the one that will take the records queued meanwhile. */
  #flushing: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  /**
   * @param dir the journal folder (`index/journal`).
   * @param onError receives an append that failed (the count is then off until the expiries it named pass).
   * @param clock wall-clock milliseconds, which name the segments (tests move it by hand).
   */
  constructor(dir: string, onError: (err: unknown) => void, clock: () => number = Date.now) {
    this.#dir = dir;
    this.#onError = onError;
    this.#clock = clock;
  }

  /**
   * Appends the effects of one change (e.g. a move: `[[from, -1], [to, +1]]`). The records queued
   * in one turn of the event loop go in one write. Resolves once they are written, so a count in
   * another process sees them; never rejects: a failure goes to `onError` (the change itself was
   * made, and the count heals when the expiries it names pass).
   */
  record(changes: ReadonlyArray<readonly [expiresAt: number, delta: 1 | -1]>): Promise<void> {
    for (const [expiresAt, delta] of changes) this.#pending.push(expiresAt, delta);
    if (this.#next === undefined) {
      const after = this.#flushing ?? Promise.resolve();
      const next: Promise<void> = after
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
        .then(() => {
          this.#next = undefined; // records queued from here on go in the write after this one
          this.#flushing = next;
          return this.#write();
        })
        .catch((err: unknown) => this.#onError(err))
        .finally(() => {
          if (this.#flushing === next) this.#flushing = undefined;
        });
      this.#next = next;
    }
    return this.#next;
  }

  /** Resolves once the records queued so far are written. */
  async flush(): Promise<void> {
    while (this.#next !== undefined || this.#flushing !== undefined) await (this.#next ?? this.#flushing);
  }

  async #write(): Promise<void> {
    if (this.#pending.length === 0) return;
    const records = Float64Array.from(this.#pending);
    this.#pending = [];
    const buffer = Buffer.from(records.buffer);
    if (!LITTLE_ENDIAN) for (let i = 0; i < records.length; i += 1) buffer.writeDoubleLE(records[i], i * 8);
    // Opened per batch, not kept open: a held write handle would stop an admin remounting the folder read-only.
    const handle = await this.#openAppend(Math.floor(this.#clock() / SEGMENT_MS));
    try {
      await handle.write(buffer, 0, buffer.length, null); // O_APPEND: one write, never interleaved with another's
    } finally {
      await handle.close();
    }
  }

  /** How many expiries in the journal are after `now`. */
  async count(now: number): Promise<number> {
    await this.flush(); // this process's own changes first
    await this.#refresh();
    let live = 0;
    // Forgotten once long expired by the clock (not by `now`: a caller may ask about an earlier time).
    const forget = Math.min(now, this.#clock()) - SNAPSHOT_KEEP_EXPIRED_MS;
    for (const [start, bucket] of this.#buckets) {
      if (start > now) live += bucket.total;
      else if (start + COUNT_BUCKET_MS <= now) {
        if (start + COUNT_BUCKET_MS <= forget) this.#buckets.delete(start);
      } else for (const [expiresAt, n] of bucket.byMs) if (expiresAt > now) live += n;
    }
    return Math.max(0, live);
  }

  /** Folds settled segments into a new snapshot, if there are any; one at a time per process. */
  compact(): Promise<void> {
    this.#compacting ??= this.#compact().finally(() => (this.#compacting = undefined));
    return this.#compacting;
  }

  /** Writes what is queued. */
  async close(): Promise<void> {
    await this.flush();
  }

  async #openAppend(segment: number): Promise<FileHandle> {
    const path = join(this.#dir, String(segment));
    try {
      return await open(path, 'a', 0o600);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      return open(path, 'a', 0o600);
    }
  }

  /** Brings the state up to date, sharing the work between concurrent callers (never a refresh that started before the call). */
  #refresh(): Promise<void> {
    if (this.#refreshing === undefined) {
      this.#refreshing = this.#catchUp().finally(() => (this.#refreshing = undefined));
      return this.#refreshing;
    }
    this.#queued ??= this.#refreshing.catch(() => undefined).then(() => {
      this.#queued = undefined;
      return this.#refresh();
    });
    return this.#queued;
  }

  async #catchUp(): Promise<void> {
    for (let reload = 0; reload < MAX_RELOADS; reload += 1) {
      const listedAt = this.#clock();
      const { snapshot, segments } = await this.#list();
      if (snapshot > this.#base) {
        if (this.#covered(snapshot)) this.#base = snapshot; // we hold all it folds in: nothing to reload
        else {
          this.#reset();
          if (!(await this.#loadSnapshot(snapshot))) continue; // replaced meanwhile
        }
      }
      this.#lastListAt = listedAt;
      for (const segment of segments) this.#seen.add(segment);
      for (const known of [this.#seen, this.#finished]) for (const segment of known) if (segment <= this.#base) known.delete(segment);
      for (const segment of this.#offsets.keys()) if (segment <= this.#base) this.#offsets.delete(segment);
      let vanished = false;
      for (const segment of segments) {
        if (segment > this.#base && !(await this.#readSegment(segment))) vanished = true;
      }
      if (!vanished) {
        if (segments.some((segment) => segment > snapshot && this.#settled(segment))) void this.compact().catch(() => undefined);
        return;
      }
      // A segment was compacted away while we read it: reload from the snapshot that holds it.
      this.#lastListAt = undefined;
    }
    throw new Error(`the journal in ${this.#dir} kept changing under the reader`);
  }

  /**
   * Whether the state already holds every record that snapshot `n` folds in: each segment we saw
   * up to `n` was read to its end once settled, and we listed the folder less than a segment ago
   * (a segment is compacted two segments after its own, so none came and went unseen).
   */
  #covered(n: number): boolean {
    if (this.#lastListAt === undefined || this.#clock() - this.#lastListAt >= SEGMENT_MS) return false;
    for (const segment of this.#seen) if (segment > this.#base && segment <= n && !this.#finished.has(segment)) return false;
    return true;
  }

  #settled(segment: number): boolean {
    return segment <= Math.floor(this.#clock() / SEGMENT_MS) - SETTLED_AFTER;
  }

  #reset(): void {
    this.#base = -1;
    this.#offsets.clear();
    this.#buckets.clear();
    this.#finished.clear();
    this.#seen.clear();
  }

  /** The newest snapshot, the segments, and the other files of the folder (older snapshots, temp files). */
  async #list(): Promise<{ snapshot: number; segments: number[]; others: string[] }> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return { snapshot: -1, segments: [], others: [] };
      throw err;
    }
    let snapshot = -1;
    const segments: number[] = [];
    const others: string[] = [];
    for (const name of names) {
      const match = SNAPSHOT_NAME.exec(name);
      if (match !== null) snapshot = Math.max(snapshot, Number(match[1]));
      if (SEGMENT_NAME.test(name)) segments.push(Number(name));
      else others.push(name);
    }
    segments.sort((a, b) => a - b);
    return { snapshot, segments, others };
  }

  /** Loads snapshot `n` as the base; resolves `false` when it is gone (a newer one replaced it). */
  async #loadSnapshot(n: number): Promise<boolean> {
    const bytes = await readFrom(join(this.#dir, `snapshot.${n}`), 0);
    if (bytes === undefined) return false;
    this.#fold(bytes);
    this.#base = n;
    return true;
  }

  /** Folds what segment `n` gained since the last read; resolves `false` when it is gone. */
  async #readSegment(n: number): Promise<boolean> {
    if (this.#finished.has(n)) return true;
    const settled = this.#settled(n); // judged before the read: a settled segment read to its end is whole
    const offset = this.#offsets.get(n) ?? 0;
    const bytes = await readFrom(join(this.#dir, String(n)), offset);
    if (bytes === undefined) return false;
    const whole = bytes.subarray(0, bytes.length - (bytes.length % RECORD_BYTES)); // a record being written waits
    this.#fold(whole);
    this.#offsets.set(n, offset + whole.length);
    if (settled) this.#finished.add(n);
    return true;
  }

  #fold(bytes: Buffer): void {
    const records = float64s(bytes);
    let [start, bucket]: [number, Bucket | undefined] = [NaN, undefined];
    for (let at = 0; at + 1 < records.length; at += 2) {
      const expiresAt = records[at];
      const delta = records[at + 1];
      if (!Number.isFinite(expiresAt) || !Number.isFinite(delta)) continue;
      if (bucket === undefined || expiresAt < start || expiresAt >= start + COUNT_BUCKET_MS) {
        start = expiresAt - mod(expiresAt, COUNT_BUCKET_MS); // snapshots are sorted: mostly the bucket of the last record
        bucket = this.#buckets.get(start);
        if (bucket === undefined) this.#buckets.set(start, (bucket = { total: 0, byMs: new Map() }));
      }
      bucket.total += delta;
      const n = (bucket.byMs.get(expiresAt) ?? 0) + delta;
      if (n === 0) bucket.byMs.delete(expiresAt);
      else bucket.byMs.set(expiresAt, n);
    }
  }

  /**
   * Writes `snapshot.<k>`: the newest snapshot plus every settled segment up to `k`, read from
   * the disk (not this process's state, which holds unsettled segments too); then deletes them.
   */
  async #compact(): Promise<void> {
    const { snapshot, segments, others } = await this.#list();
    const settled = segments.filter((segment) => segment > snapshot && this.#settled(segment));
    if (settled.length === 0) {
      await this.#removeObsolete(others, snapshot); // what a concurrent fold left behind
      return;
    }
    const sums = new Map<number, number>();
    const parts = [snapshot >= 0 ? join(this.#dir, `snapshot.${snapshot}`) : undefined, ...settled.map((segment) => join(this.#dir, String(segment)))];
    for (const path of parts) {
      if (path === undefined) continue;
      const bytes = await readFrom(path, 0);
      if (bytes === undefined) return; // another process compacted meanwhile
      const records = float64s(bytes);
      for (let at = 0; at + 1 < records.length; at += 2) {
        const [expiresAt, delta] = [records[at], records[at + 1]];
        if (Number.isFinite(expiresAt) && Number.isFinite(delta)) sums.set(expiresAt, (sums.get(expiresAt) ?? 0) + delta);
      }
    }
    const keepAfter = this.#clock() - SNAPSHOT_KEEP_EXPIRED_MS;
    const kept = [...sums].filter(([expiresAt, n]) => n !== 0 && expiresAt > keepAfter).sort(([a], [b]) => a - b);
    const out = Buffer.allocUnsafe(kept.length * RECORD_BYTES);
    for (const [i, [expiresAt, n]] of kept.entries()) {
      out.writeDoubleLE(expiresAt, i * RECORD_BYTES);
      out.writeDoubleLE(n, i * RECORD_BYTES + 8);
    }
    const k = settled[settled.length - 1];
    const temp = join(this.#dir, `snapshot.${k}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(out);
    } finally {
      await handle.close();
    }
    try {
      await rename(temp, join(this.#dir, `snapshot.${k}`));
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return; // a newer fold took our temp file for a crash's leftover: it covers ours
      throw err;
    }
    await Promise.all(settled.map((segment) => unlinkQuietly(join(this.#dir, String(segment)))));
    await this.#removeObsolete(others, k);
  }

  /**
   * Deletes the snapshots older than `newest` (the one folded in, and any a concurrent fold wrote)
   * and the temp files of folds older than it (left by a crash: a fold running now writes a newer
   * snapshot, or none).
   */
  async #removeObsolete(names: string[], newest: number): Promise<void> {
    const obsolete = names.filter((name) => {
      const match = /^snapshot\.(\d{1,15})(?:\.[0-9a-f]{12}\.tmp)?$/.exec(name);
      return match !== null && Number(match[1]) < newest;
    });
    await Promise.all(obsolete.map((name) => unlinkQuietly(join(this.#dir, name))));
  }
}

/** The bytes of `path` from `offset` to its end (in a buffer of its own, 8-byte aligned); `undefined` when it does not exist. */
async function readFrom(path: string, offset: number): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    // One read of what is there now (plus room for what is appended meanwhile); more is read next time.
    const buffer = Buffer.from(new ArrayBuffer(Math.max(0, size - offset) + RECORD_BYTES * 64));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** The records of `bytes` as float64s (little-endian machines: every platform Node supports but s390x). */
function float64s(bytes: Buffer): Float64Array {
  const whole = bytes.length - (bytes.length % RECORD_BYTES);
  if (bytes.byteOffset % 8 === 0 && LITTLE_ENDIAN) return new Float64Array(bytes.buffer, bytes.byteOffset, whole / 8);
  const out = new Float64Array(whole / 8);
  for (let i = 0; i < out.length; i += 1) out[i] = bytes.readDoubleLE(i * 8);
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

async function unlinkQuietly(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
}
