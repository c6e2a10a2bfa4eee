import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { inspect } from 'node:util';
import Database from 'better-sqlite3';
import { OptionError, ProviderError } from '../../lib/errors';
import { USER_KEY, type Provider } from '../../lib/providers/provider';
import { SqliteProvider, type SqliteOptions } from '../../lib/providers/sqlite';
import { providerConformance } from '../../lib/testing';

const MINUTE = 60_000;
const cleanups = new Map<Provider, () => void>();
/** The database file of each provider that `freshProvider` made. */
const paths = new Map<Provider, string>();

/** A provider over a database file in a fresh temp folder. */
function freshProvider(options: Partial<SqliteOptions> = {}): { provider: SqliteProvider; path: string } {
  const root = mkdtempSync(join(tmpdir(), 'sm-sqlite-'));
  const path = join(root, 'sessions.db');
  const provider = new SqliteProvider({ path, ...options });
  cleanups.set(provider, () => rmSync(root, { recursive: true, force: true }));
  paths.set(provider, path);
  return { provider, path };
}

async function dispose(provider: Provider): Promise<void> {
  await provider.close();
  cleanups.get(provider)?.();
  cleanups.delete(provider);
  paths.delete(provider);
}

providerConformance({ describe, it, expect, beforeEach, afterEach }, () => freshProvider().provider, {
  name: 'sqlite',
  destroy: dispose,
  persistent: {
    reopen: (provider) => new SqliteProvider({ path: paths.get(provider)! }),
    processOptions: (provider) => ({ name: 'sqlite', options: { path: paths.get(provider)! } }),
    perProcess: 200,
  },
});
providerConformance(
  { describe, it, expect, beforeEach, afterEach },
  () => {
    const database = new Database(':memory:');
    const provider = new SqliteProvider({ database });
    cleanups.set(provider, () => database.close());
    return provider;
  },
  {
    name: 'sqlite (database passed in)',
    destroy: dispose,
    skip: [{ reason: 'an in-memory database ends with its connection', groups: ['persistent'] }],
  },
);

const decodedKeys = (values: Map<string, string>): string[] => [...values.keys()].sort();
const json = (entries: Record<string, unknown>): Map<string, string> =>
  new Map(Object.entries(entries).map(([key, value]) => [key, JSON.stringify(value)]));

