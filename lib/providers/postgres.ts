import { createHash } from 'node:crypto';
import { errorMessage, OptionError, ProviderError } from '../errors';
import { Batcher } from './postgres-batch';
import { USER_KEY, type Provider, type StoredEntry, type StoredSession } from './provider';
import { Deadlines } from './with-timeout';

/**
 * The `pg` Pool surface the provider uses. Structural, so the published types
 * do not need `pg` installed.
 */
export interface PgPool {
  query(text: string | PgQueryConfig, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
}

/** A named (prepared) statement as pg takes it: parsed and planned once per connection, then only bound and executed. */
export interface PgQueryConfig {
  name: string;
  text: string;
  values: unknown[];
}

/** A pool the provider created: it also closes it and listens for its errors. */
interface OwnedPool extends PgPool {
  end(): Promise<void>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Options of the PostgreSQL provider. Give `connectionString` or `pool`. */
export interface PostgresOptions {
  /**
   * `postgres://user:password@host:port/database` (percent-encode special
   * characters of the password); the provider creates and ends its own `pg`
   * Pool. A string pg would misread throws an `OptionError` at construction.
   */
  connectionString?: string;
  /** A `pg` Pool the app owns; `close()` leaves it open. */
  pool?: PgPool;
  /**
   * Table name, optionally schema-qualified (`app.sessions`). Each part must be
   * a plain identifier (letters, digits, `_`, not starting with a digit, at
   * most 63 bytes); it is quoted, so case is kept. Created if missing.
   * @default 'sessions'
   */
  table?: string;
  /**
   * Milliseconds a call may take before it rejects with a `ProviderError`.
   * With `connectionString` it also bounds connecting and each query inside
   * the pool, so a hung connection is released.
   * @default 5000
   */
  timeoutMs?: number;
  /**
   * Create the table `UNLOGGED` (when the provider creates it; an existing
   * table is left as it is): its writes skip PostgreSQL's write-ahead log, so
   * they cost the server less, but the table is emptied after a server crash
   * (not after a clean restart) and is not copied to replicas: a crash logs
   * every user out, and a failover loses every session.
   * @default false
   */
  unlogged?: boolean;
}

const OPTION_NAMES = new Set(['connectionString', 'pool', 'table', 'timeoutMs', 'unlogged']);
/** The URL schemes pg reads from a connection string (`socket:` is a Unix socket). */
const URL_PROTOCOLS = new Set(['postgres:', 'postgresql:', 'socket:']);

export const DEFAULT_PG_TABLE = 'sessions';
export const DEFAULT_PG_TIMEOUT_MS = 5000;
/** Rows deleted per GC statement: short transactions, short row locks. */
const GC_BATCH = 1000;
/** Rows loaded per `entries()` page. */
const PAGE = 500;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/** Statements of one kind (reads; writes) on the wire at once; what arrives meanwhile waits and goes as one. */
const IN_FLIGHT = 4;
/** Sessions per batched statement. */
const MAX_BATCH = 500;

/** One create, update or touch as a batched statement takes it (a JSON object of `jsonb_to_recordset`). */
interface Write {
  sid: string;
  /** The member's JSON text. */
  json: string;
}

/**
 * Sessions in PostgreSQL, shared by every process using the database. One row
 * per session: `data` maps each key to its value's JSON text, stored as a
 * jsonb *string* — jsonb cannot hold `\u0000` and renormalises numbers
 * (`1.0` → `1`), a string round-trips exactly. Writes are single statements:
 * `update` merges keys with jsonb `-` / `||` under the row lock, so concurrent
 * updates of different keys both survive; a key containing NUL is escaped
 * (`\0`, and `\` as `\\`), since jsonb keys cannot hold NUL either.
 *
 * Round trips under load: reads that arrive while earlier reads are on the
 * wire go together as one `WHERE sid = ANY($1)`, and updates and touches as
 * one `UPDATE … FROM jsonb_to_recordset($1)` (group commit, see
 * `postgres-batch.ts`), and creates as one multi-row `INSERT`; at most four
 * statements of each kind are in flight.
 * Both are named statements, parsed and planned once per connection. At low
 * load a call goes alone, at the end of the event-loop turn that made it.
 *
 * Sessions by user: the nullable `user_id text` column repeats the JSON text of
 * the user key's value (`'"ann"'`), set by the same statement that writes
 * `data`, with a partial index on `(user_id, expires_at)`; `listByUser` is one
 * indexed query. A table made before that column existed gets it (filled from
 * `data`) the first time a provider uses it.
 *
 * @example
 * sessions({ provider: 'postgres', providerOptions: { connectionString: process.env.DATABASE_URL } })
 * @example
 * const pool = new Pool({ connectionString });
 * sessions({ provider: new PostgresProvider({ pool, table: 'app.sessions' }) })
 */
export class PostgresProvider implements Provider {
  readonly name = 'postgres';
  readonly table: string;
  readonly timeoutMs: number;
  readonly #deadlines: Deadlines;
  readonly #pool: PgPool;
  readonly #owned: OwnedPool | undefined;
  readonly #sql: ReturnType<typeof statements>;
  /** CREATE TABLE IF NOT EXISTS, once; reset on failure so the next call retries. */
  #ready: Promise<void> | undefined;
  /** Set once the table is known to exist: the hot path then skips a Promise hop. */
  #tableReady = false;
  #closed = false;
  /** Concurrent reads, one `WHERE sid = ANY($1)` per batch. */
  readonly #reads = new Batcher<string, Record<string, unknown> | undefined>(IN_FLIGHT, MAX_BATCH, (sids) => this.#readMany(sids), undefined, isDataError);
  /** Concurrent updates and touches, one `UPDATE … FROM jsonb_to_recordset($1)` per batch, a session at most once in each. */
  readonly #writes = new Batcher<Write, boolean>(IN_FLIGHT, MAX_BATCH, (writes) => this.#writeMany(writes, this.#sql.writeMany), (write) => write.sid, isDataError);
  /** Concurrent creates, one `INSERT … SELECT … FROM jsonb_to_recordset($1)` per batch. */
  readonly #creates = new Batcher<Write, boolean>(IN_FLIGHT, MAX_BATCH, (writes) => this.#writeMany(writes, this.#sql.createMany), (write) => write.sid, isDataError);

