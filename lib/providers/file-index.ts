import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, opendirSync } from 'node:fs';
import { mkdir, open, opendir, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errorCode, errorMessage, ProviderError } from '../errors';
import { ExpiryJournal } from './file-journal';

/** Width of an expiry bucket: a session expiring at `t` has its entry in the bucket that starts at `t - t % BUCKET_MS`. */
export const BUCKET_MS = 5 * 60_000;
/** The index folder, inside the sessions folder. */
export const INDEX_DIR = 'index';
/** Present once every session file of the folder has its entry (written by the first build). */
const READY_FILE = 'v1';
const BUCKET_NAME = /^\d{1,16}$/;
/** `<expiresAt>.<hash>`: what an entry's name says. */
const ENTRY_NAME = /^(-?\d{1,16})\.([0-9a-f]{64})$/;
const CLAIM_NAME = /^claim\.\d+\.[0-9a-f]{12}$/;
/** A claimed batch whose folder has not changed for this long was left by a crashed gc (a live one changes it every few ms). */
const CLAIM_STALE_FACTOR = 4;
/** Directory entries handled together. */
const PAGE = 64;

/** One entry of the index: the session file `<hash>.json`, expiring at `expiresAt`. */
export interface IndexEntry {
  hash: string;
  expiresAt: number;
}

/**
 * The expiry index of the file provider: `index/<bucket>/<expiresAt>.<hash>`,
 * one empty file per session, in the folder of the {@link BUCKET_MS}-wide
 * slice of time its session expires in. The entry moves (one `rename`) as
 * the session's expiry moves, is written before a new session file and
 * removed after a deleted one, so a crash leaves at worst an entry without
 * its session (pruned when gc meets it), never a session without an entry.
 *
 * - `count(now)` opens neither a session file nor a bucket: each change of
 *   an entry also appends `(expiry, ±1)` to the {@link ExpiryJournal}, and
 *   the count folds in what other processes appended since the last call.
 * - gc pages through the buckets that hold expired entries and claims each by
 *   a `rename` into a folder of its own: across processes, exactly one claims
 *   a given entry, so a session is deleted (and reported) once.
 * - The index is a hint, the session file stays the truth: whoever claims or
 *   lists an entry checks its file. A count may be off transiently (a crash
 *   between the two renames of an update), until gc meets the entry.
 */
export class FileIndex {
  readonly #root: string;
  readonly #staleClaimMs: number;
  #ready: Promise<void> | undefined;
  readonly #journal: ExpiryJournal;
  /** Whether a new entry is made durable (its folder fsynced) before its session file is linked. */
  readonly #fsync: boolean;
  readonly #onError: (err: Error) => void;

