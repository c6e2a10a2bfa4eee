import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { link, mkdir, open, opendir, readdir, readFile, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorCode, errorMessage, OptionError, ProviderError } from '../errors';
import { FileLocks } from './file-lock';
import { USER_KEY, userOf, type Provider, type StoredEntry, type StoredSession } from './provider';
import { valuesFromObject, valuesToObject } from './values-codec';

/** Options of {@link FileProvider} (also its `providerOptions` under the name `'file'`). */
export interface FileOptions {
  /** Folder holding one file per session. Created (mode 0700) when missing. Required. */
  dir: string;
  /**
   * `true`: fsync each written file and the folder, so a committed session
   * survives a power cut, at the cost of a disk flush per write. Default `false`
   * (a crash of the process itself never loses a write: files are replaced by rename).
   */
  fsync?: boolean;
  /**
   * Called with a `ProviderError` when a session file is corrupt or truncated;
   * the session is then treated as absent. Default: `process.emitWarning`.
   */
  onError?: (err: Error) => void;
  /**
   * Milliseconds after which another process's lock file counts as left behind
   * by a crash and is taken over. A lock is held for one read and one write, so
   * a live holder never comes near it. Default `5000`.
   */
  lockStaleMs?: number;
}

const NAME = 'file';
const OPTION_NAMES = new Set(['dir', 'fsync', 'onError', 'lockStaleMs']);
const DEFAULT_LOCK_STALE_MS = 5000;
/** Directory entries handled together: bounds memory and concurrent fs work of a sweep. */
const BATCH = 64;
/** A temp file this old was left by a crash mid-write (a write takes milliseconds). */
const TEMP_MAX_AGE_MS = 60 * 60 * 1000;
const SESSION_FILE = /^([0-9a-f]{64})\.json$/;
const TEMP_FILE = /^[0-9a-f]{64}\.[0-9a-f]{12}\.tmp$/;
/** The folder of the sessions-by-user markers, inside `dir`. */
const USERS_DIR = 'users';
/** Attempts at writing a marker while its user's folder is removed under it (emptied by another writer). */
const MARK_ATTEMPTS = 5;

/** What a session file holds. */
interface FileRecord {
  sid: string;
  createdAt: number;
  expiresAt: number;
  values: Map<string, string>;
}

/**
 * Stores each session as a JSON file in one folder: no server, no dependency,
 * survives restarts, and several processes (a cluster, or a restart that
 * overlaps the old process) can share the folder. Pick it for a single host;
 * prefer `sqlite` for many sessions (`count()`, `entries()` and `gc()` read
 * every file) and `redis`/`postgres` for several hosts.
 *
 * File names are the SHA-256 of the id, so no id (`../x`, NUL, 10 kB) can name
 * a path outside the folder, and ids that differ only in case stay apart on
 * case-insensitive file systems (macOS, Windows). Files are replaced by
 * write-to-temp + rename, so a reader sees the old or the new file, never half.
 * Per-key changes of one session are serialised by a {@link FileLocks} lock
 * (a promise queue in this process, a lock file across processes), so
 * concurrent updates of different keys all survive. Needs a local file system
 * with hard links (`create` is `link()`, which refuses an existing name).
 *
 * Sessions by user: a session bound to a user (its values hold `USER_KEY`)
 * has an empty marker file `users/<SHA-256 of the user id, base64url>/<its
 * file name>`, written before the session file (under the session's lock)
 * and removed after it. The session file stays the truth: `listByUser` reads
 * the markers of that user, then each session file, and returns only the live
 * sessions still bound to that user; a marker whose session is gone or bound
 * elsewhere (left by a crash, a failed write or a sweep) is deleted when met.
 * `count()`, `entries()` and `gc()` only look at session files, never at `users/`.
 *
 * @example
 * app.use(sessions({ provider: 'file', providerOptions: { dir: '/var/lib/myapp/sessions' } }));
 * // or
 * app.use(sessions({ provider: new FileProvider({ dir: './sessions', fsync: true }) }));
 */
export class FileProvider implements Provider {
  readonly name = NAME;
  readonly #dir: string;
  readonly #fsync: boolean;
  readonly #onError: (err: Error) => void;
  /** Serialises the writes of one session, in this process and across processes. */
  readonly #locks: FileLocks;
  #closed = false;