  constructor(options: PostgresOptions = {}) {
    checkOptionNames(options);
    const { connectionString, pool, table = DEFAULT_PG_TABLE, timeoutMs = DEFAULT_PG_TIMEOUT_MS, unlogged = false } = options;
    const parts = typeof table === 'string' ? table.split('.') : [];
    if (parts.length < 1 || parts.length > 2 || !parts.every((part) => IDENTIFIER.test(part))) {
      throw new OptionError(`[postgres] option table is invalid: ${String(table)}`);
    }
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new OptionError(`[postgres] option timeoutMs is invalid: ${String(timeoutMs)}`);
    if (typeof unlogged !== 'boolean') throw new OptionError(`[postgres] option unlogged is invalid: ${String(unlogged)}`);
    this.table = table;
    this.timeoutMs = timeoutMs;
    this.#deadlines = new Deadlines(this.name, timeoutMs);
    this.#sql = statements(parts, unlogged);
    if (pool !== undefined) {
      if (typeof (pool as { query?: unknown }).query !== 'function') throw new OptionError('[postgres] option pool is invalid: expected a pg Pool');
      this.#pool = pool;
    } else if (connectionString !== undefined) {
      checkConnectionString(connectionString);
      this.#owned = createOwnedPool(connectionString, timeoutMs);
      this.#pool = this.#owned;
    } else {
      throw new OptionError('[postgres] give option connectionString (a postgres:// URL) or pool (a pg Pool)');
    }
  }

  /** Batched with other sessions' creates: one multi-row `INSERT … ON CONFLICT DO NOTHING`. */
  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    const json = `{"sid":${JSON.stringify(sid)},"data":${encode(values)},"created":${createdAt},"exp":${expiresAt},"uid":${JSON.stringify(values.get(USER_KEY) ?? null)}}`;
    return this.#batched('create', () => this.#creates.add({ sid, json }));
  }

