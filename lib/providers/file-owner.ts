import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, statSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { link, readdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorCode, errorMessage, ProviderError } from '../errors';

const NAME = 'file';
/** The folder of the ownership files, inside the sessions folder. */
export const OWNER_DIR = 'owner';
const MEMBERS = 'members';
const OWNER_FILE = 'owner';
/** How often a waiting process looks again at the owner file (besides watching the folder). */
const WAIT_POLL_MS = 10;

/**
 * Who writes the sessions folder: one process alone, or several.
 *
 * Every open `FileProvider` is a member: `owner/members/<pid>.<random>`, an
 * empty file whose mtime it refreshes (its heartbeat) every `staleMs / 4`. A
 * member whose heartbeat is older than `staleMs` is gone (crashed, or closed
 * without cleaning up) and is deleted by whoever sees it.
 *
 * A member that finds itself alone writes `owner/owner` (`O_EXCL`, its name
 * inside), then lists the members again: still alone, it owns the folder
 * and writes without lock files (its writes to one session still queue in
 * this process). Each side writes its own file before it reads the other's,
 * so a process that joins at the same moment is seen by one side at least.
 *
 * A newcomer that finds an owner waits for it to hand over before its first
 * write. The owner watches `owner/members` (and looks again at every
 * heartbeat): when another member appears it stops skipping lock files,
 * waits for the writes it started without one, and deletes `owner/owner`.
 * From then on every process takes the per-session lock files. When the
 * others have gone, the one left takes the folder back at its next heartbeat.
 *
 * The owner skips lock files only while its own heartbeat is recent (less than
 * `staleMs / 2` old): a process whose event loop stalled long enough to be
 * taken for dead uses lock files until it has checked that it still owns the
 * folder. As with a stale lock file, a process that stalls longer than
 * `staleMs` in the middle of one write may race with the process that took
 * over.
 */
export class FolderOwnership {
  readonly #dir: string;
  readonly #members: string;
  readonly #ownerFile: string;
  readonly #id: string;
  readonly #staleMs: number;
  readonly #onError: (err: Error) => void;
  /** Waits for the writes this process started without a lock file (called before handing over). */
  readonly #drain: () => Promise<void>;
  /** Called when this process stops owning the folder (the owner's caches are then stale). */
  readonly #onLost: () => void;
  #owner = false;
  #beatAt = 0;
  #waiting: Promise<void> | undefined;
  #checking: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #watcher: FSWatcher | undefined;
  #closed = false;

