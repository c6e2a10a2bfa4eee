import { randomBytes } from 'node:crypto';
import { link, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode, errorMessage, ProviderError } from '../errors';

/** Errors name the provider that uses these locks. */
const NAME = 'file';

/**
 * Per-name mutual exclusion for the file provider, within this process and
 * across processes sharing the folder.
 *
 * - In this process, calls for one name wait in a promise queue, so the process
 *   never races itself for its own lock file.
 * - Across processes, the lock is the file `<dir>/<name>.lock`, created with
 *   `O_CREAT | O_EXCL`: exactly one process wins; the others retry with a
 *   jittered backoff (1 ms up to ~50 ms) for at most `2 × staleMs`, then reject
 *   with a `ProviderError`.
 * - A lock older than `staleMs` (by mtime) was left by a crash and is taken
 *   over. A live holder never comes near that age: it holds the lock for one
 *   read and one write.
 * - Release deletes the lock file only if it is still ours (same inode), and
 *   never fails the work it guarded: a problem is passed to `onError`.
 * - While `exclusive()` answers true (this process alone writes the folder: see
 *   `FolderOwnership`), the in-process queue is the whole lock: no lock file.
 *   `drainUnlocked()` waits for the work that ran that way, so the owner can
 *   hand the folder over without a write of its still running unlocked.
 *
 * Needs a local file system with `O_EXCL`, hard links and stable inode numbers.
 *
 * @example
 * const locks = new FileLocks(dir, 5000, (err) => process.emitWarning(err));
 * await locks.run(hash, () => rewriteSessionFile(hash));
 */
export class FileLocks {
  readonly #dir: string;
  readonly #staleMs: number;
  readonly #onError: (err: Error) => void;
  /** Tail of each name's in-process queue; an entry lives only while work is queued. */
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Whether a lock file can be skipped now. */
  #exclusive: () => boolean = () => false;
  /** Work running without a lock file. */
  readonly #unlocked = new Set<Promise<unknown>>();

  /**
   * @param dir folder of the lock files (the sessions folder, so they share its file system).
   * @param staleMs milliseconds after which another process's lock counts as left behind by a crash.
   * @param onError receives a `ProviderError` when a lock could not be released; must not throw.
   */
  constructor(dir: string, staleMs: number, onError: (err: Error) => void) {
    this.#dir = dir;
    this.#staleMs = staleMs;
    this.#onError = onError;
  }

  /** Sets the test of whether this process alone writes the folder (lock files then skipped). Default: never. */
  setExclusive(exclusive: () => boolean): void {
    this.#exclusive = exclusive;
  }

  /**
   * Runs `fn` holding the lock of `name`: first its place in this process's
   * queue, then (unless `exclusive()`) the lock file that excludes other
   * processes. `fn` is told whether it runs alone in the folder (no lock
   * file: what it remembers of the session from earlier calls still holds).
   * Resolves or rejects as `fn` does; rejects with a `ProviderError` when the
   * lock cannot be taken within `2 × staleMs`.
   */
  run<T>(name: string, fn: (exclusive: boolean) => Promise<T>): Promise<T> {
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const run = previous.then(() => (this.#exclusive() ? this.#withoutLockFile(fn) : this.#withLockFile(name, () => fn(false))));
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#queues.set(name, tail);
    void tail.then(() => {
      if (this.#queues.get(name) === tail) this.#queues.delete(name);
    });
    return run;
  }

  /** Resolves once every call queued so far has finished (so no lock file of ours is left behind). */
  async idle(): Promise<void> {
    await Promise.all(this.#queues.values());
  }

  /** Resolves once the calls now running without a lock file have finished. */
  async drainUnlocked(): Promise<void> {
    await Promise.allSettled([...this.#unlocked]);
  }

  #withoutLockFile<T>(fn: (exclusive: boolean) => Promise<T>): Promise<T> {
    const work = fn(true);
    this.#unlocked.add(work);
    void work.then(
      () => this.#unlocked.delete(work),
      () => this.#unlocked.delete(work),
    );
    return work;
  }

  async #withLockFile<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const lockPath = join(this.#dir, `${name}.lock`);
    const handle = await this.#acquire(lockPath);
    try {
      return await fn();
    } finally {
      await this.#release(lockPath, handle);
    }
  }

  async #acquire(lockPath: string): Promise<FileHandle> {
    // Lock ages are wall-clock times (file mtimes), unrelated to session expiry, so Date.now() is right here.
    const deadline = Date.now() + 2 * this.#staleMs;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await open(lockPath, 'wx', 0o600); // O_CREAT | O_EXCL: exactly one process wins
      } catch (err) {
        if (errorCode(err) !== 'EEXIST') throw err;
      }
      if (await this.#breakIfStale(lockPath)) continue;
      if (Date.now() > deadline) {
        throw new ProviderError(NAME, `timed out waiting for the lock ${lockPath}`);
      }
      await sleep(1 + Math.random() * Math.min(50, 2 ** attempt)); // jittered backoff: 1 ms up to ~50 ms
    }
  }

  /** Removes a lock older than `staleMs`; resolves whether it is worth retrying at once. */
  async #breakIfStale(lockPath: string): Promise<boolean> {
    let seen;
    try {
      seen = await stat(lockPath);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return true; // released meanwhile
      throw err;
    }
    if (Date.now() - seen.mtimeMs < this.#staleMs) return false;
    // Two processes may both find it stale; the first to break it may already hold a fresh lock
    // by the time the second acts. So move the file aside and check it is the one we judged stale.
    const aside = `${lockPath}.${randomBytes(6).toString('hex')}.stale`;
    try {
      await rename(lockPath, aside);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return true;
      throw err;
    }
    const moved = await stat(aside);
    if (moved.ino !== seen.ino || moved.dev !== seen.dev) {
      await link(aside, lockPath).catch(() => undefined); // a live lock: put it back (unless replaced already)
    }
    await unlink(aside);
    return true;
  }

  async #release(lockPath: string, handle: FileHandle): Promise<void> {
    try {
      // Delete only our own lock: if we stalled past staleMs, the file may now be another process's.
      // Our open handle keeps the inode alive, so no other file can carry its number meanwhile.
      const [mine, current] = await Promise.all([handle.stat(), stat(lockPath).catch(() => undefined)]);
      if (current !== undefined && current.ino === mine.ino && current.dev === mine.dev) await unlink(lockPath);
    } catch (err) {
      // The write itself succeeded; a lock left behind only delays the next writer until it is stale.
      this.#onError(new ProviderError(NAME, `could not release the lock ${lockPath}: ${errorMessage(err)}`, err));
    } finally {
      await handle.close().catch(() => undefined);
    }
  }
}