  /** Batched with the reads of other requests arriving meanwhile: one round trip for all of them. */
  async read(sid: string): Promise<StoredSession | undefined> {
    const row = await this.#batched('read', () => this.#reads.add(sid));
    return row === undefined ? undefined : decode(row);
  }

  /** Batched with other sessions' updates and touches: one statement, each row merged under its own row lock. */
  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    const { deleted, set } = splitChanges(changes);
    const [userChanged, userId] = userChange(changes);
    const json = `{"sid":${JSON.stringify(sid)},"del":${JSON.stringify(deleted)},"set":${encode(set)},"exp":${expiresAt},"now":${now},"uc":${userChanged},"uid":${JSON.stringify(userId)}}`;
    return this.#batched('update', () => this.#writes.add({ sid, json }));
  }

  /**
   * One statement: it locks the live `from` row (a concurrent update either
   * committed first and is carried over, or waits and then finds no row),
   * inserts `to` unless it exists, and deletes `from` only if the insert happened.
   */
  async move(
    from: string,
    to: string,
    changes: ReadonlyMap<string, string | undefined>,
    createdAt: number,
    expiresAt: number,
    now: number,
  ): Promise<Map<string, string> | undefined | false> {
    const { deleted, set } = splitChanges(changes);
    const { rows } = await this.#query('move', this.#sql.move, [from, to, deleted, encode(set), createdAt, expiresAt, now, ...userChange(changes)]);
    const [{ found, data }] = rows;
    if (!found) return undefined;
    return data === null ? false : decode({ data, created_at: createdAt, expires_at: expiresAt }).values;
  }

  /** An update that changes no key, batched with the others. */
  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    const json = `{"sid":${JSON.stringify(sid)},"del":[],"set":{},"exp":${expiresAt},"now":${now},"uc":false,"uid":null}`;
    return this.#batched('touch', () => this.#writes.add({ sid, json }));
  }

  async destroy(sid: string): Promise<void> {
    await this.#query('destroy', this.#sql.destroy, [sid]);
  }

  /** Deletes expired rows in batches of 1000, one short statement each. */
  async gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    let deleted = 0;
    for (;;) {
      const { rows } = await this.#query('gc', this.#sql.gc, [now, GC_BATCH]);
      deleted += rows.length;
      if (onExpired) for (const row of rows) onExpired(String(row.sid));
      if (rows.length < GC_BATCH) return deleted;
    }
  }

  async count(now: number): Promise<number> {
    const { rows } = await this.#query('count', this.#sql.count, [now]);
    return Number(rows[0].live);
  }

  /** Pages through live rows in sid order (keyset pagination: each page is an index range scan). */
  async *entries(now: number): AsyncIterable<StoredEntry> {
    let after = '';
    for (;;) {
      const { rows } = await this.#query('entries', this.#sql.page, [now, after, PAGE]);
      for (const row of rows) yield { sid: String(row.sid), ...decode(row) };
      if (rows.length < PAGE) return;
      after = String(rows[rows.length - 1].sid);
    }
  }

  /** One query, answered from the partial index on `(user_id, expires_at)`. */
  async listByUser(userId: string, now: number): Promise<StoredEntry[]> {
    const { rows } = await this.#query('listByUser', this.#sql.byUser, [JSON.stringify(userId), now]);
    return rows.map((row) => ({ sid: String(row.sid), ...decode(row) }));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deadlines.stop();
    await this.#owned?.end().catch(() => undefined);
  }

  /** One statement, after the table exists, bounded by `timeoutMs`; every failure becomes a ProviderError. */
  async #query(operation: string, text: string, values: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }> {
    if (this.#closed) throw new ProviderError(this.name, `${operation}: the provider is closed`);
    return this.#deadlines.run(operation, () => (this.#tableReady ? this.#pool.query(text, values) : this.#ensureTable().then(() => this.#pool.query(text, values))));
  }

  /** A call that joins a batch, bounded by `timeoutMs` as a call of its own. */
  async #batched<T>(operation: string, join: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new ProviderError(this.name, `${operation}: the provider is closed`);
    return this.#deadlines.run(operation, join);
  }

  /** The rows of `sids` (one per sid, `undefined` where none), in one statement. */
  async #readMany(sids: string[]): Promise<(Record<string, unknown> | undefined)[]> {
    if (!this.#tableReady) await this.#ensureTable();
    if (sids.length === 1) {
      const { rows } = await this.#pool.query(named(this.#sql.read, sids));
      return [rows[0]];
    }
    const { rows } = await this.#pool.query(named(this.#sql.readMany, [sids]));
    const bySid = new Map<string, Record<string, unknown>>();
    for (const row of rows) bySid.set(row.sid as string, row);
    return sids.map((sid) => bySid.get(sid));
  }

  /** Runs `writes` (distinct sids) in one statement that returns the sid of each row it wrote; resolves, per write, whether it did. */
  async #writeMany(writes: Write[], prepared: { name: string; text: string }): Promise<boolean[]> {
    if (!this.#tableReady) await this.#ensureTable();
    const { rows } = await this.#pool.query(named(prepared, [`[${writes.map((write) => write.json).join(',')}]`]));
    if (writes.length === 1) return [rows.length === 1];
    const written = new Set<string>();
    for (const row of rows) written.add(row.sid as string);
    return writes.map((write) => written.has(write.sid));
  }

  #ensureTable(): Promise<void> {
    this.#ready ??= this.#createTable().then(
      () => {
        this.#tableReady = true;
      },
      (error: unknown) => {
        this.#ready = undefined;
        throw error;
      },
    );
    return this.#ready;
  }

  async #createTable(): Promise<void> {
    // Look first: CREATE … IF NOT EXISTS still demands CREATE on the schema,
    // which an app role using a table made by a migration may not have.
    const { rows } = await this.#pool.query(this.#sql.exists);
    const [{ found, migrated }] = rows;
    if (found !== null) {
      // A table made before `user_id`: ALTER takes an exclusive lock, so only when something is missing.
      if (migrated !== true) await this.#pool.query(this.#sql.migrate);
      return;
    }
    try {
      await this.#pool.query(this.#sql.createTable);
      await this.#pool.query(this.#sql.createIndex);
      await this.#pool.query(this.#sql.createUserIndex);
    } catch (error) {
      // Two processes creating the table at once: one loses the race on the
      // catalog's unique index (23505) or finds it made (42P07). Either way it exists.
      const code = (error as { code?: string }).code;
      if (code !== '23505' && code !== '42P07') throw error;
    }
  }
}

