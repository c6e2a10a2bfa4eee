// Only types at top level: `import { sessions } from 'session-manager'` must work without better-sqlite3.
import { closeSync, existsSync, openSync } from 'node:fs';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { errorMessage, OptionError, ProviderError } from '../errors';
import { USER_KEY, type Provider, type StoredEntry, type StoredSession } from './provider';
import { decodeValues, encodeValues } from './values-codec';
import { driverFailure } from './with-timeout';

/** Options of {@link SqliteProvider} (also its `providerOptions` under the name `'sqlite'`). Give `path` or `database`. */
/** A prepared statement, as much of better-sqlite3's as the provider uses. */
export interface SqliteStatement {
  readonly reader: boolean;
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  safeIntegers(toggle?: boolean): unknown;
}

/**
 * A better-sqlite3 `Database`, as much of it as the provider uses: structural,
 * so the published types compile without better-sqlite3's installed.
 */
export interface SqliteDatabase {
  readonly open: boolean;
  prepare(source: string): SqliteStatement;
  exec(source: string): unknown;
  pragma(source: string): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  transaction(fn: (...args: any[]) => unknown): { immediate: (...args: any[]) => any };
  close(): unknown;
}

export interface SqliteOptions {
  /**
   * Database file, created when missing (mode 0600, and so are its `-wal` and
   * `-shm` files: they hold sessions). The provider opens it (WAL mode) and closes it in `close()`.
   */
  path?: string;
  /**
   * An open better-sqlite3 `Database` of the app. The provider creates its table
   * in it, leaves its settings alone (enable WAL and a busy timeout yourself when
   * several processes share the file) and does not close it in `close()`.
   */
  database?: SqliteDatabase;
  /** Table name (letters, digits, `_`). Default `'sessions'`. */
  table?: string;
  /**
   * Milliseconds a statement waits for another process's write lock before
   * failing with SQLITE_BUSY; only for a database opened from `path`. Default `5000`.
   * better-sqlite3 is synchronous, so the wait blocks this process's event loop.
   */
  busyTimeoutMs?: number;
  /** Rows deleted per statement in `gc()`, which yields to the event loop between batches. Default `500`. */
  gcBatchSize?: number;
  /**
   * Called with a `ProviderError` for a row whose values are not valid JSON; the
   * session is then treated as absent. Default: `process.emitWarning`.
   */
  onError?: (err: Error) => void;
}

const NAME = 'sqlite';
const OPTION_NAMES = new Set(['path', 'database', 'table', 'busyTimeoutMs', 'gcBatchSize', 'onError']);
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** Rows per page of `entries()`: never all rows in memory, and no statement left open across `await`. */
const PAGE_SIZE = 200;

/** An update or touch waiting for its group commit. */
interface PendingWrite {
  op: 'create' | 'update' | 'touch';
  run: () => boolean;
  resolve: (written: boolean) => void;
  reject: (err: Error) => void;
}

interface Row {
  sid: string;
  values_json: string;
  created_at: number;
  expires_at: number;
}

/**
 * Stores sessions in one SQLite table through better-sqlite3 (an optional
 * dependency, loaded only when this provider is built from a `path`). One file,
 * no server, indexed expiry: `count()` and `gc()` stay cheap with many sessions,
 * and several processes on one host can share the file (WAL mode, busy timeout).
 * Not for several hosts: SQLite over a network file system is unsafe; use
 * `redis` or `postgres` there.
 *
 * Schema: `sessions(sid TEXT PRIMARY KEY, values_json TEXT, created_at INTEGER,
 * expires_at INTEGER, user_id TEXT)` plus an index on `expires_at` and one on
 * `(user_id, expires_at)` where `user_id` is set; `values_json` is a JSON object
 * mapping each key to the JSON text of its value. `user_id` repeats the JSON text
 * of the user key's value (`'"ann"'`; NULL without a user), written by the same
 * statement as `values_json`, so `listByUser` is an index lookup. A table made
 * before that column existed gets it (filled from `values_json`) when a provider
 * first opens it. Per-key changes are one `UPDATE` whose `json_patch` merges them
 * into the stored JSON under the write lock, so concurrent updates from any
 * process never lose a key; the creates, updates and touches made in one turn
 * of the event loop are committed together, in one transaction at its end (group
 * commit). Reads are synchronous (`readNow`): better-sqlite3 answers in this
 * process, so a request does not wait a turn of the event loop. A database the
 * provider opens runs in WAL mode with `synchronous = NORMAL`.
 *
 * @example
 * app.use(sessions({ provider: 'sqlite', providerOptions: { path: './sessions.db' } }));
 * // or share the app's database (it stays open after manager.close()):
 * app.use(sessions({ provider: new SqliteProvider({ database: db, table: 'web_sessions' }) }));
 */
