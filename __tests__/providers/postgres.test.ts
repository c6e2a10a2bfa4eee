import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { Pool } from 'pg';
import { OptionError, ProviderError } from '../../lib/errors';
import { PostgresProvider, type PgPool, type PostgresOptions } from '../../lib/providers/postgres';
import { USER_KEY } from '../../lib/providers/provider';
import { providerConformance } from '../../lib/testing';
import { eventually, rejectionTime } from '../support/provider-waits';
import { discard, pgBinDir, missingDriverMessage, pgStart, pgStop, skipReason, startPostgres, type PgServer } from '../support/services';

const reason = skipReason('postgres');
if (reason) console.warn(`Skipping the PostgreSQL provider tests: ${reason}`);
const describePg = reason ? describe.skip : describe;
const connectionString = process.env.DATABASE_URL ?? '';

let counter = 0;
/** A table no other test (or test run) uses, so tests sharing the server never see each other's rows. */
function uniqueTable(): string {
  counter += 1;
  return `test_${process.pid}_${counter}_${Math.random().toString(36).slice(2, 8)}`;
}

/** The postmaster (first line of postmaster.pid) and every backend it forked. */
function postgresPids(server: PgServer): number[] {
  const postmaster = Number(readFileSync(join(server.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const children = execFileSync('pgrep', ['-P', String(postmaster)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  return [postmaster, ...children];
}

const MINUTE = 60_000;
/** How long a test waits for the server to start, or the pool to replace dead connections. */
const RECONNECT_MS = 15_000;
const one = (key: string, json: string): Map<string, string> => new Map([[key, json]]);

describePg('postgres provider', () => {
  let admin: Pool;
  beforeAll(() => {
    admin = new Pool({ connectionString, max: 2 });
  });
  afterAll(async () => {
    await admin.end();
  });

  /** Drops the provider's table, then closes it. */
  async function cleanUp(provider: PostgresProvider): Promise<void> {
    await admin.query(`DROP TABLE IF EXISTS "${provider.table}"`);
    await provider.close();
  }

  providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new PostgresProvider({ connectionString, table: uniqueTable() }), {
    name: 'postgres',
    skip: [{ reason: 'sessions live on a server: no synchronous read', groups: ['readNow'] }],
    destroy: (provider) => cleanUp(provider as PostgresProvider),
    persistent: {
      reopen: (provider) => new PostgresProvider({ connectionString, table: (provider as PostgresProvider).table }),
      processOptions: (provider) => ({ name: 'postgres', options: { connectionString, table: (provider as PostgresProvider).table } }),
      perProcess: 200,
      inFlight: 10,
    },
  });

  describe('storage layout', () => {
    it('creates the documented table and index, values as jsonb strings of JSON text', async () => {
      const provider = new PostgresProvider({ connectionString, table: uniqueTable() });
      try {
        const now = Date.now();
        await provider.create('abc', new Map([['n', '1.0'], ['nul\0key', '"a\\u0000b"'], ['back\\slash', 'true']]), now, now + MINUTE);
        const { rows } = await admin.query(`SELECT data::text AS data, created_at, expires_at FROM "${provider.table}" WHERE sid = 'abc'`);
        expect(JSON.parse(rows[0].data)).toEqual({ n: '1.0', 'nul\\0key': '"a\\u0000b"', 'back\\\\slash': 'true' });
        expect([Number(rows[0].created_at), Number(rows[0].expires_at)]).toEqual([now, now + MINUTE]);
        const columns = await admin.query(
          `SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`,
          [provider.table],
        );
        expect(columns.rows).toEqual([
          { column_name: 'sid', data_type: 'text', is_nullable: 'NO' },
          { column_name: 'data', data_type: 'jsonb', is_nullable: 'NO' },
          { column_name: 'created_at', data_type: 'bigint', is_nullable: 'NO' },
          { column_name: 'expires_at', data_type: 'bigint', is_nullable: 'NO' },
          { column_name: 'user_id', data_type: 'text', is_nullable: 'YES' },
        ]);
        const indexes = await admin.query(`SELECT indexdef FROM pg_indexes WHERE tablename = $1`, [provider.table]);
        expect(indexes.rows.map((row) => row.indexdef).join('\n')).toMatch(/\(expires_at\)/);
        expect(indexes.rows.map((row) => row.indexdef).join('\n')).toMatch(/\(user_id, expires_at\) WHERE \(user_id IS NOT NULL\)/);
        // Exact text back, NUL in a key included; deleting the escaped key works too.
        const stored = await provider.read('abc');
        expect(Object.fromEntries(stored!.values)).toEqual({ n: '1.0', 'nul\0key': '"a\\u0000b"', 'back\\slash': 'true' });
        await provider.update('abc', new Map([['nul\0key', undefined]]), now + MINUTE, now);
        expect([...(await provider.read('abc'))!.values.keys()].sort()).toEqual(['back\\slash', 'n']);
      } finally {
        await cleanUp(provider);
      }
    });

    it('rejects a table name that is not a plain identifier', () => {
      for (const table of ['', 'a;drop', 'x"y', '1abc', 'a.b.c', 'x'.repeat(64)]) {
        expect(() => new PostgresProvider({ connectionString, table })).toThrow(/option table is invalid/);
      }
      expect(() => new PostgresProvider({ connectionString, table: 'public.Sessions_2' })).not.toThrow();
    });

    it('collects and lists more rows than one batch or page', async () => {
      const provider = new PostgresProvider({ connectionString, table: uniqueTable() });
      try {
        const now = Date.now();
        await provider.count(now); // creates the table
        await admin.query(
          `INSERT INTO "${provider.table}" SELECT 's' || i, '{}', $1::bigint, CASE WHEN i % 2 = 0 THEN $1::bigint + 1000 ELSE $1::bigint + 600000 END FROM generate_series(1, 2500) i`,
          [now],
        );
        let listed = 0;
        for await (const _entry of provider.entries(now + 2000)) listed += 1;
        expect(listed).toBe(1250);
        const reported: string[] = [];
        await expect(provider.gc(now + 2000, (sid) => reported.push(sid))).resolves.toBe(1250);
        expect(new Set(reported).size).toBe(1250);
        await expect(provider.count(now)).resolves.toBe(1250);
      } finally {
        await cleanUp(provider);
      }
    });
  });

  describe('sessions by user', () => {
    const userOf = async (table: string, sid: string): Promise<unknown> =>
      (await admin.query(`SELECT user_id FROM "${table}" WHERE sid = $1`, [sid])).rows[0]?.user_id;

    it('keeps user_id (the JSON text of the user) in step with the user key, through create, update and move', async () => {
      const provider = new PostgresProvider({ connectionString, table: uniqueTable() });
      const { table } = provider;
      try {
        const now = Date.now();
        await provider.create('s', one(USER_KEY, '"ann"'), now, now + MINUTE);
        expect(await userOf(table, 's')).toBe('"ann"');
        await provider.update('s', one('a', '1'), now + MINUTE, now); // other keys leave it alone
        expect(await userOf(table, 's')).toBe('"ann"');
        await provider.update('s', one(USER_KEY, '"bob"'), now + MINUTE, now);
        expect(await userOf(table, 's')).toBe('"bob"');
        await provider.move('s', 't', one('b', '2'), now, now + MINUTE, now); // inherited
        expect([await userOf(table, 's'), await userOf(table, 't')]).toEqual([undefined, '"bob"']);
        await provider.move('t', 'u', one(USER_KEY, '"cy"'), now, now + MINUTE, now);
        expect(await userOf(table, 'u')).toBe('"cy"');
        await provider.update('u', new Map([[USER_KEY, undefined]]), now + MINUTE, now);
        expect(await userOf(table, 'u')).toBeNull();
        expect([...(await provider.read('u'))!.values.keys()].sort()).toEqual(['a', 'b']);
      } finally {
        await cleanUp(provider);
      }
    });

    it('answers in one round trip, from the (user_id, expires_at) index', async () => {
      const pool = new Pool({ connectionString, max: 2 });
      const sent: string[] = [];
      const counting: PgPool = {
        query: (query, values) => (sent.push(typeof query === 'string' ? query : query.text), pool.query(query, values)) as ReturnType<PgPool['query']>,
      };
      const provider = new PostgresProvider({ pool: counting, table: uniqueTable() });
      try {
        const now = Date.now();
        await provider.create('s', one(USER_KEY, '"ann"'), now, now + MINUTE);
        sent.length = 0;
        await expect(provider.listByUser('ann', now)).resolves.toHaveLength(1);
        expect(sent).toHaveLength(1);
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          await client.query('SET LOCAL enable_seqscan = off'); // a tiny table: make the planner show whether the index applies
          const plan = await client.query(`EXPLAIN ${sent[0]}`, ['"ann"', now]);
          expect(plan.rows.map((row) => row['QUERY PLAN']).join('\n')).toMatch(/Index (Only )?Scan using "?\w+_user_id_idx"?/);
        } finally {
          await client.query('ROLLBACK');
          client.release();
        }
      } finally {
        await cleanUp(provider);
        await pool.end();
      }
    });

    it('migrates a table made before user_id: adds the column once and fills it, even when providers start at once', async () => {
      const table = uniqueTable();
      await admin.query(`CREATE TABLE "${table}" (sid text PRIMARY KEY, data jsonb NOT NULL, created_at bigint NOT NULL, expires_at bigint NOT NULL)`);
      await admin.query(`CREATE INDEX "${table}_expires_at_idx" ON "${table}" (expires_at)`);
      const now = Date.now();
      // Rows as the provider wrote them before: keys escaped (NUL as \0), each value its JSON text as a jsonb string.
      const row = (entries: Record<string, string>): string => JSON.stringify(entries);
      for (const [sid, data] of [
        ['ann1', row({ '\\0user': '"ann"', n: '1' })],
        ['ann2', row({ '\\0user': '"ann"' })],
        ['bob', row({ '\\0user': '"bob"' })],
        ['anon', row({ user: '"ann"' })], // an app key, not the user key
      ]) {
        await admin.query(`INSERT INTO "${table}" VALUES ($1, $2::jsonb, $3, $4)`, [sid, data, now, now + MINUTE]);
      }
      // Four providers start while the table is locked: each finds the column missing and waits to alter it.
      const locker = await admin.connect();
      const providers = Array.from({ length: 4 }, () => new PostgresProvider({ connectionString, table, timeoutMs: 20_000 }));
      try {
        await locker.query('BEGIN');
        await locker.query(`LOCK TABLE "${table}" IN ACCESS EXCLUSIVE MODE`);
        const listed = providers.map((provider) => provider.listByUser('ann', now));
        await eventually(async () => {
          const { rows } = await admin.query(`SELECT count(*)::int AS n FROM pg_locks WHERE relation = $1::regclass AND NOT granted`, [`"${table}"`]);
          if (rows[0].n < 4) throw new Error('not all waiting yet');
          return true;
        }, RECONNECT_MS);
        await locker.query('COMMIT');
        for (const found of await Promise.all(listed)) expect(found.map((entry) => entry.sid).sort()).toEqual(['ann1', 'ann2']);
        const { rows } = await admin.query(`SELECT sid, user_id FROM "${table}" ORDER BY sid`);
        expect(rows).toEqual([
          { sid: 'ann1', user_id: '"ann"' },
          { sid: 'ann2', user_id: '"ann"' },
          { sid: 'anon', user_id: null },
          { sid: 'bob', user_id: '"bob"' },
        ]);
        expect((await providers[0].listByUser('bob', now)).map((entry) => entry.sid)).toEqual(['bob']);
        const indexes = await admin.query(`SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname`, [table]);
        expect(indexes.rows.map((index) => index.indexname)).toEqual([`${table}_expires_at_idx`, `${table}_pkey`, `${table}_user_id_idx`]);
      } finally {
        locker.release();
        for (const provider of providers) await provider.close();
        await admin.query(`DROP TABLE IF EXISTS "${table}"`);
      }
    }, 30_000);
  });

  describe('options', () => {
    it('rejects an unknown option by name', () => {
      const options = { connectionString, poolSize: 5 } as unknown as PostgresOptions;
      expect(() => new PostgresProvider(options)).toThrow(OptionError);
      expect(() => new PostgresProvider(options)).toThrow(/unknown option poolSize/);
    });

    it('creates the table UNLOGGED with unlogged: true, and logged by default', async () => {
      expect(() => new PostgresProvider({ connectionString, unlogged: 'yes' as unknown as boolean })).toThrow(/option unlogged is invalid: yes/);
      const persistence = async (table: string): Promise<unknown> =>
        (await admin.query(`SELECT relpersistence FROM pg_class WHERE oid = to_regclass($1)`, [`"${table}"`])).rows[0]?.relpersistence;
      const unlogged = new PostgresProvider({ connectionString, table: uniqueTable(), unlogged: true });
      const logged = new PostgresProvider({ connectionString, table: uniqueTable() });
      try {
        const now = Date.now();
        for (const provider of [unlogged, logged]) {
          await provider.create('s', one('a', '1'), now, now + MINUTE);
          await expect(provider.update('s', one('b', '2'), now + MINUTE, now)).resolves.toBe(true);
        }
        expect([await persistence(unlogged.table), await persistence(logged.table)]).toEqual(['u', 'p']);
      } finally {
        await cleanUp(unlogged);
        await cleanUp(logged);
      }
    });

    it('rejects a malformed connectionString at construction, naming the option and not repeating the password', () => {
      for (const malformed of ['localhost', 'http://db.example/app', 'postgres://app:pa#ss-7f3e@db/app', 'postgres://db:99999/app', 42]) {
        const build = (): PostgresProvider => new PostgresProvider({ connectionString: malformed as string });
        expect(build).toThrow(OptionError);
        expect(build).toThrow(/option connectionString is invalid/);
        expect(() => build()).not.toThrow(/7f3e/);
      }
    });

    it('accepts the forms pg documents, without connecting yet', async () => {
      for (const wellFormed of [
        'postgres://app:secret@db.example:5432/app?sslmode=require',
        'postgresql://localhost/app',
        'postgres://app@/app?host=/var/run/postgresql',
        'socket:/var/run/postgresql?db=app',
        '/var/run/postgresql app',
      ]) {
        await new PostgresProvider({ connectionString: wellFormed }).close();
      }
    });
  });

  describe('when a statement fails', () => {
    const secretValue = 'card-4111-1111-secret';
    const values = new Map([['card', JSON.stringify(secretValue)]]);

    /** Everything an error shows when logged, nested causes included. */
    function expectNoSecrets(err: unknown, secrets: string[]): void {
      expect(err).toBeInstanceOf(ProviderError);
      const shown = inspect(err, { depth: 10 });
      for (const secret of secrets) expect(shown).not.toContain(secret);
    }

    it('hides the id and the value that a unique violation quotes', async () => {
      const table = uniqueTable();
      // The app's migration added a unique index on the values: the second equal session breaks it for real.
      await admin.query(`CREATE TABLE "${table}" (sid text PRIMARY KEY, data jsonb NOT NULL UNIQUE, created_at bigint NOT NULL, expires_at bigint NOT NULL)`);
      const provider = new PostgresProvider({ connectionString, table });
      try {
        const now = Date.now();
        await provider.create('first-sid-2b7c', values, now, now + MINUTE);
        // The driver's own error quotes both: the test provokes a real leak.
        const raw = (await admin
          .query(`INSERT INTO "${table}" SELECT 'raw-sid', data, 0, 0 FROM "${table}"`)
          .then(() => ({}), (error: unknown) => error)) as { code?: string; detail?: string };
        expect(raw.code).toBe('23505');
        expect(raw.detail).toContain(secretValue);

        const err = await provider.create('second-sid-5e1d', values, now, now + MINUTE).catch((error: unknown) => error);
        expectNoSecrets(err, ['first-sid-2b7c', 'second-sid-5e1d', secretValue]);
        const cause = (err as ProviderError).cause as Error & { code?: string; detail?: unknown };
        expect([cause.code, cause.detail]).toEqual(['23505', undefined]);
        expect((err as Error).message).toMatch(/create failed: duplicate key value violates unique constraint/);
      } finally {
        await cleanUp(provider);
      }
    });

    it('hides the id that a type error quotes in its message', async () => {
      const table = uniqueTable();
      // A table whose sid column is a uuid: the server's message quotes the id it could not parse.
      await admin.query(`CREATE TABLE "${table}" (sid uuid PRIMARY KEY, data jsonb NOT NULL, created_at bigint NOT NULL, expires_at bigint NOT NULL)`);
      const provider = new PostgresProvider({ connectionString, table });
      try {
        const now = Date.now();
        const err = await provider.move('not-a-uuid-sid-81a0', 'not-a-uuid-either-3c9d', values, now, now + MINUTE, now).catch((error: unknown) => error);
        expectNoSecrets(err, ['not-a-uuid-sid-81a0', 'not-a-uuid-either-3c9d', secretValue]);
        expect((err as Error).message).toMatch(/failed: invalid input syntax for type uuid/);
        expect(((err as ProviderError).cause as { code?: string }).code).toBe('22P02');
        // Batched creates and updates take text ids from a recordset: the server names the types, never the id.
        for (const [call, message] of [
          [() => provider.create('not-a-uuid-sid-81a0', values, now, now + MINUTE), /create failed: column "…" is of type uuid but expression is of type text/],
          [() => provider.update('not-a-uuid-sid-81a0', values, now + MINUTE, now), /update failed: operator does not exist: uuid = text/],
        ] as const) {
          const failure = await call().catch((error: unknown) => error);
          expectNoSecrets(failure, ['not-a-uuid-sid-81a0', secretValue]);
          expect((failure as Error).message).toMatch(message);
        }
      } finally {
        await cleanUp(provider);
      }
    });
  });

  describe('under concurrent load', () => {
    /** A provider over a pool that records the text of every statement sent. */
    function recorded(): { provider: PostgresProvider; sent: string[]; pool: Pool } {
      const pool = new Pool({ connectionString, max: 10 });
      const sent: string[] = [];
      const counting: PgPool = {
        query: (query, values) => (sent.push(typeof query === 'string' ? query : query.text), pool.query(query, values)) as ReturnType<PgPool['query']>,
      };
      return { provider: new PostgresProvider({ pool: counting, table: uniqueTable() }), sent, pool };
    }

    it('answers 200 concurrent creates, reads and updates in a few statements, each call its own answer', async () => {
      const { provider, sent, pool } = recorded();
      try {
        const now = Date.now();
        const sids = Array.from({ length: 200 }, (_, i) => `s${i}`);
        await provider.count(now); // creates the table
        sent.length = 0;
        // s0 twice: the second waits for the next batch, finds it taken and stores nothing.
        const created = await Promise.all([...sids, 's0'].map((sid) => provider.create(sid, one('n', JSON.stringify(sid)), now, now + MINUTE)));
        expect(created).toEqual([...sids.map(() => true), false]);
        const creates = sent.length;
        sent.length = 0;
        const read = await Promise.all([...sids, 'missing'].map((sid) => provider.read(sid)));
        expect(read.slice(0, 200).map((stored) => stored!.values.get('n'))).toEqual(sids.map((sid) => JSON.stringify(sid)));
        expect(read[200]).toBeUndefined();
        const reads = sent.length;
        // A session twice in one burst: both updates land (in separate statements), the missing one reports false.
        const updated = await Promise.all([
          ...sids.map((sid) => provider.update(sid, one('m', '1'), now + 2 * MINUTE, now)),
          provider.update('s0', one('o', '2'), now + 2 * MINUTE, now),
          provider.update('missing', one('m', '1'), now + 2 * MINUTE, now),
          provider.touch('s1', now + 3 * MINUTE, now),
        ]);
        expect(updated).toEqual([...sids.map(() => true), true, false, true]);
        const writes = sent.length - reads;
        console.log(`201 concurrent creates: ${creates} statements; 201 reads: ${reads}; 202 updates and a touch: ${writes}`);
        expect(creates).toBeLessThanOrEqual(10);
        expect(reads).toBeLessThanOrEqual(8);
        expect(writes).toBeLessThanOrEqual(10);
        expect(Object.fromEntries((await provider.read('s0'))!.values)).toEqual({ n: '"s0"', m: '1', o: '2' });
        expect((await provider.read('s1'))!.expiresAt).toBe(now + 3 * MINUTE);
        expect((await provider.read('s2'))!.expiresAt).toBe(now + 2 * MINUTE);
      } finally {
        await cleanUp(provider);
        await pool.end();
      }
    });

    it('fails only the call whose data the server refuses, not the others of its batch', async () => {
      const { provider, pool } = recorded();
      try {
        const now = Date.now();
        const sids = Array.from({ length: 20 }, (_, i) => `s${i}`);
        for (const sid of sids) await provider.create(sid, new Map(), now, now + MINUTE);
        // A key with a lone UTF-16 surrogate: JSON.stringify escapes it as \ud800, which jsonb refuses.
        const settled = await Promise.allSettled(sids.map((sid, i) => provider.update(sid, one(i === 7 ? 'bad\ud800' : 'ok', '1'), now + MINUTE, now)));
        expect(settled.map((result) => result.status)).toEqual(sids.map((_, i) => (i === 7 ? 'rejected' : 'fulfilled')));
        expect((settled[7] as PromiseRejectedResult).reason).toBeInstanceOf(ProviderError);
        expect([...(await provider.read('s8'))!.values.keys()]).toEqual(['ok']);
      } finally {
        await cleanUp(provider);
        await pool.end();
      }
    });
  });

  describe('when the app passes its own pool', () => {
    it('uses it and leaves it open after close()', async () => {
      const pool = new Pool({ connectionString, max: 2 });
      const provider = new PostgresProvider({ pool, table: uniqueTable() });
      try {
        const now = Date.now();
        await provider.create('mine', one('a', '1'), now, now + MINUTE);
        await provider.close();
        const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${provider.table}"`);
        expect(rows[0].n).toBe(1);
      } finally {
        await admin.query(`DROP TABLE IF EXISTS "${provider.table}"`);
        await pool.end();
      }
    });
  });

  // Fault tests stop and restart a private server, never the shared one other suites use.
  const describeFault = pgBinDir() === undefined ? describe.skip : describe;
  if (pgBinDir() === undefined) console.warn('Skipping the fault tests: PostgreSQL (initdb, pg_ctl) is not installed here');
  describeFault('when the server goes away and comes back', () => {
    let server: PgServer;
    beforeAll(async () => {
      server = await startPostgres();
    });
    afterAll(async () => {
      await discard(server);
    });

    it('rejects with ProviderError quickly while it is down, and works again after a restart', async () => {
      const provider = new PostgresProvider({ connectionString: server.url });
      const now = Date.now();
      await provider.create('before', one('a', '1'), now, now + MINUTE);

      await pgStop(server);
      for (const call of [provider.read('before'), provider.update('before', one('a', '2'), now + MINUTE, now), provider.count(now)]) {
        const { ms, error } = await rejectionTime(call);
        expect(error).toBeInstanceOf(ProviderError);
        expect(ms).toBeLessThan(1000);
      }

      await pgStart(server);
      // The pool dropped the dead connections and opens new ones; the data survived on disk.
      const stored = await eventually(() => provider.read('before'), RECONNECT_MS);
      expect(stored!.values.get('a')).toBe('1');
      await expect(provider.update('before', one('a', '3'), now + MINUTE, now)).resolves.toBe(true);
      await provider.close();
    });

    it('rejects within timeoutMs when the server hangs (SIGSTOP), and works once it resumes', async () => {
      const provider = new PostgresProvider({ connectionString: server.url, timeoutMs: 300 });
      await provider.read('warm-up'); // connected, table made
      const pids = postgresPids(server);
      for (const pid of pids) process.kill(pid, 'SIGSTOP');
      try {
        const { ms, error } = await rejectionTime(provider.read('x'));
        expect(error).toBeInstanceOf(ProviderError);
        expect(ms).toBeLessThan(1000);
      } finally {
        for (const pid of pids) process.kill(pid, 'SIGCONT');
      }
      await expect(eventually(() => provider.read('x'), RECONNECT_MS)).resolves.toBeUndefined();
      await provider.close();
    });

    it('rejects when the server is down before the first call', async () => {
      await pgStop(server);
      const provider = new PostgresProvider({ connectionString: server.url, table: uniqueTable() });
      const { ms, error } = await rejectionTime(provider.read('x'));
      expect(error).toBeInstanceOf(ProviderError);
      expect(ms).toBeLessThan(1000);
      await pgStart(server);
      await expect(eventually(() => provider.read('x'), RECONNECT_MS)).resolves.toBeUndefined(); // and it created its table
      await provider.close();
    });
  });

  it('says how to fix a missing driver', async () => {
    await expect(missingDriverMessage('postgres', 'PostgresProvider', { connectionString })).resolves.toMatch('Cannot import `pg`: install it or pass `pool`');
  });
});