/** Every statement, built once from the validated table name. */
function statements(parts: string[], unlogged: boolean) {
  const table = parts.map((part) => `"${part}"`).join('.');
  const last = parts[parts.length - 1];
  const index = `"${`${last}_expires_at_idx`.slice(0, 63)}"`;
  const userIndexName = `"${`${last}_user_id_idx`.slice(0, 63)}"`;
  // An index lives in its table's schema: to_regclass needs that schema to find it.
  const userIndex = parts.length === 2 ? `"${parts[0]}".${userIndexName}` : userIndexName;
  // Partial: anonymous sessions (most) cost the index nothing; `user_id = $1` implies the condition, so lookups use it.
  const createUserIndex = `CREATE INDEX IF NOT EXISTS ${userIndexName} ON ${table} (user_id, expires_at) WHERE user_id IS NOT NULL`;
  // The stored user key: escaped as every key is (jsonb keys cannot hold NUL), as an E'' literal (the migration takes no parameters).
  const userKey = `E'${escapeKey(USER_KEY).replace(/\\/g, '\\\\')}'`;
  return {
    exists: `SELECT to_regclass('${table}') AS found,
      to_regclass('${userIndex}') IS NOT NULL AND EXISTS (
        SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('${table}') AND attname = 'user_id' AND NOT attisdropped) AS migrated`,
    createTable: `CREATE ${unlogged ? 'UNLOGGED ' : ''}TABLE IF NOT EXISTS ${table} (
      sid text PRIMARY KEY,
      data jsonb NOT NULL,
      created_at bigint NOT NULL,
      expires_at bigint NOT NULL,
      user_id text)`,
    createIndex: `CREATE INDEX IF NOT EXISTS ${index} ON ${table} (expires_at)`,
    createUserIndex,
    // One simple query, so one transaction: the ALTER's exclusive lock makes a second process
    // starting at once wait, then find the column and the index made (IF NOT EXISTS) and rows filled.
    migrate: `ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS user_id text;
      UPDATE ${table} SET user_id = data ->> ${userKey} WHERE user_id IS NULL AND data ? ${userKey};
      ${createUserIndex}`,
    // An existing row (live or expired) is left exactly as it is; a batch names a session at most once.
    createMany: statement(`INSERT INTO ${table} (sid, data, created_at, expires_at, user_id)
      SELECT c.sid, c.data, c.created, c.exp, c.uid FROM jsonb_to_recordset($1::jsonb) AS c(sid text, data jsonb, created bigint, exp bigint, uid text)
      ON CONFLICT (sid) DO NOTHING RETURNING sid`),
    read: statement(`SELECT sid, data, created_at, expires_at FROM ${table} WHERE sid = $1`),
    readMany: statement(`SELECT sid, data, created_at, expires_at FROM ${table} WHERE sid = ANY($1::text[])`),
    // Every write of a batch in one statement, each row under its own row lock: a concurrent update of the
    // same row (another process) re-reads it, so both merges survive. A batch names a session at most once.
    // user_id changes only when the user key does (uc), in the same statement as data.
    writeMany: statement(`UPDATE ${table} AS t SET data = (t.data - w.del) || w.set, expires_at = w.exp,
      user_id = CASE WHEN w.uc THEN w.uid ELSE t.user_id END
      FROM jsonb_to_recordset($1::jsonb) AS w(sid text, del text[], set jsonb, exp bigint, now bigint, uc boolean, uid text)
      WHERE t.sid = w.sid AND t.expires_at > w.now RETURNING t.sid`),
    // FOR UPDATE waits for a concurrent writer of `from` and then reads its newest version.
    // A taken `to` makes the insert return nothing, and then `from` is not deleted.
    // `to` inherits the stored user_id unless the changes name the user key ($8).
    move: `WITH source AS (
        SELECT data, user_id FROM ${table} WHERE sid = $1 AND expires_at > $7 FOR UPDATE),
      inserted AS (
        INSERT INTO ${table} (sid, data, created_at, expires_at, user_id)
        SELECT $2, (data - $3::text[]) || $4::jsonb, $5, $6, CASE WHEN $8::boolean THEN $9::text ELSE user_id END FROM source
        ON CONFLICT (sid) DO NOTHING RETURNING data),
      deleted AS (
        DELETE FROM ${table} WHERE sid = $1 AND EXISTS (SELECT 1 FROM inserted))
      SELECT EXISTS (SELECT 1 FROM source) AS found, (SELECT data FROM inserted) AS data`,
    destroy: `DELETE FROM ${table} WHERE sid = $1`,
    // SKIP LOCKED: concurrent collectors (several app processes) take different rows instead of waiting.
    gc: `DELETE FROM ${table} WHERE sid IN (
      SELECT sid FROM ${table} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED) AND expires_at <= $1 RETURNING sid`,
    count: `SELECT count(*) AS live FROM ${table} WHERE expires_at > $1`,
    page: `SELECT sid, data, created_at, expires_at FROM ${table} WHERE expires_at > $1 AND sid > $2 ORDER BY sid LIMIT $3`,
    byUser: `SELECT sid, data, created_at, expires_at FROM ${table} WHERE user_id = $1 AND expires_at > $2`,
  };
}