describe('sqlite provider', () => {
  let provider: SqliteProvider;
  let path: string;
  let reported: Error[];
  let now: number;

  beforeEach(() => {
    reported = [];
    ({ provider, path } = freshProvider({ onError: (err) => reported.push(err) }));
    now = Date.now();
  });

  afterEach(() => dispose(provider));

  describe('when the app passes its own database', () => {
    it('leaves it open after close()', async () => {
      const database = new Database(':memory:');
      const shared = new SqliteProvider({ database, table: 'web_sessions' });
      await shared.create('s', json({ a: 1 }), now, now + MINUTE);
      await shared.close();
      expect(database.open).toBe(true);
      expect(database.prepare('SELECT COUNT(*) AS n FROM web_sessions').get()).toEqual({ n: 1 });
      await expect(shared.read('s')).rejects.toBeInstanceOf(ProviderError);
      database.close();
    });

    it('answers plain numbers even when the database defaults to BigInt', async () => {
      const database = new Database(':memory:');
      database.defaultSafeIntegers(true);
      const shared = new SqliteProvider({ database });
      await shared.create('s', new Map(), now, now + MINUTE);
      const stored = await shared.read('s');
      expect([typeof stored!.createdAt, typeof stored!.expiresAt]).toEqual(['number', 'number']);
      await expect(shared.count(now)).resolves.toBe(1);
      await shared.close();
      database.close();
    });
  });

  describe('the database file', () => {
    it('is opened in WAL mode', () => {
      const other = new Database(path);
      expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
      other.close();
    });

    it('is created with its -wal and -shm files readable by the owner only, even under umask 0', async () => {
      // The most permissive umask, only while this test's provider creates its files (opening makes -shm, the first write -wal).
      const previous = process.umask(0);
      let created: { provider: SqliteProvider; path: string };
      try {
        created = freshProvider();
        await created.provider.create('secret', json({ token: 't' }), now, now + MINUTE);
      } finally {
        process.umask(previous);
      }
      for (const file of [created.path, `${created.path}-wal`, `${created.path}-shm`]) {
        expect([file, statSync(file).mode & 0o777]).toEqual([file, 0o600]);
      }
      await dispose(created.provider);
    });

    it('keeps the mode of a file the app created', async () => {
      const own = join(resolve(path, '..'), 'own.db');
      writeFileSync(own, '', { mode: 0o640 });
      const onOwn = new SqliteProvider({ path: own });
      await onOwn.create('s', new Map(), now, now + MINUTE);
      expect(statSync(own).mode & 0o777).toBe(0o640);
      await onOwn.close();
    });
  });

  describe('when the driver fails', () => {
    it('rejects with a cause that carries its name and code but no id or value', async () => {
      const database = new Database(':memory:');
      const shared = new SqliteProvider({ database });
      // A real constraint failure: the app added a unique index that two sessions with equal values break.
      database.exec('CREATE UNIQUE INDEX one_per_value ON sessions (values_json)');
      const secret = json({ token: 'tok-8c1f-secret' });
      await shared.create('first-sid-4f2a', secret, now, now + MINUTE);
      const err = await shared.create('second-sid-9d3b', secret, now, now + MINUTE).catch((error: unknown) => error);
      expect(err).toBeInstanceOf(ProviderError);
      const cause = (err as ProviderError).cause as Error & { code?: string };
      expect(cause).not.toBeInstanceOf(Database.SqliteError); // rebuilt, not the driver's object
      expect([cause.name, cause.code]).toEqual(['SqliteError', 'SQLITE_CONSTRAINT_UNIQUE']);
      const shown = inspect(err, { depth: 10 });
      for (const secretText of ['first-sid-4f2a', 'second-sid-9d3b', 'tok-8c1f-secret']) expect(shown).not.toContain(secretText);
      await shared.close();
      database.close();
    });
  });

  describe('gc', () => {
    it('deletes exactly the expired rows, in bounded batches that yield to the event loop', async () => {
      const batched = freshProvider({ gcBatchSize: 100 }).provider;
      const expired = Array.from({ length: 1234 }, (_, i) => `old${i}`);
      const live = Array.from({ length: 300 }, (_, i) => `new${i}`);
      for (const sid of expired) await batched.create(sid, json({ sid }), now, now + MINUTE);
      for (const sid of live) await batched.create(sid, json({ sid }), now, now + 10 * MINUTE);
      // An edge: expiresAt equal to now is expired (live means now < expiresAt).
      await batched.create('edge', new Map(), now, now + 2 * MINUTE);

      let ticks = 0;
      let ticking = true;
      const tick = (): void => {
        ticks += 1;
        if (ticking) setImmediate(tick);
      };
      setImmediate(tick);
      const gone: string[] = [];
      const deleted = await batched.gc(now + 2 * MINUTE, (sid) => gone.push(sid));
      ticking = false;

      expect(deleted).toBe(1235);
      expect(gone.sort()).toEqual([...expired, 'edge'].sort());
      expect(ticks).toBeGreaterThanOrEqual(12); // 13 batches of at most 100, the loop ran between them
      await expect(batched.count(now + 2 * MINUTE)).resolves.toBe(300);
      for (const sid of live) expect(await batched.read(sid)).toBeDefined();
      await dispose(batched);
    });
  });

  describe('sessions by user', () => {
    const userRow = (db: Database.Database, sid: string): unknown => (db.prepare('SELECT user_id FROM sessions WHERE sid = ?').get(sid) as { user_id: unknown } | undefined)?.user_id;

    it('keeps user_id (the JSON text of the user) in step with the user key, through create, update and move', async () => {
      const other = new Database(path);
      try {
        await provider.create('s', new Map([[USER_KEY, '"ann"']]), now, now + MINUTE);
        expect(userRow(other, 's')).toBe('"ann"');
        await provider.update('s', json({ a: 1 }), now + MINUTE, now); // other keys leave it alone
        expect(userRow(other, 's')).toBe('"ann"');
        await provider.update('s', new Map([[USER_KEY, '"bob"']]), now + MINUTE, now);
        expect(userRow(other, 's')).toBe('"bob"');
        await provider.move('s', 't', json({ b: 2 }), now, now + MINUTE, now); // inherited
        expect([userRow(other, 's'), userRow(other, 't')]).toEqual([undefined, '"bob"']);
        await provider.move('t', 'u', new Map([[USER_KEY, '"cy"']]), now, now + MINUTE, now);
        expect(userRow(other, 'u')).toBe('"cy"');
        await provider.update('u', new Map([[USER_KEY, undefined]]), now + MINUTE, now);
        expect(userRow(other, 'u')).toBeNull();
        expect(decodedKeys((await provider.read('u'))!.values)).toEqual(['a', 'b']);
      } finally {
        other.close();
      }
    });

    it('answers from the (user_id, expires_at) index, never a scan', () => {
      const other = new Database(path);
      try {
        const plan = other
          .prepare('EXPLAIN QUERY PLAN SELECT sid, values_json, created_at, expires_at FROM sessions WHERE user_id = ? AND expires_at > ?')
          .all('"ann"', now) as { detail: string }[];
        expect(plan.map((step) => step.detail).join('\n')).toMatch(/SEARCH sessions USING INDEX sessions_user_id \(user_id=\? AND expires_at>\?\)/);
      } finally {
        other.close();
      }
    });

    it('migrates a table made before user_id: adds the column once and fills it, even when processes open it at once', async () => {
      const old = join(resolve(path, '..'), 'old.db');
      const legacy = new Database(old);
      legacy.pragma('journal_mode = WAL');
      legacy.exec('CREATE TABLE sessions (sid TEXT PRIMARY KEY NOT NULL, values_json TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)');
      legacy.exec('CREATE INDEX sessions_expires_at ON sessions (expires_at)');
      const insert = legacy.prepare('INSERT INTO sessions VALUES (?, ?, ?, ?)');
      const row = (values: Map<string, string>): string => JSON.stringify(Object.fromEntries(values));
      insert.run('ann1', row(new Map([[USER_KEY, '"ann"'], ['n', '1']])), now, now + MINUTE);
      insert.run('ann2', row(new Map([[USER_KEY, '"ann"']])), now, now + MINUTE);
      insert.run('bob', row(new Map([[USER_KEY, '"bob"']])), now, now + MINUTE);
      insert.run('anon', row(new Map([['user', '"ann"']])), now, now + MINUTE); // an app key, not the user key

      // Four processes open the old file while this one holds the write lock: each finds the column
      // missing and queues for the lock, so all four race to migrate once it is released.
      legacy.exec('BEGIN IMMEDIATE');
      const script = `
        const { SqliteProvider } = require(${JSON.stringify(resolve(__dirname, '../../lib/providers/sqlite.ts'))});
        console.log('loaded');
        const provider = new SqliteProvider({ path: ${JSON.stringify(old)}, busyTimeoutMs: 20000 });
        provider.listByUser('ann', ${now}).then((found) => { console.log(found.map((e) => e.sid).sort().join(',')); return provider.close(); });
      `;
      let loaded = 0;
      let allLoaded: () => void = () => undefined;
      const ready = new Promise<void>((done) => (allLoaded = done));
      const outputs = Array.from({ length: 4 }, () =>
        new Promise<string>((done, fail) => {
          const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: resolve(__dirname, '..', '..') });
          let out = '';
          let err = '';
          child.stdout.on('data', (chunk: Buffer) => {
            if (!out.includes('loaded') && (out + String(chunk)).includes('loaded') && ++loaded === 4) allLoaded();
            out += String(chunk);
          });
          child.stderr.on('data', (chunk: Buffer) => (err += chunk));
          child.on('error', fail);
          child.on('close', (code) => (code === 0 ? done(out.replace('loaded', '').trim()) : fail(new Error(`child exited ${String(code)}: ${err}`))));
        }),
      );
      await ready;
      await new Promise((done) => setTimeout(done, 500)); // they are now waiting for the lock
      legacy.exec('ROLLBACK');
      legacy.close();
      expect(await Promise.all(outputs)).toEqual(['ann1,ann2', 'ann1,ann2', 'ann1,ann2', 'ann1,ann2']);

      const migrated = new SqliteProvider({ path: old });
      const check = new Database(old, { readonly: true });
      try {
        const columns = (check.prepare('PRAGMA table_info(sessions)').all() as { name: string }[]).map((column) => column.name);
        expect(columns).toEqual(['sid', 'values_json', 'created_at', 'expires_at', 'user_id']);
        expect(check.prepare('SELECT sid, user_id FROM sessions ORDER BY sid').all()).toEqual([
          { sid: 'ann1', user_id: '"ann"' },
          { sid: 'ann2', user_id: '"ann"' },
          { sid: 'anon', user_id: null },
          { sid: 'bob', user_id: '"bob"' },
        ]);
        expect((await migrated.listByUser('bob', now)).map((entry) => entry.sid)).toEqual(['bob']);
        // A read-only connection to a migrated table opens (nothing left to write).
        const readonly = new SqliteProvider({ database: check });
        await expect(readonly.listByUser('ann', now)).resolves.toHaveLength(2);
        await readonly.close();
      } finally {
        check.close();
        await migrated.close();
      }
    }, 30_000);
  });

  describe('entries', () => {
    it('pages through many rows, each exactly once, while writes go on between pages', async () => {
      const sids = Array.from({ length: 450 }, (_, i) => `s${String(i).padStart(4, '0')}`);
      for (const sid of sids) await provider.create(sid, json({ sid }), now, now + MINUTE);
      const seen: string[] = [];
      for await (const entry of provider.entries(now)) {
        seen.push(entry.sid);
        if (seen.length === 250) await provider.destroy('s0001'); // a write mid-iteration must not fail
      }
      expect(seen).toHaveLength(450);
      expect(new Set(seen).size).toBe(450);
    });
  });

  describe('group commit', () => {
    it('applies the writes of one turn together, each answering for itself, a session twice in order', async () => {
      const sids = Array.from({ length: 100 }, (_, i) => `s${i}`);
      for (const sid of sids) await provider.create(sid, json({ n: 0 }), now, now + MINUTE);
      const answers = await Promise.all([
        ...sids.map((sid, i) => provider.update(sid, json({ n: i }), now + 2 * MINUTE, now)),
        provider.update('s0', json({ n: 'again', m: 1 }), now + 2 * MINUTE, now),
        provider.update('missing', json({ n: 1 }), now + 2 * MINUTE, now),
        provider.touch('s1', now + 3 * MINUTE, now),
        provider.touch('missing', now + 3 * MINUTE, now),
      ]);
      expect(answers).toEqual([...sids.map(() => true), true, false, true, false]);
      expect(Object.fromEntries((await provider.read('s0'))!.values)).toEqual({ n: '"again"', m: '1' });
      expect(Object.fromEntries((await provider.read('s99'))!.values)).toEqual({ n: '99' });
      expect((await provider.read('s1'))!.expiresAt).toBe(now + 3 * MINUTE);
    });

    it('fails only the write the database refuses, not the others of its turn', async () => {
      for (const sid of ['a', 'bad', 'c']) await provider.create(sid, new Map(), now, now + MINUTE);
      const other = new Database(path);
      other.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON sessions WHEN NEW.sid = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END`);
      other.close();
      const settled = await Promise.allSettled(['a', 'bad', 'c'].map((sid) => provider.update(sid, json({ x: 1 }), now + MINUTE, now)));
      expect(settled.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect((settled[1] as PromiseRejectedResult).reason).toBeInstanceOf(ProviderError);
      expect(Object.fromEntries((await provider.read('c'))!.values)).toEqual({ x: '1' });
      expect(Object.fromEntries((await provider.read('bad'))!.values)).toEqual({});
    });

    it('makes the writes already accepted when closed before the end of the turn', async () => {
      await provider.create('s', new Map(), now, now + MINUTE);
      const written = provider.update('s', json({ kept: true }), now + MINUTE, now);
      await provider.close();
      await expect(written).resolves.toBe(true);
      const reopened = new SqliteProvider({ path });
      expect(Object.fromEntries((await reopened.read('s'))!.values)).toEqual({ kept: 'true' });
      await reopened.close();
    });
  });

  describe('when a row is corrupt', () => {
    it('reports it and treats the session as absent', async () => {
      await provider.create('bad', json({ a: 1 }), now, now + MINUTE);
      await provider.create('good', json({ a: 1 }), now, now + MINUTE);
      const other = new Database(path);
      other.prepare('UPDATE sessions SET values_json = ? WHERE sid = ?').run('{"a": 1', 'bad');
      other.close();
      await expect(provider.read('bad')).resolves.toBeUndefined();
      await expect(provider.update('bad', json({ b: 2 }), now + MINUTE, now)).resolves.toBe(false);
      const listed = [];
      for await (const entry of provider.entries(now)) listed.push(entry.sid);
      expect(listed).toEqual(['good']);
      expect(reported).toHaveLength(3);
      for (const err of reported) expect(err).toBeInstanceOf(ProviderError);
    });
  });

  describe('when the database cannot be written', () => {
    // Tests run as root, so file permissions block nothing; these faults stop root too.
    it('rejects with ProviderError on a read-only connection', async () => {
      const readonly = new Database(path, { readonly: true });
      const blocked = new SqliteProvider({ database: readonly });
      await expect(blocked.create('x', new Map(), now, now + MINUTE)).rejects.toBeInstanceOf(ProviderError);
      await expect(blocked.read('x')).resolves.toBeUndefined();
      await blocked.close();
      readonly.close();
    });

    it('rejects with ProviderError when another process holds the write lock past busyTimeoutMs', async () => {
      await provider.create('locked', new Map(), now, now + MINUTE);
      const impatient = new SqliteProvider({ path, busyTimeoutMs: 50 });
      const holder = new Database(path);
      holder.exec('BEGIN IMMEDIATE');
      try {
        const err = await impatient.update('locked', json({ a: 1 }), now + MINUTE, now).catch((error: unknown) => error);
        expect(err).toBeInstanceOf(ProviderError);
        expect((err as ProviderError).status).toBe(503);
        expect((err as Error).message).toMatch(/locked|busy/i);
      } finally {
        holder.exec('ROLLBACK');
        holder.close();
        await impatient.close();
      }
      await expect(provider.read('locked')).resolves.toMatchObject({ values: new Map() });
    });

    it('throws ProviderError at construction when the file cannot be opened', () => {
      expect(() => new SqliteProvider({ path: join(path, 'no', 'such', 'folder.db') })).toThrow(ProviderError);
    });

    it('rejects every call after close()', async () => {
      await provider.close();
      await expect(provider.count(now)).rejects.toThrow(/closed/);
      await expect(provider.gc(now)).rejects.toBeInstanceOf(ProviderError);
    });
  });

  describe('options', () => {
    it('rejects bad options by name', () => {
      expect(() => new SqliteProvider({} as SqliteOptions)).toThrow(/exactly one of the options path and database/);
      expect(() => new SqliteProvider({ path, table: 'x; DROP TABLE y' })).toThrow(/option table/);
      expect(() => new SqliteProvider({ path, gcBatchSize: 0 })).toThrow(/option gcBatchSize/);
      expect(() => new SqliteProvider({ path, file: path } as unknown as SqliteOptions)).toThrow(OptionError);
      expect(() => new SqliteProvider({ path, file: path } as unknown as SqliteOptions)).toThrow(/unknown option file/);
      const closed = new Database(':memory:');
      closed.close();
      expect(() => new SqliteProvider({ database: closed })).toThrow(/option database/);
    });
  });

  describe('without better-sqlite3 installed', () => {
    it('imports without loading it, and throws the OptionError every provider throws for a missing driver', () => {
      const result = spawnSync(process.execPath, [join(__dirname, '..', 'support', 'sqlite-without-driver.js')], {
        cwd: resolve(__dirname, '..', '..'),
        encoding: 'utf8',
      });
      expect(result.stderr).toBe('');
      const outcome = JSON.parse(result.stdout);
      expect(outcome).toMatchObject({
        driverLoadedByImport: false,
        message: expect.stringContaining('Cannot import `better-sqlite3`: install it or pass `database`'),
        name: 'OptionError',
      });
      // `import { sessions } from 'session-manager'` must not need the driver either (once lib/index.ts exists).
      expect(['ok', 'no lib/index.ts yet']).toContain(outcome.indexImport);
    });
  });
});