  constructor(dir: string, staleMs: number, hooks: { onError: (err: Error) => void; drain: () => Promise<void>; onLost: () => void }) {
    this.#dir = join(dir, OWNER_DIR);
    this.#members = join(this.#dir, MEMBERS);
    this.#ownerFile = join(this.#dir, OWNER_FILE);
    // Its staleness in its name: processes with different `lockStaleMs` judge each other rightly.
    this.#id = `${process.pid}.${randomBytes(6).toString('hex')}.${staleMs}`;
    this.#staleMs = staleMs;
    this.#onError = hooks.onError;
    this.#drain = hooks.drain;
    this.#onLost = hooks.onLost;
    mkdirSync(this.#members, { recursive: true, mode: 0o700 });
    writeFileSync(join(this.#members, this.#id), '', { flag: 'wx', mode: 0o600 });
    this.#beatAt = Date.now();
    this.#joinSync();
    this.#timer = setInterval(() => void this.#check(), Math.max(10, Math.floor(staleMs / 4)));
    this.#timer.unref();
    try {
      this.#watcher = watch(this.#members, () => void this.#check());
      this.#watcher.unref();
      this.#watcher.on('error', () => this.#watcher?.close());
    } catch {
      // No watching here: the heartbeat timer looks just the same, only later.
    }
  }

  /** Whether writes may skip lock files now: this process owns the folder and its heartbeat is fresh. */
  get exclusive(): boolean {
    return this.#owner && Date.now() - this.#beatAt < this.#staleMs / 2;
  }

  /** Resolves when this process may write: at once, unless an owner has not handed the folder over yet. */
  whenWritable(): Promise<void> | undefined {
    return this.#waiting;
  }

  /** Stops the heartbeat and leaves: deletes the owner file (if ours) and the member file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#watcher?.close();
    await this.#checking?.catch(() => undefined);
    if (this.#owner) {
      this.#owner = false;
      await unlink(this.#ownerFile).catch(() => undefined);
    }
    await unlink(join(this.#members, this.#id)).catch(() => undefined);
  }

  /** At construction: own the folder if alone, otherwise wait for its owner (if any) to hand over. */
  #joinSync(): void {
    const others = this.#liveOthersSync();
    if (others.length === 0) {
      try {
        writeFileSync(this.#ownerFile, this.#id, { flag: 'wx', mode: 0o600 });
        if (this.#liveOthersSync().length === 0) {
          this.#owner = true;
          return;
        }
        unlinkSync(this.#ownerFile); // someone joined in between: nobody owns it
        return;
      } catch (err) {
        if (errorCode(err) !== 'EEXIST') throw err;
      }
    }
    this.#waiting = this.#waitForHandover();
  }

  #liveOthersSync(): string[] {
    const now = Date.now();
    return readdirSync(this.#members).filter((name) => {
      if (name === this.#id) return false;
      try {
        if (now - statSync(join(this.#members, name)).mtimeMs < staleMsOf(name)) return true;
        unlinkSync(join(this.#members, name)); // gone without cleaning up
      } catch {
        // deleted meanwhile
      }
      return false;
    });
  }

  async #liveOthers(): Promise<string[]> {
    const now = Date.now();
    const names = await readdir(this.#members);
    const alive = await Promise.all(
      names.map(async (name) => {
        if (name === this.#id) return false;
        try {
          if (now - (await stat(join(this.#members, name))).mtimeMs < staleMsOf(name)) return true;
          await unlink(join(this.#members, name));
        } catch {
          // deleted meanwhile
        }
        return false;
      }),
    );
    return names.filter((_, i) => alive[i]);
  }

  /** Resolves once no live member owns the folder (the owner handed over, closed, or went silent past `staleMs`). */
  async #waitForHandover(): Promise<void> {
    try {
      for (;;) {
        let holder: string;
        try {
          holder = await readFile(this.#ownerFile, 'utf8');
        } catch (err) {
          if (errorCode(err) === 'ENOENT') return;
          throw err;
        }
        if (holder === this.#id) return;
        // An empty file is a claim being written (created, its name not in it yet): look again.
        if (holder !== '' && !(await this.#alive(holder))) {
          await this.#breakOwner(holder);
          return;
        }
        await sleep(WAIT_POLL_MS);
      }
    } catch (err) {
      throw new ProviderError(NAME, `could not learn who owns the folder ${this.#dir}: ${errorMessage(err)}`, err);
    } finally {
      this.#waiting = undefined;
    }
  }

  async #alive(member: string): Promise<boolean> {
    try {
      return Date.now() - (await stat(join(this.#members, member))).mtimeMs < staleMsOf(member);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  /** Deletes the owner file of a dead member, unless it was replaced meanwhile (moved aside and checked, as stale locks are). */
  async #breakOwner(holder: string): Promise<void> {
    const aside = `${this.#ownerFile}.${randomBytes(6).toString('hex')}.stale`;
    try {
      await rename(this.#ownerFile, aside);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return;
      throw err;
    }
    const moved = await readFile(aside, 'utf8').catch(() => holder);
    // A live claim: put it back, unless another claim took its place meanwhile (link never replaces).
    if (moved !== holder) await link(aside, this.#ownerFile).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
  }

  /** The heartbeat, and every change of the members folder: hand over, or take the folder, as the members say. */
  #check(): Promise<void> {
    this.#checking ??= this.#look()
      .catch((err: unknown) => this.#onError(new ProviderError(NAME, `could not check who shares the folder ${this.#dir}: ${errorMessage(err)}`, err)))
      .finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #look(): Promise<void> {
    if (this.#closed) return;
    const mine = join(this.#members, this.#id);
    const at = new Date();
    try {
      await utimes(mine, at, at);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      // Taken for dead (our loop stalled past staleMs): whatever we held, another may have taken.
      await this.#lose();
      await writeFile(mine, '', { flag: 'w', mode: 0o600 });
    }
    this.#beatAt = at.getTime();
    const others = await this.#liveOthers();
    if (this.#owner) {
      if (others.length > 0 || (await readFile(this.#ownerFile, 'utf8').catch(() => '')) !== this.#id) await this.#lose();
      return;
    }
    if (others.length > 0 || this.#waiting !== undefined) return;
    // Alone and nobody owns it: take the folder (claim, then look at the members again).
    try {
      await writeFile(this.#ownerFile, this.#id, { flag: 'wx', mode: 0o600 });
    } catch (err) {
      if (errorCode(err) === 'EEXIST') {
        const holder = await readFile(this.#ownerFile, 'utf8').catch(() => '');
        if (holder !== this.#id && holder !== '' && !(await this.#alive(holder))) await this.#breakOwner(holder);
        return;
      }
      throw err;
    }
    if ((await this.#liveOthers()).length === 0 && !this.#closed) this.#owner = true;
    else await unlink(this.#ownerFile).catch(() => undefined);
  }

  /** Stops skipping lock files, waits for the writes that skipped one, then lets the others in. */
  async #lose(): Promise<void> {
    if (!this.#owner) return;
    this.#owner = false;
    this.#onLost();
    await this.#drain();
    const holder = await readFile(this.#ownerFile, 'utf8').catch(() => '');
    if (holder === this.#id) await unlink(this.#ownerFile).catch(() => undefined);
  }
}

/** The staleness a member declares in its name (`<pid>.<random>.<staleMs>`); 5 s for a name not of that form. */
function staleMsOf(member: string): number {
  const declared = Number(member.slice(member.lastIndexOf('.') + 1));
  return Number.isFinite(declared) && declared > 0 ? declared : 5000;
}