/**
 * A failure caused by one item's data (SQLSTATE class 22, "data exception":
 * e.g. a key holding a lone UTF-16 surrogate, which jsonb refuses; class 23,
 * "integrity constraint violation": a constraint the app added): its batch
 * is retried item by item, so only that item's call fails.
 */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

/** A statement of the hot path, named after a hash of its text: two providers on other tables sharing a pool never clash. */
function statement(text: string): { name: string; text: string } {
  return { name: `session_manager_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`, text };
}

/** The pg query of a named statement with these values (one object per call: pg keeps it while the query runs). */
function named(prepared: { name: string; text: string }, values: unknown[]): PgQueryConfig {
  return { name: prepared.name, text: prepared.text, values };
}

function checkOptionNames(options: PostgresOptions): void {
  if (options === null || typeof options !== 'object') throw new OptionError('[postgres] options must be an object with connectionString or pool');
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw new OptionError(`[postgres] unknown option ${key}`);
  }
}

/**
 * Refuses at construction what pg would misread later (it resolves any text
 * against `postgres://base`, so `'localhost'` would become a database name).
 * Accepts what pg documents: a URL (`postgres:`, `postgresql:`, `socket:`),
 * with an empty host as in `postgres://user@/db?host=/run/postgresql`, or a socket folder path.
 * The message never repeats the string: it may hold a password.
 */