export class SqliteProvider implements Provider {
  readonly name = NAME;
  readonly #db: SqliteDatabase;
  readonly #ownsDatabase: boolean;
  readonly #gcBatchSize: number;
  readonly #onError: (err: Error) => void;
  readonly #sql: ReturnType<typeof prepare>;
  readonly #moveImmediate: (
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ) => Map<string, string> | undefined | false;
  #closed = false;
  /** Creates, updates and touches waiting for the end of this turn of the event loop (see `#write`). */
  #pending: PendingWrite[] = [];
  #scheduled = false;
  readonly #writeAll: (batch: PendingWrite[]) => boolean[];

  constructor(options: SqliteOptions) {
    checkOptions(options);
    this.#gcBatchSize = options.gcBatchSize ?? 500;
    this.#onError = options.onError ?? ((err) => process.emitWarning(err));
    this.#ownsDatabase = options.database === undefined;
    this.#db = options.database ?? openDatabase(options.path!, options.busyTimeoutMs ?? 5000);
    try {
      this.#sql = prepare(this.#db, options.table ?? 'sessions');
      this.#moveImmediate = this.#db.transaction(this.#applyMove.bind(this)).immediate;
      this.#writeAll = this.#db.transaction((batch: PendingWrite[]) => batch.map((write) => write.run())).immediate;
    } catch (err) {
      if (this.#ownsDatabase) this.#db.close();
      throw driverFailure(NAME, 'preparing the sessions table', err);
    }
  }

  create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    // ON CONFLICT DO NOTHING: an existing row (live or expired) is left exactly as it is.
    const text = encodeValues(values);
    const userId = userOf(values);
    return this.#write('create', () => this.#sql.insert.run(sid, text, createdAt, expiresAt, userId).changes === 1);
  }

  read(sid: string): Promise<StoredSession | undefined> {
    return this.#run('read', () => this.#select(sid));
  }

  /** `read`, answered at once: better-sqlite3 is synchronous anyway, so the request needs no extra turn of the event loop. */
  readNow(sid: string): StoredSession | undefined {
    if (this.#closed) throw new ProviderError(NAME, 'read: the provider is closed');
    try {
      return this.#select(sid);
    } catch (err) {
      throw driverFailure(NAME, 'read', err);
    }
  }

  /**
   * One statement: SQLite merges the changes into the stored JSON itself
   * (`json_patch`, RFC 7396: a key set to `null` is removed, a string
   * replaces) under the database's write lock, so a concurrent update from any
   * process never loses a key. No row is read into JavaScript, parsed or
   * re-serialised. Committed with the other writes of this turn (see `#write`).
   */
  update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    const patch = patchOf(changes);
    const userChanged = changes.has(USER_KEY) ? 1 : 0;
    const userId = changes.get(USER_KEY) ?? null;
    return this.#write('update', () => {
      if (this.#sql.patch.run(patch, userChanged, userId, expiresAt, sid, now).changes === 1) return true;
      // Rare: the session is gone, or its row is corrupt (json_valid); only the latter is worth a report.
      const row = this.#sql.selectLive.get(sid, now) as Pick<Row, 'values_json'> | undefined;
      if (row !== undefined) this.#decodeValues(row.values_json);
      return false;
    });
  }

  /** One BEGIN IMMEDIATE transaction: no update of `from` (from any process) lands between our read and the delete. */
  move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    return this.#run('move', () => this.#moveImmediate(from, to, changes, createdAt, expiresAt, now));
  }

  touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#write('touch', () => this.#sql.touch.run(expiresAt, sid, now).changes === 1);
  }

  async destroy(sid: string): Promise<void> {
    await this.#run('destroy', () => this.#sql.destroy.run(sid));
  }

  async gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    let deleted = 0;
    for (;;) {
      // One bounded DELETE per batch, each its own short transaction, so no process waits long for the lock.
      const sids = await this.#run('gc', () => this.#sql.gcBatch.all(now, this.#gcBatchSize) as { sid: string }[]);
      deleted += sids.length;
      if (onExpired) for (const row of sids) onExpired(row.sid);
      if (sids.length < this.#gcBatchSize) return deleted;
      await yieldToEventLoop();
    }
  }

  count(now: number): Promise<number> {
    return this.#run('count', () => (this.#sql.count.get(now) as { n: number }).n);
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    // Keyset pages by sid: each page is a finished statement, so writes go on between pages.
    let after: string | undefined;
    for (;;) {
      const rows = await this.#run('entries', () =>
        (after === undefined ? this.#sql.firstPage.all(now, PAGE_SIZE) : this.#sql.nextPage.all(after, now, PAGE_SIZE)) as Row[],
      );
      for (const row of rows) {
        const session = this.#decodeRow(row);
        if (session) yield { sid: row.sid, ...session };
      }
      if (rows.length < PAGE_SIZE) return;
      after = rows[rows.length - 1].sid;
    }
  }

  /** One lookup in the `(user_id, expires_at)` index; the row holds the user, so a destroyed or expired session cannot be listed. */
  listByUser(userId: string, now: number): Promise<StoredEntry[]> {
    return this.#run('listByUser', () => {
      const found: StoredEntry[] = [];
      for (const row of this.#sql.byUser.all(JSON.stringify(userId), now) as Row[]) {
        const session = this.#decodeRow(row);
        if (session) found.push({ sid: row.sid, ...session });
      }
      return found;
    });
  }

  /** Closes the database if the provider opened it; a `database` passed in stays open. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#scheduled) this.#flushWrites(); // writes already accepted are made, not dropped
    this.#closed = true;
    if (this.#ownsDatabase) this.#db.close();
  }

  /**
   * Group commit: the creates, updates and touches of one turn of the event loop (the
   * requests that arrived together) go in one `BEGIN IMMEDIATE` transaction at
   * its end, in the order they were made, so the commit's cost (locks, WAL
   * header, the pages written) is paid once for all of them. Each call still
   * resolves its own answer, after the commit.
   */
  #write(op: PendingWrite['op'], run: () => boolean): Promise<boolean> {
    if (this.#closed) return Promise.reject(new ProviderError(NAME, `${op}: the provider is closed`));
    return new Promise<boolean>((resolve, reject) => {
      this.#pending.push({ op, run, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flushWrites);
      }
    });
  }

  readonly #flushWrites = (): void => {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length === 0) return;
    let results: boolean[];
    try {
      results = batch.length === 1 ? [batch[0].run()] : this.#writeAll(batch);
    } catch (err) {
      // Waiting for another process's lock failed: so would each write alone. Anything else
      // (a failed statement rolled the whole batch back) is retried write by write, so one bad write fails alone.
      const code = (err as { code?: unknown }).code;
      const lockTimeout = typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(code);
      if (batch.length === 1 || lockTimeout) for (const write of batch) write.reject(driverFailure(NAME, write.op, err));
      else for (const write of batch) this.#runAlone(write);
      return;
    }
    for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i]);
  };

  #runAlone(write: PendingWrite): void {
    try {
      write.resolve(write.run());
    } catch (err) {
      write.reject(driverFailure(NAME, write.op, err));
    }
  }

  /** Body of `move`, run inside BEGIN IMMEDIATE. A taken `to` is found by the insert, before anything was written. */
  #applyMove(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Map<string, string> | undefined | false {
    const row = this.#sql.selectLive.get(from, now) as Pick<Row, 'values_json'> | undefined;
    const values = row && this.#decodeValues(row.values_json);
    if (values === undefined) return undefined;
    applyChanges(values, changes);
    // `values` is the stored row's (its user included) with the changes applied, so `to` has the right user.
    if (this.#sql.insert.run(to, encodeValues(values), createdAt, expiresAt, userOf(values)).changes !== 1) return false;
    this.#sql.destroy.run(from);
    return values;
  }

  #select(sid: string): StoredSession | undefined {
    const row = this.#sql.select.get(sid) as Row | undefined;
    return row && this.#decodeRow(row);
  }

  #decodeRow(row: Row): StoredSession | undefined {
    const values = this.#decodeValues(row.values_json);
    return values && { values, createdAt: row.created_at, expiresAt: row.expires_at };
  }

  #decodeValues(json: string): Map<string, string> | undefined {
    const values = decodeValues(json);
    if (values === undefined) {
      try {
        this.#onError(new ProviderError(NAME, 'ignored a session row whose values_json is corrupt'));
      } catch {
        // A throwing reporter must not turn a handled problem into a failed request.
      }
    }
    return values;
  }

  async #run<T>(op: string, fn: () => T): Promise<T> {
    if (this.#closed) throw new ProviderError(NAME, `${op}: the provider is closed`);
    try {
      return fn();
    } catch (err) {
      throw driverFailure(NAME, op, err); // redacted: a driver's message may quote an id or a value
    }
  }
}

