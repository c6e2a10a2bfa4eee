import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { link, mkdir, open, opendir, readdir, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorCode, errorMessage, OptionError, ProviderError } from '../errors';
import { FileIndex, syncDir, type IndexEntry } from './file-index';
import { FileLocks } from './file-lock';
import { FolderOwnership } from './file-owner';
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
   * a live holder never comes near it. Also the heartbeat of the folder's
   * writers (`owner/members/`, refreshed every quarter of it): a writer silent
   * this long is taken for dead. Default `5000`.
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
/** gc looks for temp files left by a crash (a walk of the whole folder, names only) at most this often. */
const TEMP_SWEEP_EVERY_MS = TEMP_MAX_AGE_MS;
const SESSION_FILE = /^([0-9a-f]{64})\.json$/;
const TEMP_FILE = /^[0-9a-f]{64}\.[0-9a-f]{12}\.tmp$/;
/** The folder of the sessions-by-user markers, inside `dir`. */
const USERS_DIR = 'users';
/** Attempts at writing a marker while its user's folder is removed under it (emptied by another writer). */
const MARK_ATTEMPTS = 5;
/** Sessions remembered by a process that owns its folder, so a write need not read the file first. */
const CACHE_MAX = 10_000;
/** First read of a session file: most are far smaller. */
const READ_CHUNK = 16 * 1024;

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
 * overlaps the old process) can share the folder. Pick it for a single host
 * (`redis`/`postgres` for several hosts); `count()` stays cheap at 100,000
 * sessions and more, while `entries()` and `listByUser()` read one file per
 * session they return.
 *
 * File names are the SHA-256 of the id, so no id (`../x`, NUL, 10 kB) can name
 * a path outside the folder, and ids that differ only in case stay apart on
 * case-insensitive file systems (macOS, Windows). Files are replaced by
 * write-to-temp + rename, so a reader sees the old or the new file, never half.
 * Needs a local file system with hard links (`create` is `link()`, which
 * refuses an existing name).
 *
 * Writers: per-key changes of one session are serialised by a {@link FileLocks}
 * lock (a promise queue in this process, plus a lock file while the folder is
 * shared), so concurrent updates of different keys all survive. A process
 * alone among the folder's writers owns it ({@link FolderOwnership},
 * `owner/`; a process joins the writers at its first change, so one that only
 * reads, such as the CLI's `count`, never disturbs the owner): it skips lock
 * files and remembers the sessions it wrote (up to 10,000), so an update is a
 * temp file written and renamed plus one rename of its index entry and a
 * 16-byte journal append (shared by the writes of one event-loop turn) —
 * instead of a lock file created, checked and deleted and the session file
 * read first. When another process starts writing, the owner hands over
 * (waiting for the writes it has running) before the newcomer writes
 * anything; when it is alone again it takes the folder back. After a crash,
 * the next process waits up to `lockStaleMs` for the dead owner's heartbeat
 * to go stale, as it would for a lock file the crash left.
 *
 * Expiry index (`index/`, see {@link FileIndex}): each session has an empty
 * entry `index/<5-minute bucket>/<expiresAt>.<hash>`, written before the
 * session file, moved as its expiry moves, removed after it. Every change of
 * an entry appends `(expiresAt, ±1)` to a journal (`index/journal/`, see
 * `ExpiryJournal` in file-journal.ts), so `count()` reads only what was appended since its
 * last call (about a millisecond at 100,000 sessions). `gc()` pages through
 * the buckets that hold expired entries and claims each by a rename, so with
 * several processes on the folder each expired session is deleted once.
 * The session files stay the truth: a crash can leave an entry stale (a count
 * off by one until its expiry passes, put right when gc meets it), never a
 * session without an entry. A folder written before the index existed gets
 * one on first use of `count()`, `entries()` or `gc()` (one read of every
 * session file, once). Every process sharing a folder must run a version that
 * keeps the index: sessions created by an older one are not counted nor
 * collected (delete `index/` to have it rebuilt).
 *
 * Sessions by user: a session bound to a user (its values hold `USER_KEY`)
 * has an empty marker file `users/<SHA-256 of the user id, base64url>/<its
 * file name>`, written before the session file (under the session's lock)
 * and removed after it. The session file stays the truth: `listByUser` reads
 * the markers of that user, then each session file, and returns only the live
 * sessions still bound to that user; a marker whose session is gone or bound
 * elsewhere (left by a crash, a failed write or a sweep) is deleted when met.
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
  /** The expiry index (`index/`): count, gc and entries page through it instead of every session file. */
  readonly #index: FileIndex;
  /** The `now` of the last gc that walked the folder for leftover temp files. */
  #lastTempSweep = -Infinity;
  /**
   * Whether this process alone writes the folder (lock files skipped), or shares it. Joined at the
   * first change, so a process that only reads (a `count` from the CLI) never makes the owner hand over.
   */
  #ownership: FolderOwnership | undefined;
  readonly #staleMs: number;
  /**
   * While this process owns the folder: the sessions as its own locked writes left them (so a
   * write need not read the file first). Filled and used only by work that runs without a lock
   * file; cleared when the folder is shared.
   */
  readonly #cache = new Map<string, FileRecord>();
  #closed = false;

  constructor(options: FileOptions) {
    checkOptions(options);
    this.#dir = resolve(options.dir); // fixed now: a later process.chdir() must not move the sessions
    this.#fsync = options.fsync ?? false;
    this.#onError = options.onError ?? ((err) => process.emitWarning(err));
    const staleMs = options.lockStaleMs ?? DEFAULT_LOCK_STALE_MS;
    this.#locks = new FileLocks(this.#dir, staleMs, (err) => this.#report(err));
    this.#index = new FileIndex(this.#dir, staleMs, { fsync: this.#fsync, onError: (err) => this.#report(err) });
    try {
      mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new ProviderError(NAME, `cannot create the folder ${this.#dir}: ${errorMessage(err)}`, err);
    }
    this.#index.markReadyIfEmpty(SESSION_FILE);
    this.#staleMs = staleMs;
    this.#locks.setExclusive(() => this.#ownership?.exclusive ?? false);
  }

  create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    return this.#guardWrite('create', () => {
      const hash = hashId(sid);
      const user = userOf(values);
      const write = async (): Promise<boolean> => {
        // The marker first: a crash in between leaves a marker without its session (pruned when met),
        // never a bound session its user cannot find. A refused create leaves one just the same.
        if (user !== undefined) await this.#mark(user, hash);
        // The index entry first too: a crash leaves at worst an entry without a session, which gc drops.
        const { created, added } = await this.#linkIndexed(hash, { sid, createdAt, expiresAt, values: new Map(values) });
        if (created && this.#fsync) await syncDir(this.#dir);
        if (created) this.#cache.delete(hash); // a session of that name deleted behind our back is not this one
        if (!created && added) await this.#dropRefusedEntry(hash, expiresAt);
        return created;
      };
      // A bound session is created under its lock, so listByUser never prunes its marker in between.
      return user === undefined ? write() : this.#locks.run(hash, write);
    });
  }

  read(sid: string): Promise<StoredSession | undefined> {
    return this.#guard('read', async () => {
      const hash = hashId(sid);
      const record = await this.#loadOrReport(hash);
      if (record === undefined) this.#cache.delete(hash); // gone or corrupt on disk: never answered from memory
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
    return this.#guardWrite('move', () => {
      const [fromHash, toHash] = [hashId(from), hashId(to)];
      return this.#withLocks([fromHash, toHash], async (exclusive) => {
        const record = await this.#lockedLoad(fromHash, exclusive);
        if (record === undefined || record.expiresAt <= now) return undefined;
        const values = record.values;
        const before = userOf(values);
        for (const [key, json] of changes) {
          if (json === undefined) values.delete(key);
          else values.set(key, json);
        }
        const after = changes.has(USER_KEY) ? userOf(values) : before;
        if (after !== undefined) await this.#mark(after, toHash);
        const { created, added } = await this.#linkIndexed(toHash, { sid: to, createdAt, expiresAt, values: new Map(values) });
        if (!created) {
          if (added) await this.#dropRefusedEntry(toHash, expiresAt);
          return false;
        }
        this.#cache.delete(fromHash);
        await unlinkIfPresent(this.#file(fromHash));
        if (this.#fsync) await syncDir(this.#dir);
        await this.#index.remove(fromHash, record.expiresAt);
        if (before !== undefined) await this.#unmark(before, fromHash);
        if (exclusive) this.#remember(toHash, { sid: to, createdAt, expiresAt, values });
        return values;
      });
    });
  }

  touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#change('touch', sid, new Map(), expiresAt, now);
  }

  destroy(sid: string): Promise<void> {
    return this.#guardWrite('destroy', () => {
      const hash = hashId(sid);
      // Under the lock: an update between its read and its rename would otherwise bring the file back.
      return this.#locks.run(hash, async (exclusive) => {
        // Its user and expiry, to remove its marker and index entry too; those of a file that cannot be
        // read are left to listByUser and gc to prune.
        const record = (exclusive ? this.#fromCache(hash) : undefined) ?? (await this.#load(hash).catch(() => undefined));
        this.#cache.delete(hash);
        if ((await unlinkIfPresent(this.#file(hash))) && this.#fsync) await syncDir(this.#dir);
        if (!record) return;
        await this.#index.remove(hash, record.expiresAt);
        const user = userOf(record.values);
        if (user !== undefined) await this.#unmark(user, hash);
      });
    });
  }

  /**
   * Pages through the index buckets that hold expired entries (never through
   * live sessions), claiming each expired entry by a rename: with several
   * processes on the folder, each expired session is deleted, and reported to
   * `onExpired`, by exactly one of them. A claimed session is checked under
   * its lock: one extended meanwhile gets its entry back, a corrupt file is
   * moved aside. At its first run, then at most hourly, it also walks the
   * folder's names for temp files left by a crash.
   */
  gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    return this.#guardWrite('gc', async () => {
      await this.#ensureIndex();
      let deleted = 0;
      const failures: unknown[] = [];
      await this.#index.claimExpired(now, async (claimed, claimDir) => {
        // allSettled: one unreadable file must not stop the sweep; it is reported once the sweep is done.
        const results = await Promise.allSettled(claimed.map((entry) => this.#collect(entry, claimDir, now)));
        for (const result of results) {
          if (result.status === 'rejected') failures.push(result.reason);
          else if (result.value !== undefined) {
            deleted += 1;
            onExpired?.(result.value);
          }
        }
      });
      if (now - this.#lastTempSweep >= TEMP_SWEEP_EVERY_MS) {
        this.#lastTempSweep = now;
        for await (const names of this.#batches()) {
          const results = await Promise.allSettled(names.filter((name) => TEMP_FILE.test(name)).map((name) => this.#removeOldTemp(join(this.#dir, name), now)));
          for (const result of results) if (result.status === 'rejected') failures.push(result.reason);
        }
      }
      if (deleted > 0 && this.#fsync) await syncDir(this.#dir);
      if (failures.length > 0) {
        throw new ProviderError(NAME, `gc deleted ${deleted} sessions but failed on ${failures.length} files: ${errorMessage(failures[0])}`, failures[0]);
      }
      return deleted;
    });
  }

  /**
   * Answered from the index without opening a session file: a stat of each
   * bucket folder, and a read of the names of those that changed since the
   * last call. A crash between a session's write and its entry's may leave it
   * miscounted until gc meets the entry.
   */
  count(now: number): Promise<number> {
    return this.#guard('count', async () => {
      await this.#ensureIndex();
      return this.#index.count(now);
    });
  }

  /** The live sessions, a page of 64 index entries at a time, each checked against its file. */
  async *entries(now: number): AsyncIterable<StoredEntry> {
    this.#assertOpen('entries');
    try {
      await this.#ensureIndex();
      for await (const page of this.#index.live(now)) {
        const records = await Promise.all(page.map((entry) => this.#loadOrReport(entry.hash)));
        for (const [i, record] of records.entries()) {
          // A session is listed by the entry that matches its file, so a stale duplicate never lists it twice.
          if (record !== undefined && record.expiresAt === page[i].expiresAt && record.expiresAt > now) yield record;
        }
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
    await this.#index.close();
    await this.#ownership?.close();
    this.#cache.clear();
  }

  /** update and touch: rewrite the file under the session's lock, only while it is live. */
  #change(op: string, sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    return this.#guardWrite(op, () => {
      const hash = hashId(sid);
      return this.#locks.run(hash, async (exclusive) => {
        const record = await this.#lockedLoad(hash, exclusive);
        if (record === undefined || record.expiresAt <= now) return false;
        const rebinds = changes.has(USER_KEY);
        const before = rebinds ? userOf(record.values) : undefined;
        for (const [key, json] of changes) {
          if (json === undefined) record.values.delete(key);
          else record.values.set(key, json);
        }
        const expiredAt = record.expiresAt;
        record.expiresAt = expiresAt;
        const after = rebinds ? userOf(record.values) : undefined;
        if (after !== undefined) await this.#mark(after, hash); // before the session, as in create
        this.#cache.delete(hash); // until the write is done: a failed one must not be remembered
        // The entry moves beside the write. Whatever happens to either, the entry stays at the old
        // or the new expiry, never lost; one left at the old expiry is put right when gc claims it.
        const [, moved] = await Promise.all([
          this.#replace(hash, record),
          this.#index.move(hash, expiredAt, expiresAt).catch((err: unknown) => err),
        ]);
        if (moved !== undefined) this.#report(new ProviderError(NAME, `could not move the index entry of ${hash}.json in ${this.#dir}: ${errorMessage(moved)}`, moved));
        if (exclusive) this.#remember(hash, record);
        if (before !== undefined && before !== after) await this.#unmark(before, hash);
        return true;
      });
    });
  }

  /**
   * Runs `fn` holding the lock of every name, taken one by one in sorted order (no deadlock between
   * two callers); `fn` is told whether all of them were taken without a lock file.
   */
  #withLocks<T>(names: string[], fn: (exclusive: boolean) => Promise<T>, exclusive = true): Promise<T> {
    const [first, ...rest] = [...new Set(names)].sort();
    return this.#locks.run(first, (alone) => (rest.length === 0 ? fn(exclusive && alone) : this.#withLocks(rest, fn, exclusive && alone)));
  }

  // --- the owner's memory of its sessions ---------------------------------

  /**
   * The session, for a write that holds its lock: from memory when this process owns the folder
   * and wrote it last, otherwise from its file (then remembered, if owner).
   */
  async #lockedLoad(hash: string, exclusive: boolean): Promise<FileRecord | undefined> {
    if (!exclusive) {
      this.#cache.delete(hash);
      return this.#loadOrReport(hash);
    }
    const cached = this.#fromCache(hash);
    if (cached !== undefined) return cached;
    const record = await this.#loadOrReport(hash);
    if (record !== undefined) this.#remember(hash, record);
    return record;
  }

  /** A copy of the remembered session (the caller changes it). */
  #fromCache(hash: string): FileRecord | undefined {
    const cached = this.#cache.get(hash);
    return cached && { ...cached, values: new Map(cached.values) };
  }

  #remember(hash: string, record: FileRecord): void {
    this.#cache.delete(hash); // to the end of the insertion order: the oldest is evicted first
    this.#cache.set(hash, { ...record, values: new Map(record.values) });
    if (this.#cache.size > CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value as string);
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

  /**
   * Writes the new file of session `hash`, and its index entry first: the entry and the temp
   * file are written side by side, the session file linked only once both are there (never a
   * session without its entry). `created` is `false`, nothing written, when the session exists;
   * `added` says whether this call made the entry.
   */
  async #linkIndexed(hash: string, record: FileRecord): Promise<{ created: boolean; added: boolean }> {
    const [added, temp] = await Promise.allSettled([this.#index.add(hash, record.expiresAt), this.#writeTemp(hash, record)]);
    if (added.status === 'rejected') {
      if (temp.status === 'fulfilled') await unlink(temp.value).catch(() => undefined);
      throw added.reason;
    }
    if (temp.status === 'rejected') {
      if (added.value) await this.#index.remove(hash, record.expiresAt).catch(() => undefined);
      throw temp.reason;
    }
    return { created: await this.#linkTemp(hash, temp.value), added: added.value };
  }

  /** Links the written `temp` as the file of session `hash`, unless one exists; the temp file goes in any case. */
  async #linkTemp(hash: string, temp: string): Promise<boolean> {
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
    const text = await readSmallFile(this.#file(hash));
    if (text === undefined) return undefined;
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

  /**
   * Settles one index entry that gc claimed, under the session's lock: deletes the session if it
   * is expired (resolving its id), re-indexes it if it was extended meanwhile, moves a corrupt
   * file aside; the claimed entry is released in every case.
   */
  #collect(entry: IndexEntry, claimDir: string, now: number): Promise<string | undefined> {
    const { hash } = entry;
    return this.#locks.run(hash, async () => {
      this.#cache.delete(hash); // gc is rare: the next write reads the file again
      const record = await this.#load(hash);
      let deleted: string | undefined;
      if (record === null) {
        // Moved aside rather than deleted, so it is reported once and can still be inspected.
        await rename(this.#file(hash), join(this.#dir, `${hash}.corrupt`));
        this.#report(new ProviderError(NAME, `moved the corrupt session file ${hash}.json to ${hash}.corrupt in ${this.#dir}`));
      } else if (record !== undefined && record.expiresAt > now) {
        await this.#index.add(hash, record.expiresAt); // extended after its entry was written: a stale entry
      } else if (record !== undefined) {
        this.#cache.delete(hash);
        if (await unlinkIfPresent(this.#file(hash))) deleted = record.sid;
        if (record.expiresAt !== entry.expiresAt) await this.#index.remove(hash, record.expiresAt);
        const user = userOf(record.values);
        if (user !== undefined) await this.#unmark(user, hash);
      }
      await this.#index.release(claimDir, entry);
      return deleted;
    });
  }

  /**
   * A refused create or move added an index entry for a session that exists already: remove it,
   * unless the existing session expires at that same time (the entry is then its own).
   */
  async #dropRefusedEntry(hash: string, expiresAt: number): Promise<void> {
    const existing = await this.#load(hash).catch(() => undefined);
    if (existing?.expiresAt !== expiresAt) await this.#index.remove(hash, expiresAt);
  }

  /**
   * The index, built on first use of a folder written before it existed: each session file gets
   * its entry, then is read again, and an entry that no longer matches (the session was written
   * or deleted meanwhile, by a process that keeps the index) is taken back.
   */
  #ensureIndex(): Promise<void> {
    return this.#index.ensure(async () => {
      for await (const names of this.#batches()) {
        await Promise.all(
          names.map(async (name) => {
            const match = SESSION_FILE.exec(name);
            if (match === null) return;
            const hash = match[1];
            const record = await this.#loadOrReport(hash).catch((err: unknown) => {
              this.#report(new ProviderError(NAME, `could not index the session file ${name} in ${this.#dir}: ${errorMessage(err)}`, err));
              return undefined; // left out of the index: found again by read, never counted nor collected
            });
            if (record === undefined) return;
            if (!(await this.#index.add(hash, record.expiresAt))) return;
            const again = await this.#load(hash).catch(() => undefined);
            if (again?.expiresAt !== record.expiresAt) await this.#index.remove(hash, record.expiresAt);
          }),
        );
      }
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

  /**
   * `#guard` for a change: joins the folder's writers at the first one, and waits, if another
   * process owns the folder, for it to hand over.
   */
  #guardWrite<T>(op: string, fn: () => Promise<T>): Promise<T> {
    return this.#guard(op, () => {
      this.#ownership ??= this.#join();
      const waiting = this.#ownership.whenWritable();
      return waiting === undefined ? fn() : waiting.then(fn);
    });
  }

  #join(): FolderOwnership {
    try {
      return new FolderOwnership(this.#dir, this.#staleMs, {
        onError: (err) => this.#report(err),
        drain: () => this.#locks.drainUnlocked(),
        onLost: () => this.#cache.clear(),
      });
    } catch (err) {
      throw new ProviderError(NAME, `cannot join the writers of the folder ${this.#dir}: ${errorMessage(err)}`, err);
    }
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


/** The text of a small file in one read (no `fstat`, unlike `readFile`); `undefined` when it does not exist. */
async function readSmallFile(path: string): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const chunks: Buffer[] = [];
    for (let size = READ_CHUNK; ; size *= 4) {
      const chunk = Buffer.allocUnsafe(size);
      const { bytesRead } = await handle.read(chunk, 0, size, null);
      chunks.push(chunk.subarray(0, bytesRead));
      if (bytesRead < size) break; // end of file (a session file is one read, unless it is large)
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    await handle.close();
  }
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

function wrap(op: string, dir: string, err: unknown): ProviderError {
  return err instanceof ProviderError ? err : new ProviderError(NAME, `${op} failed in ${dir}: ${errorMessage(err)}`, err);
}