function checkConnectionString(connectionString: unknown): void {
  if (typeof connectionString === 'string' && connectionString.startsWith('/')) return;
  if (typeof connectionString === 'string' && URL_PROTOCOLS.has(urlProtocol(connectionString) ?? '')) return;
  throw new OptionError('[postgres] option connectionString is invalid: expected a postgres:// URL (percent-encode special characters of the password)');
}

function urlProtocol(text: string): string | undefined {
  for (const candidate of [text, text.replace('@/', '@host/')]) {
    try {
      return new URL(candidate).protocol;
    } catch {
      // not a URL as written; try with a placeholder host
    }
  }
  return undefined;
}

/** Per-key changes as `update` and `move` send them: escaped keys to delete, values to set. */
function splitChanges(changes: ReadonlyMap<string, string | undefined>): { deleted: string[]; set: Map<string, string> } {
  const deleted: string[] = [];
  const set = new Map<string, string>();
  for (const [key, json] of changes) {
    if (json === undefined) deleted.push(escapeKey(key));
    else set.set(key, json);
  }
  return { deleted, set };
}

/** Whether `changes` name the user key, and the `user_id` it then gets (the value's JSON text, or NULL when deleted). */
function userChange(changes: ReadonlyMap<string, string | undefined>): [boolean, string | null] {
  return [changes.has(USER_KEY), changes.get(USER_KEY) ?? null];
}

function createOwnedPool(connectionString: string, timeoutMs: number): OwnedPool {
  let pg: typeof import('pg');
  try {
    pg = require('pg');
  } catch (error) {
    throw new OptionError(`Cannot import \`pg\`: install it or pass \`pool\` (${errorMessage(error)})`);
  }
  const pool = new pg.Pool({ connectionString, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs }) as unknown as OwnedPool;
  // An idle connection dropped by the server (restart, failover) makes the pool
  // emit 'error'; unhandled, that would crash the process. The pool replaces it.
  pool.on('error', () => undefined);
  return pool;
}

/** Values → a jsonb object text of key → the value's JSON text as a string, keys escaped. */
function encode(values: ReadonlyMap<string, string>): string {
  // Built by hand: a plain object would treat a `__proto__` key specially.
  const members: string[] = [];
  for (const [key, json] of values) members.push(`${JSON.stringify(escapeKey(key))}:${JSON.stringify(json)}`);
  return `{${members.join(',')}}`;
}

function decode(row: Record<string, unknown>): StoredSession {
  const values = new Map<string, string>();
  // pg parses jsonb with JSON.parse, whose result owns `__proto__` as a plain key; Object.entries sees it.
  for (const [key, json] of Object.entries(row.data as Record<string, string>)) values.set(unescapeKey(key), json);
  // bigint arrives as a string (it may exceed 2^53 in general; ms timestamps do not).
  return { values, createdAt: Number(row.created_at), expiresAt: Number(row.expires_at) };
}

/** jsonb keys cannot hold NUL: `\` → `\\`, NUL → `\0`, reversibly. */
function escapeKey(key: string): string {
  return /[\\\0]/.test(key) ? key.replace(/[\\\0]/g, (c) => (c === '\\' ? '\\\\' : '\\0')) : key;
}

function unescapeKey(key: string): string {
  return key.includes('\\') ? key.replace(/\\(.)/g, (_, c: string) => (c === '0' ? '\0' : c)) : key;
}