/** The `user_id` column of a row holding `values`: the JSON text of the user key's value, or NULL. */
function userOf(values: ReadonlyMap<string, string>): string | null {
  return values.get(USER_KEY) ?? null;
}

/**
 * Per-key changes as a JSON merge patch (RFC 7396) for `json_patch`: each set
 * key → its JSON text as a string, each deleted key → `null`. Built by hand: a
 * plain object would treat a `__proto__` key specially.
 */
function patchOf(changes: ReadonlyMap<string, string | undefined>): string {
  let patch = '';
  for (const [key, json] of changes) patch += `${patch === '' ? '' : ','}${JSON.stringify(key)}:${json === undefined ? 'null' : JSON.stringify(json)}`;
  return `{${patch}}`;
}

function applyChanges(values: Map<string, string>, changes: ReadonlyMap<string, string | undefined>): void {
  for (const [key, json] of changes) {
    if (json === undefined) values.delete(key);
    else values.set(key, json);
  }
}

/** Loads better-sqlite3 only now, so apps that pass `database` (or use another provider) never need it. */
function openDatabase(path: string, busyTimeoutMs: number): SqliteDatabase {
  const Driver = loadDriver();
  let db: SqliteDatabase | undefined;
  try {
    createOwnerOnly(path);
    db = new Driver(path, { timeout: busyTimeoutMs });
    // WAL: readers never block the writer nor the writer readers, so processes can share the file.
    db.pragma('journal_mode = WAL');
    // NORMAL, the setting SQLite recommends with WAL: a commit no longer waits for an fsync (the WAL is
    // synced at checkpoints). A power loss may forget the last commits (sessions written in the last
    // moments); it never corrupts the file, and an application crash loses nothing.
    db.pragma('synchronous = NORMAL');
    return db;
  } catch (err) {
    db?.close();
    throw driverFailure(NAME, `opening ${path}`, err);
  }
}