  /**
   * @param dir the sessions folder.
   * @param staleMs the lock staleness of the provider; a claim folder unchanged for 4× this is taken over.
   */
  constructor(dir: string, staleMs: number, options: { fsync: boolean; onError: (err: Error) => void }) {
    this.#root = join(dir, INDEX_DIR);
    this.#staleClaimMs = CLAIM_STALE_FACTOR * staleMs;
    this.#fsync = options.fsync;
    this.#onError = options.onError;
    this.#journal = new ExpiryJournal(join(this.#root, 'journal'), (err) =>
      options.onError(new ProviderError('file', `could not append to the count journal in ${this.#root}: ${errorMessage(err)}`, err)),
    );
  }

  /**
   * Resolves once the folder has an index: at once when `index/v1` exists,
   * otherwise after `build` (the first use of a folder written before the
   * index existed) added an entry for every session file. Shared by every caller.
   */
  ensure(build: () => Promise<void>): Promise<void> {
    this.#ready ??= (async () => {
      const marker = join(this.#root, READY_FILE);
      try {
        await stat(marker);
        return;
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') throw err;
      }
      await mkdir(this.#root, { recursive: true, mode: 0o700 });
      await build();
      await (await open(marker, 'a', 0o600)).close();
    })();
    this.#ready.catch(() => (this.#ready = undefined)); // a failed build is retried by the next call
    return this.#ready;
  }

  /**
   * At construction: a folder with no session file yet (new, or emptied) gets its index marked
   * ready at once, so its first count need not walk it. Stops at the first session file it meets.
   * Never throws: the build on first use is the fallback.
   */
  markReadyIfEmpty(sessionFile: RegExp): void {
    try {
      const dir = opendirSync(join(this.#root, '..'));
      try {
        for (let dirent = dir.readSync(); dirent !== null; dirent = dir.readSync()) if (sessionFile.test(dirent.name)) return;
      } finally {
        dir.closeSync();
      }
      mkdirSync(this.#root, { recursive: true, mode: 0o700 });
      closeSync(openSync(join(this.#root, READY_FILE), 'a', 0o600));
    } catch {
      // left to ensure()
    }
  }

  /** Adds the entry; resolves whether this call made it (`false`: it was there). */
  async add(hash: string, expiresAt: number): Promise<boolean> {
    const path = this.#path(hash, expiresAt);
    for (let attempt = 0; ; attempt += 1) {
      try {
        await (await open(path, 'wx', 0o600)).close();
        // With fsync, a session that survives a power cut must keep its entry, or gc would never find it.
        await Promise.all([this.#journal.record([[expiresAt, 1]]), this.#fsync ? syncDir(this.#bucketDir(expiresAt)) : undefined]);
        return true;
      } catch (err) {
        const code = errorCode(err);
        if (code === 'EEXIST') return false;
        if (code !== 'ENOENT' || attempt > 2) throw err;
        await mkdir(this.#bucketDir(expiresAt), { recursive: true, mode: 0o700 }); // a new bucket, or one gc removed
      }
    }
  }

  /** Moves the entry of `hash` from expiry `from` to `to` (one rename); adds it when it was missing. */
  async move(hash: string, from: number, to: number): Promise<void> {
    if (from === to) return;
    const target = this.#path(hash, to);
    for (let attempt = 0; ; attempt += 1) {
      try {
        await rename(this.#path(hash, from), target);
        await this.#journal.record([[from, -1], [to, 1]]);
        return;
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') throw err;
        if (attempt > 0) break; // the source is gone (claimed by gc, or never made): add the entry instead
        await mkdir(this.#bucketDir(to), { recursive: true, mode: 0o700 });
      }
    }
    await this.add(hash, to);
  }

  /** Removes the entry; a missing one is a no-op. */
  async remove(hash: string, expiresAt: number): Promise<void> {
    if (await unlinkQuietly(this.#path(hash, expiresAt))) await this.#journal.record([[expiresAt, -1]]);
  }

  /** How many entries expire after `now`, from the journal. */
  count(now: number): Promise<number> {
    return this.#journal.count(now);
  }

  /** Closes the journal's append handle. */
  close(): Promise<void> {
    return this.#journal.close();
  }

  /** The live entries (expiring after `now`), a page at a time, bucket by bucket. */
  async *live(now: number): AsyncGenerator<IndexEntry[]> {
    for (const bucket of await this.#buckets()) {
      if (Number(bucket) + BUCKET_MS <= now) continue;
      for await (const page of this.#pages(join(this.#root, bucket))) {
        const entries = page.filter((entry) => entry.expiresAt > now);
        if (entries.length > 0) yield entries;
      }
    }
  }

  /**
   * Claims the entries expired at `now`, a page at a time: each is renamed
   * into a folder of this call's own, so no other process (or call) gets it.
   * Claimed batches of a crashed gc are taken over whole. `settle` is called
   * with each page and must dispose of every entry in it (see {@link release}).
   * The claim folder is removed at the end.
   */
  async claimExpired(now: number, settle: (claimed: IndexEntry[], claimDir: string) => Promise<void>): Promise<void> {
    let claimDir: string | undefined;
    const own = async (): Promise<string> => {
      if (claimDir === undefined) {
        claimDir = join(this.#root, `claim.${process.pid}.${randomBytes(6).toString('hex')}`);
        await mkdir(claimDir, { mode: 0o700 });
      }
      return claimDir;
    };
    try {
      const names = await this.#names();
      for (const name of names) {
        if (CLAIM_NAME.test(name)) {
          const taken = await this.#takeOver(join(this.#root, name), now);
          if (taken === undefined) continue;
          for await (const page of this.#pages(taken)) await settle(page, taken);
          await rmdirQuietly(taken);
          continue;
        }
        if (!BUCKET_NAME.test(name) || Number(name) > now) continue;
        const bucketDir = join(this.#root, name);
        for await (const page of this.#pages(bucketDir)) {
          const expired = page.filter((entry) => entry.expiresAt <= now);
          if (expired.length === 0) continue;
          const dir = await own();
          const claimed = await Promise.all(
            expired.map((entry) =>
              rename(join(bucketDir, entryName(entry)), join(dir, entryName(entry))).then(
                () => entry,
                (err: unknown) => {
                  if (errorCode(err) === 'ENOENT') return undefined; // another gc (or a write) got it first
                  throw err;
                },
              ),
            ),
          );
          const mine = claimed.filter((entry): entry is IndexEntry => entry !== undefined);
          if (mine.length === 0) continue;
          await this.#journal.record(mine.map((entry) => [entry.expiresAt, -1] as const)); // out of the index now
          await settle(mine, dir);
        }
        if (Number(name) + BUCKET_MS <= now) await rmdirQuietly(bucketDir); // emptied, unless a late write landed there
      }
    } finally {
      if (claimDir !== undefined) await rmdirQuietly(claimDir);
    }
    // Folding the journal is housekeeping: a failure is reported, and the sweep still succeeded.
    await this.#journal.compact().catch((err: unknown) =>
      this.#onError(new ProviderError('file', `could not fold the count journal in ${this.#root}: ${errorMessage(err)}`, err)),
    );
  }

  /** Deletes a claimed entry once its session has been dealt with. */
  async release(claimDir: string, entry: IndexEntry): Promise<void> {
    await unlinkQuietly(join(claimDir, entryName(entry))); // already out of the journal's count, since its claim
  }

  /** Every bucket folder name, oldest first. */
  async #buckets(): Promise<string[]> {
    return (await this.#names()).filter((name) => BUCKET_NAME.test(name)).sort((a, b) => Number(a) - Number(b));
  }

  async #names(): Promise<string[]> {
    try {
      return await readdir(this.#root);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return [];
      throw err;
    }
  }

  /** The entries of one folder, streamed by `opendir` in pages; a folder removed meanwhile has none. */
  async *#pages(dir: string): AsyncGenerator<IndexEntry[]> {
    let handle;
    try {
      handle = await opendir(dir, { bufferSize: PAGE });
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return;
      throw err;
    }
    let page: IndexEntry[] = [];
    for await (const dirent of handle) {
      const entry = parseEntry(dirent.name);
      if (entry === undefined) continue;
      page.push(entry);
      if (page.length === PAGE) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
  }

  /** Takes over a claim folder left by a crashed gc: renamed to a name of ours, so only one taker wins. */
  async #takeOver(path: string, now: number): Promise<string | undefined> {
    try {
      if ((await stat(path)).mtimeMs > now - this.#staleClaimMs) return undefined; // a gc at work
      const mine = join(this.#root, `claim.${process.pid}.${randomBytes(6).toString('hex')}`);
      await rename(path, mine);
      return mine;
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined; // taken over, or finished, meanwhile
      throw err;
    }
  }

  #bucketDir(expiresAt: number): string {
    return join(this.#root, String(expiresAt - mod(expiresAt, BUCKET_MS)));
  }

  #path(hash: string, expiresAt: number): string {
    return join(this.#bucketDir(expiresAt), `${expiresAt}.${hash}`);
  }
}

export function entryName(entry: IndexEntry): string {
  return `${entry.expiresAt}.${entry.hash}`;
}

function parseEntry(name: string): IndexEntry | undefined {
  const match = ENTRY_NAME.exec(name);
  return match === null ? undefined : { expiresAt: Number(match[1]), hash: match[2] };
}

function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

/** Deletes `path`; resolves whether it was there. */
async function unlinkQuietly(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
    return false;
  }
}

async function rmdirQuietly(path: string): Promise<void> {
  try {
    await rmdir(path);
  } catch (err) {
    const code = errorCode(err);
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
}

/** Makes renames, links and unlinks in `dir` durable (POSIX: they live in the directory, not the file). */
export async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // directories cannot be opened for fsync there
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