  constructor(options: FileOptions) {
    checkOptions(options);
    this.#dir = resolve(options.dir); // fixed now: a later process.chdir() must not move the sessions
    this.#fsync = options.fsync ?? false;
    this.#onError = options.onError ?? ((err) => process.emitWarning(err));
    this.#locks = new FileLocks(this.#dir, options.lockStaleMs ?? DEFAULT_LOCK_STALE_MS, (err) => this.#report(err));
    try {
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new ProviderError(NAME, `cannot create the folder ${this.#dir}: ${errorMessage(err)}`, err);
    }
  }

  create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    return this.#guard('create', () => {
      const hash = hashId(sid);
      const user = userOf(values);
      const write = async (): Promise<boolean> => {
        // The marker first: a crash in between leaves a marker without its session (pruned when met),
        // never a bound session its user cannot find. A refused create leaves one just the same.
        if (user !== undefined) await this.#mark(user, hash);
        const created = await this.#link(hash, { sid, createdAt, expiresAt, values: new Map(values) });
        if (created && this.#fsync) await syncDir(this.#dir);
        return created;
      };
      // A bound session is created under its lock, so listByUser never prunes its marker in between.
      return user === undefined ? write() : this.#locks.run(hash, write);
    });
  }

  read(sid: string): Promise<StoredSession | undefined> {
    return this.#guard('read', async () => {
      const record = await this.#loadOrReport(hashId(sid));
      return record && { values: record.values, createdAt: record.createdAt, expiresAt: record.expiresAt };
    });
  }

  update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    return this.#change('update', sid, changes, expiresAt, now);
  }

  /**
   * Under the locks of both sessions (taken in hash order, so two moves never
   * wait for each other): reads `from`, links the new file `to` (refused if it
   * exists: `create` does not lock), then deletes `from`. A concurrent update
   * of `from` either ran before and is carried over, or runs after and finds
   * no session. A crash between the link and the delete leaves both sessions,
   * never none.
   */
  move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    return this.#guard('move', () => {
      const [fromHash, toHash] = [hashId(from), hashId(to)];
      return this.#withLocks([fromHash, toHash], async () => {
        const record = await this.#loadOrReport(fromHash);
        if (record === undefined || record.expiresAt <= now) return undefined;
        const values = record.values;
        const before = userOf(values);
        for (const [key, json] of changes) {
          if (json === undefined) values.delete(key);
          else values.set(key, json);
        }
        const after = changes.has(USER_KEY) ? userOf(values) : before;
        if (after !== undefined) await this.#mark(after, toHash);
        if (!(await this.#link(toHash, { sid: to, createdAt, expiresAt, values: new Map(values) }))) return false;
        await unlinkIfPresent(this.#file(fromHash));
        if (this.#fsync) await syncDir(this.#dir);
        if (before !== undefined) await this.#unmark(before, fromHash);
        return values;
      });
    });
  }

  touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#change('touch', sid, new Map(), expiresAt, now);
  }

  destroy(sid: string): Promise<void> {
    return this.#guard('destroy', () => {
      const hash = hashId(sid);
      // Under the lock: an update between its read and its rename would otherwise bring the file back.
      return this.#locks.run(hash, async () => {
        // Its user, to remove its marker too; one that cannot be read is left to listByUser to prune.
        const user = await this.#load(hash).then((record) => (record ? userOf(record.values) : undefined), () => undefined);
        if ((await unlinkIfPresent(this.#file(hash))) && this.#fsync) await syncDir(this.#dir);
        if (user !== undefined) await this.#unmark(user, hash);
      });
    });
  }

  gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    return this.#guard('gc', async () => {
      let deleted = 0;
      const failures: unknown[] = [];
      for await (const names of this.#batches()) {
        // allSettled: one unreadable file must not stop the sweep; it is reported once the sweep is done.
        const results = await Promise.allSettled(names.map((name) => this.#collect(name, now)));
        for (const result of results) {
          if (result.status === 'rejected') failures.push(result.reason);
          else if (result.value !== undefined) {
            deleted += 1;
            onExpired?.(result.value);
          }
        }
      }
      if (deleted > 0 && this.#fsync) await syncDir(this.#dir);
      if (failures.length > 0) {
        throw new ProviderError(NAME, `gc deleted ${deleted} sessions but failed on ${failures.length} files: ${errorMessage(failures[0])}`, failures[0]);
      }
      return deleted;
    });
  }

  count(now: number): Promise<number> {
    return this.#guard('count', async () => {
      let live = 0;
      for await (const names of this.#batches()) {
        const records = await Promise.all(names.map((name) => this.#loadSessionFile(name)));
        for (const record of records) if (record !== undefined && record.expiresAt > now) live += 1;
      }
      return live;
    });
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    this.#assertOpen('entries');
    try {
      for await (const names of this.#batches()) {
        const records = await Promise.all(names.map((name) => this.#loadSessionFile(name)));
        for (const record of records) if (record !== undefined && record.expiresAt > now) yield record;
      }
    } catch (err) {
      throw wrap('entries', this.#dir, err);
    }
  }

  /**
   * The live sessions bound to `userId`: the markers in its folder, each
   * checked against its session file. Markers that no longer match are deleted
   * (under the session's lock, after a second look).
   */
  listByUser(userId: string, now: number): Promise<StoredEntry[]> {
    return this.#guard('listByUser', async () => {
      let names: string[];
      try {
        names = await readdir(this.#userDir(userId));
      } catch (err) {
        if (errorCode(err) === 'ENOENT') return [];
        throw err;
      }
      const found: StoredEntry[] = [];
      for (let i = 0; i < names.length; i += BATCH) {
        await Promise.all(
          names.slice(i, i + BATCH).map(async (name) => {
            const match = SESSION_FILE.exec(name);
            if (match === null) return;
            const record = await this.#loadOrReport(match[1]);
            if (record === undefined || userOf(record.values) !== userId) await this.#prune(userId, match[1]);
            else if (record.expiresAt > now) found.push(record); // an expired one goes with its session, at gc
          }),
        );
      }
      return found;
    });
  }

  /** Waits for queued writes (so no lock file is left behind), then refuses new calls. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#locks.idle();
  }

  /** update and touch: rewrite the file under the session's lock, only while it is live. */
  #change(op: string, sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    return this.#guard(op, () => {
      const hash = hashId(sid);
      return this.#locks.run(hash, async () => {
        const record = await this.#loadOrReport(hash);
        if (record === undefined || record.expiresAt <= now) return false;
        const rebinds = changes.has(USER_KEY);
        const before = rebinds ? userOf(record.values) : undefined;
        for (const [key, json] of changes) {
          if (json === undefined) record.values.delete(key);
          else record.values.set(key, json);
        }
        record.expiresAt = expiresAt;
        const after = rebinds ? userOf(record.values) : undefined;
        if (after !== undefined) await this.#mark(after, hash); // before the session, as in create
        await this.#replace(hash, record);
        if (before !== undefined && before !== after) await this.#unmark(before, hash);
        return true;
      });
    });
  }

  /** Runs `fn` holding the lock of every name, taken one by one in sorted order (no deadlock between two callers). */
  #withLocks<T>(names: string[], fn: () => Promise<T>): Promise<T> {
    const [first, ...rest] = [...new Set(names)].sort();
    return this.#locks.run(first, () => (rest.length === 0 ? fn() : this.#withLocks(rest, fn)));
  }

  // --- sessions by user ----------------------------------------------------

  #userDir(user: string): string {
    return join(this.#dir, USERS_DIR, createHash('sha256').update(user, 'utf8').digest('base64url'));
  }

  /** Writes the marker of session `hash` in `user`'s folder (creating it), durably when `fsync`. Call it holding the session's lock. */
  async #mark(user: string, hash: string): Promise<void> {
    const dir = this.#userDir(user);
    const marker = join(dir, `${hash}.json`);
    let madeDir = false;
    for (let attempt = 1; ; attempt += 1) {
      try {
        await (await open(marker, 'wx', 0o600)).close();
        break;
      } catch (err) {
        const code = errorCode(err);
        if (code === 'EEXIST') return; // marked already
        // The folder is missing: never made, or removed as another writer emptied it. Make it and retry.
        if (code !== 'ENOENT' || attempt >= MARK_ATTEMPTS) throw err;
        madeDir = (await mkdir(dir, { recursive: true, mode: 0o700 })) !== undefined || madeDir;
      }
    }
    if (!this.#fsync) return;
    await syncDir(dir);
    if (madeDir) {
      await syncDir(join(this.#dir, USERS_DIR));
      await syncDir(this.#dir);
    }
  }

  /**
   * Deletes the marker of session `hash` from `user`'s folder, and the folder once empty. Never
   * rejects: the session write it follows succeeded, and a marker left behind is pruned when met.
   */
  async #unmark(user: string, hash: string): Promise<void> {
    const dir = this.#userDir(user);
    try {
      await unlinkIfPresent(join(dir, `${hash}.json`));
      await rmdir(dir);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOENT') return; // the user has other sessions, or it is gone
      this.#report(new ProviderError(NAME, `could not delete a sessions-by-user marker in ${dir}: ${errorMessage(err)}`, err));
    }
  }

  /** Deletes `user`'s marker of session `hash` if, looked at again under the session's lock, it is not bound to `user`. */
  #prune(user: string, hash: string): Promise<void> {
    return this.#locks.run(hash, async () => {
      const record = await this.#load(hash);
      if (record && userOf(record.values) === user) return; // bound meanwhile
      await this.#unmark(user, hash);
    });
  }

  // --- files -------------------------------------------------------------

  /** Writes the new file of session `hash`; resolves `false`, writing nothing, when it exists. */
  async #link(hash: string, record: FileRecord): Promise<boolean> {
    const temp = await this.#writeTemp(hash, record);
    try {
      // link() fails with EEXIST instead of replacing: an existing session is never overwritten.
      await link(temp, this.#file(hash));
      return true;
    } catch (err) {
      if (errorCode(err) === 'EEXIST') return false;
      throw err;
    } finally {
      await unlink(temp).catch(() => undefined); // a leftover is swept by gc()
    }
  }

  #file(hash: string): string {
    return join(this.#dir, `${hash}.json`);
  }

  /** The session in file `hash`; `undefined` when absent, `null` when corrupt. */
  async #load(hash: string): Promise<FileRecord | null | undefined> {
    let text: string;
    try {
      text = await readFile(this.#file(hash), 'utf8');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    const record = decodeRecord(text);
    // The id inside must hash to the file's name: a copied or renamed file is not that session.
    return record !== undefined && hashId(record.sid) === hash ? record : null;
  }

  async #loadOrReport(hash: string): Promise<FileRecord | undefined> {
    const record = await this.#load(hash);
    if (record !== null) return record;
    this.#report(new ProviderError(NAME, `ignored the corrupt session file ${hash}.json in ${this.#dir}`));
    return undefined;
  }

  #loadSessionFile(name: string): Promise<FileRecord | undefined> {
    const match = SESSION_FILE.exec(name);
    return match ? this.#loadOrReport(match[1]) : Promise.resolve(undefined);
  }

  /** Writes `record` to a new temp file beside its final name (same folder, so rename/link stay atomic). */
  async #writeTemp(hash: string, record: FileRecord): Promise<string> {
    const temp = join(this.#dir, `${hash}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(temp, 'wx', 0o600); // sessions are secrets: owner-only
    let written = false;
    try {
      await handle.writeFile(encodeRecord(record));
      if (this.#fsync) await handle.sync();
      written = true;
    } finally {
      await handle.close();
      if (!written) await unlink(temp).catch(() => undefined);
    }
    return temp;
  }

  async #replace(hash: string, record: FileRecord): Promise<void> {
    const temp = await this.#writeTemp(hash, record);
    try {
      await rename(temp, this.#file(hash));
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    if (this.#fsync) await syncDir(this.#dir);
  }

  /** Deletes one directory entry if it is an expired session (resolving its id) or a crash's leftover temp file. */
  async #collect(name: string, now: number): Promise<string | undefined> {
    const match = SESSION_FILE.exec(name);
    if (match === null) {
      if (TEMP_FILE.test(name)) await this.#removeOldTemp(join(this.#dir, name), now);
      return undefined;
    }
    const hash = match[1];
    // Peek without the lock: most files are live and need nothing more.
    const peeked = await this.#load(hash);
    if (peeked === undefined || (peeked !== null && peeked.expiresAt > now)) return undefined;
    return this.#locks.run(hash, async () => {
      const record = await this.#load(hash); // again under the lock: an update may have just extended it
      if (record === undefined) return undefined;
      if (record === null) {
        // Moved aside rather than deleted, so it is reported once and can still be inspected.
        await rename(this.#file(hash), join(this.#dir, `${hash}.corrupt`));
        this.#report(new ProviderError(NAME, `moved the corrupt session file ${hash}.json to ${hash}.corrupt in ${this.#dir}`));
        return undefined;
      }
      if (record.expiresAt > now) return undefined;
      if (!(await unlinkIfPresent(this.#file(hash)))) return undefined;
      const user = userOf(record.values);
      if (user !== undefined) await this.#unmark(user, hash);
      return record.sid;
    });
  }

  async #removeOldTemp(path: string, now: number): Promise<void> {
    try {
      if ((await stat(path)).mtimeMs < now - TEMP_MAX_AGE_MS) await unlink(path);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
    }
  }

  /** Entry names of the folder in batches, streamed by `opendir`: a sweep never holds the whole listing. */
  async *#batches(): AsyncGenerator<string[]> {
    const dir = await opendir(this.#dir, { bufferSize: BATCH });
    let names: string[] = [];
    for await (const entry of dir) {
      names.push(entry.name);
      if (names.length === BATCH) {
        yield names;
        names = [];
      }
    }
    if (names.length > 0) yield names;
  }

  // --- errors ------------------------------------------------------------

  #assertOpen(op: string): void {
    if (this.#closed) throw new ProviderError(NAME, `${op}: the provider is closed`);
  }

  async #guard<T>(op: string, fn: () => Promise<T>): Promise<T> {
    this.#assertOpen(op);
    try {
      return await fn();
    } catch (err) {
      throw wrap(op, this.#dir, err);
    }
  }

  #report(err: Error): void {
    try {
      this.#onError(err);
    } catch {
      // A throwing reporter must not turn a handled problem into a failed request.
    }
  }
}

function checkOptions(options: FileOptions): void {
  if (options === null || typeof options !== 'object') throw new OptionError('file provider: options must be an object with a `dir`');
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw new OptionError(`file provider: unknown option ${key}`);
  }
  if (typeof options.dir !== 'string' || options.dir === '') {
    throw new OptionError(`file provider: option dir must be a non-empty string: ${String(options.dir)}`);
  }
  if (options.fsync !== undefined && typeof options.fsync !== 'boolean') {
    throw new OptionError(`file provider: option fsync must be a boolean: ${String(options.fsync)}`);
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new OptionError('file provider: option onError must be a function');
  }
  const stale = options.lockStaleMs;
  if (stale !== undefined && !(typeof stale === 'number' && Number.isFinite(stale) && stale > 0)) {
    throw new OptionError(`file provider: option lockStaleMs must be a positive number of milliseconds: ${String(stale)}`);
  }
}

/** File name of a session: hex SHA-256 of the id (fixed length, [0-9a-f] only). */
function hashId(sid: string): string {
  return createHash('sha256').update(sid, 'utf8').digest('hex');
}


function encodeRecord(record: FileRecord): string {
  const { sid, createdAt, expiresAt, values } = record;
  return JSON.stringify({ v: 1, sid, createdAt, expiresAt, values: valuesToObject(values) });
}

/** The record in `text`, or `undefined` when it is not valid JSON of the right shape (corrupt, truncated). */
function decodeRecord(text: string): FileRecord | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObject(raw)) return undefined;
  const { sid, createdAt, expiresAt } = raw;
  if (typeof sid !== 'string' || !isTime(createdAt) || !isTime(expiresAt)) return undefined;
  const values = valuesFromObject(raw.values);
  return values && { sid, createdAt, expiresAt, values };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/** Makes renames, links and unlinks in `dir` durable (POSIX: they live in the directory, not the file). */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // directories cannot be opened for fsync there
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function wrap(op: string, dir: string, err: unknown): ProviderError {
  return err instanceof ProviderError ? err : new ProviderError(NAME, `${op} failed in ${dir}: ${errorMessage(err)}`, err);
}