/** A missing driver is a setup mistake, reported like every provider's: an OptionError at construction. */
function loadDriver(): new (path: string, options: { timeout: number }) => SqliteDatabase {
  try {
    return require('better-sqlite3');
  } catch (err) {
    throw new OptionError(`Cannot import \`better-sqlite3\`: install it or pass \`database\` (${errorMessage(err)})`);
  }
}

/**
 * Creates a missing database file empty with mode 0600 before SQLite opens it:
 * SQLite creates the `-wal` and `-shm` files with the mode of the database
 * file, so all three stay owner-only without touching the process umask.
 * An existing file (or `:memory:`, `''`) keeps its mode: it is not ours to change.
 */
function createOwnerOnly(path: string): void {
  if (path === ':memory:' || path.startsWith('file:') || existsSync(path)) return;
  closeSync(openSync(path, 'a', 0o600)); // 'a': O_CREAT without O_TRUNC, harmless if another process just made it
}

function prepare(db: SqliteDatabase, table: string) {
  const t = `"${table}"`; // safe to quote: checkOptions allows only [A-Za-z0-9_]
  db.exec(`
    CREATE TABLE IF NOT EXISTS ${t} (
      sid TEXT PRIMARY KEY NOT NULL,
      values_json TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      user_id TEXT
    );
    CREATE INDEX IF NOT EXISTS "${table}_expires_at" ON ${t} (expires_at);
  `);
  addUserColumn(db, t);
  // Partial: anonymous sessions (most) cost the index nothing; `user_id = ?` implies the condition, so lookups use it.
  db.exec(`CREATE INDEX IF NOT EXISTS "${table}_user_id" ON ${t} (user_id, expires_at) WHERE user_id IS NOT NULL`);
  const columns = 'sid, values_json, created_at, expires_at';
  const statements = {
    insert: db.prepare(`INSERT INTO ${t} (${columns}, user_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT (sid) DO NOTHING`),
    select: db.prepare(`SELECT ${columns} FROM ${t} WHERE sid = ?`),
    selectLive: db.prepare(`SELECT values_json FROM ${t} WHERE sid = ? AND expires_at > ?`),
    // json_valid first: a corrupt row is left alone (and reported), never half-merged.
    patch: db.prepare(
      `UPDATE ${t} SET values_json = json_patch(values_json, ?), user_id = CASE WHEN ? THEN ? ELSE user_id END, expires_at = ?
       WHERE sid = ? AND expires_at > ? AND json_valid(values_json)`,
    ),
    touch: db.prepare(`UPDATE ${t} SET expires_at = ? WHERE sid = ? AND expires_at > ?`),
    destroy: db.prepare(`DELETE FROM ${t} WHERE sid = ?`),
    gcBatch: db.prepare(`DELETE FROM ${t} WHERE sid IN (SELECT sid FROM ${t} WHERE expires_at <= ? LIMIT ?) RETURNING sid`),
    count: db.prepare(`SELECT COUNT(*) AS n FROM ${t} WHERE expires_at > ?`),
    firstPage: db.prepare(`SELECT ${columns} FROM ${t} WHERE expires_at > ? ORDER BY sid LIMIT ?`),
    nextPage: db.prepare(`SELECT ${columns} FROM ${t} WHERE sid > ? AND expires_at > ? ORDER BY sid LIMIT ?`),
    byUser: db.prepare(`SELECT ${columns} FROM ${t} WHERE user_id = ? AND expires_at > ?`),
  };
  // Plain numbers even if the app's database defaults to BigInt: times are far below 2^53.
  for (const statement of Object.values(statements)) if (statement.reader) statement.safeIntegers(false);
  return statements;
}

function hasUserColumn(db: SqliteDatabase, t: string): boolean {
  return (db.prepare(`PRAGMA table_info(${t})`).all() as { name: string }[]).some((column) => column.name === 'user_id');
}

/**
 * Migrates a table made before `user_id` existed: adds the column and fills it
 * from `values_json`. Looks first without writing (a read-only connection to a
 * migrated table must still open), then re-checks under the write lock (BEGIN
 * IMMEDIATE), so of two processes starting at once only one alters the table.
 */
function addUserColumn(db: SqliteDatabase, t: string): void {
  if (hasUserColumn(db, t)) return;
  db.transaction(() => {
    if (hasUserColumn(db, t)) return;
    db.exec(`ALTER TABLE ${t} ADD COLUMN user_id TEXT`);
    // Once, in the migration only: the rows whose text names the user key (JSON escapes its NUL as \u0000).
    const rows = db.prepare(`SELECT sid, values_json FROM ${t} WHERE instr(values_json, ?) > 0`).all(`${JSON.stringify(USER_KEY)}:`) as Row[];
    const setUser = db.prepare(`UPDATE ${t} SET user_id = ? WHERE sid = ?`);
    for (const row of rows) {
      const values = decodeValues(row.values_json);
      if (values) setUser.run(userOf(values), row.sid);
    }
  }).immediate();
}

function checkOptions(options: SqliteOptions): void {
  if (options === null || typeof options !== 'object') throw new OptionError('sqlite provider: options must be an object with `path` or `database`');
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw new OptionError(`sqlite provider: unknown option ${key}`);
  }
  const { path, database, table, busyTimeoutMs, gcBatchSize, onError } = options;
  if ((path === undefined) === (database === undefined)) throw new OptionError('sqlite provider: give exactly one of the options path and database');
  if (path !== undefined && (typeof path !== 'string' || path === '')) throw new OptionError(`sqlite provider: option path must be a non-empty string: ${String(path)}`);
  if (database !== undefined && (database === null || typeof database.prepare !== 'function' || !database.open)) {
    throw new OptionError('sqlite provider: option database must be an open better-sqlite3 Database');
  }
  if (table !== undefined && (typeof table !== 'string' || !IDENTIFIER.test(table))) {
    throw new OptionError(`sqlite provider: option table must be letters, digits and _: ${String(table)}`);
  }
  if (busyTimeoutMs !== undefined && !(Number.isInteger(busyTimeoutMs) && busyTimeoutMs >= 0)) {
    throw new OptionError(`sqlite provider: option busyTimeoutMs must be a whole number of milliseconds: ${String(busyTimeoutMs)}`);
  }
  if (gcBatchSize !== undefined && !(Number.isInteger(gcBatchSize) && gcBatchSize > 0)) {
    throw new OptionError(`sqlite provider: option gcBatchSize must be a positive whole number: ${String(gcBatchSize)}`);
  }
  if (onError !== undefined && typeof onError !== 'function') throw new OptionError('sqlite provider: option onError must be a function');
}
