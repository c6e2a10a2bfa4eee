import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OptionError, ProviderError } from '../../lib/errors';
import { FileProvider, type FileOptions } from '../../lib/providers/file';
import { USER_KEY, type Provider } from '../../lib/providers/provider';
import { providerConformance } from '../../lib/testing';

const MINUTE = 60_000;
const roots = new Map<Provider, string>();

/** The names in the sessions folder, but the expiry index `index/` and the ownership folder `owner/`. */
const listing = (dir: string): string[] => readdirSync(dir).filter((name) => name !== 'index' && name !== 'owner');

/** A provider over `<fresh temp root>/sessions`, so a test can see whether anything lands beside the folder. */
function freshProvider(options: Partial<FileOptions> = {}): { provider: FileProvider; root: string; dir: string } {
  const root = mkdtempSync(join(tmpdir(), 'sm-file-'));
  const dir = join(root, 'sessions');
  const provider = new FileProvider({ dir, ...options });
  roots.set(provider, root);
  return { provider, root, dir };
}

/**
 * A second instance over the folder of `provider`, resolved once the first has handed the folder
 * over (a write of the second waits for that): from then on both take the per-session lock files.
 */
async function shareFolder(dir: string): Promise<FileProvider> {
  const other = new FileProvider({ dir });
  await other.destroy('no such session');
  return other;
}

async function dispose(provider: Provider): Promise<void> {
  await provider.close();
  rmSync(roots.get(provider)!, { recursive: true, force: true });
  roots.delete(provider);
}

const fileOf = (dir: string, sid: string): string => join(dir, `${createHash('sha256').update(sid).digest('hex')}.json`);
/** The folder of a provider that `freshProvider` made. */
const dirOf = (provider: Provider): string => join(roots.get(provider)!, 'sessions');

providerConformance({ describe, it, expect, beforeEach, afterEach }, () => freshProvider().provider, {
  name: 'file',
  destroy: dispose,
  skip: [{ reason: 'every read goes to the disk: no synchronous read', groups: ['readNow'] }],
  persistent: {
    reopen: (provider) => new FileProvider({ dir: dirOf(provider) }),
    processOptions: (provider) => ({ name: 'file', options: { dir: dirOf(provider) } }),
    perProcess: 150,
    afterProcesses: (provider, sid) => {
      const dir = dirOf(provider);
      expect(listing(dir)).toEqual([fileOf(dir, sid).slice(dir.length + 1)]); // no lock or temp file left
    },
  },
});
providerConformance({ describe, it, expect, beforeEach, afterEach }, () => freshProvider({ fsync: true }).provider, {
  name: 'file (fsync)',
  destroy: dispose,
  skip: [
    { reason: 'every read goes to the disk: no synchronous read', groups: ['readNow'] },
    { reason: 'the storage-outlives-the-instance cases run once, without fsync', groups: ['persistent'] },
  ],
});

const decodedValues = (values: Map<string, string>): Record<string, unknown> =>
  Object.fromEntries([...values].map(([key, text]) => [key, JSON.parse(text)]));

const json = (entries: Record<string, unknown>): Map<string, string> =>
  new Map(Object.entries(entries).map(([key, value]) => [key, JSON.stringify(value)]));

describe('file provider', () => {
  let provider: FileProvider;
  let root: string;
  let dir: string;
  let reported: Error[];
  let now: number;

  beforeEach(() => {
    reported = [];
    ({ provider, root, dir } = freshProvider({ onError: (err) => reported.push(err) }));
    now = Date.now();
  });

  afterEach(() => dispose(provider));

  describe('when ids are hostile', () => {
    const hostile = ['../escape', '../../escape-too', '/etc/passwd', 'a\u0000b', 'x'.repeat(300), '.', '..', '', 'CaSe', 'case'];

    it('keeps every id inside the folder, as its own session', async () => {
      for (const sid of hostile) await expect(provider.create(sid, json({ sid }), now, now + MINUTE)).resolves.toBe(true);
      for (const sid of hostile) {
        expect((await provider.read(sid))!.values.get('sid')).toBe(JSON.stringify(sid));
        await expect(provider.update(sid, json({ more: 1 }), now + MINUTE, now)).resolves.toBe(true);
      }
      expect(readdirSync(root)).toEqual(['sessions']);
      expect(existsSync(join(tmpdir(), 'escape-too'))).toBe(false);
      const names = listing(dir);
      expect(names).toHaveLength(hostile.length); // 'CaSe' and 'case' stay apart, and no temp or lock file is left
      for (const name of names) expect(name).toMatch(/^[0-9a-f]{64}\.json$/);
      const listed = [];
      for await (const entry of provider.entries(now)) listed.push(entry.sid);
      expect(listed.sort()).toEqual([...hostile].sort());
      for (const sid of hostile) await provider.destroy(sid);
      expect(listing(dir)).toEqual([]);
      await expect(provider.count(now)).resolves.toBe(0);
    });
  });

  describe('when a file is corrupt or truncated', () => {
    it('reports garbage and treats the session as absent', async () => {
      const sid = 'garbage';
      await provider.create(sid, json({ a: 1 }), now, now + MINUTE);
      writeFileSync(fileOf(dir, sid), '\u0000\u0001 not json');
      await expect(provider.read(sid)).resolves.toBeUndefined();
      await expect(provider.update(sid, json({ b: 2 }), now + MINUTE, now)).resolves.toBe(false);
      expect(reported.length).toBeGreaterThanOrEqual(2);
      for (const err of reported) {
        expect(err).toBeInstanceOf(ProviderError);
        expect(err.message).not.toContain(sid);
      }
    });

    it('reports a truncated file, skips it in entries, and gc moves it aside once it expires', async () => {
      await provider.create('whole', json({ a: 1 }), now, now + MINUTE);
      await provider.create('cut', json({ a: 'x'.repeat(100) }), now, now + MINUTE);
      const cut = fileOf(dir, 'cut');
      truncateSync(cut, Math.floor(statSync(cut).size / 2));
      await expect(provider.read('cut')).resolves.toBeUndefined();
      await expect(provider.count(now)).resolves.toBe(2); // count trusts the index, which opens no file
      const listed = [];
      for await (const entry of provider.entries(now)) listed.push(entry.sid);
      expect(listed).toEqual(['whole']);
      reported.length = 0;
      await expect(provider.gc(now)).resolves.toBe(0);
      expect(reported).toEqual([]); // not expired yet: gc does not look at it
      await expect(provider.gc(now + 2 * MINUTE)).resolves.toBe(1); // 'whole'
      expect(reported).toHaveLength(1);
      expect(reported[0].message).toMatch(/moved the corrupt session file/);
      expect(existsSync(cut)).toBe(false);
      expect(existsSync(cut.replace(/\.json$/, '.corrupt'))).toBe(true);
      await expect(provider.create('cut', json({ fresh: true }), now, now + MINUTE)).resolves.toBe(true);
    });

    it('treats a valid file copied under another id as corrupt', async () => {
      await provider.create('alice', json({ user: 'alice' }), now, now + MINUTE);
      writeFileSync(fileOf(dir, 'mallory'), readFileSync(fileOf(dir, 'alice')));
      await expect(provider.read('mallory')).resolves.toBeUndefined();
      expect(reported).toHaveLength(1);
    });

    it('survives an onError that throws', async () => {
      const throwing = new FileProvider({ dir, onError: () => { throw new Error('reporter broke'); } });
      writeFileSync(fileOf(dir, 'bad'), '{');
      await expect(throwing.read('bad')).resolves.toBeUndefined();
      await throwing.close();
    });
  });

  describe('move', () => {
    it('leaves only the new owner-only file, no lock or temp file', async () => {
      await provider.create('old', json({ user: 'ann' }), now, now + MINUTE);
      await expect(provider.move('old', 'new', new Map(), now, now + MINUTE, now)).resolves.toEqual(json({ user: 'ann' }));
      expect(listing(dir)).toEqual([fileOf(dir, 'new').slice(dir.length + 1)]);
      expect(statSync(fileOf(dir, 'new')).mode & 0o777).toBe(0o600);
    });

    it('takes the two locks in a fixed order, so crossed moves never wait for each other', async () => {
      const pairs = Array.from({ length: 10 }, (_, i) => [`x${i}`, `y${i}`]);
      for (const [x, y] of pairs) {
        await provider.create(x, json({ who: x }), now, now + MINUTE);
        await provider.create(y, json({ who: y }), now, now + MINUTE);
      }
      // Each move holds one lock while it waits for the other: in opposite orders they would deadlock.
      const results = await Promise.all(
        pairs.flatMap(([x, y]) => [provider.move(x, y, new Map(), now, now + MINUTE, now), provider.move(y, x, new Map(), now, now + MINUTE, now)]),
      );
      expect(results).toEqual(Array(20).fill(false)); // both ids taken: nothing changes
      for (const id of pairs.flat()) expect((await provider.read(id))!.values.get('who')).toBe(JSON.stringify(id));
    });

    it('waits while another process holds the lock of the new id', async () => {
      const other = await shareFolder(dir);
      await provider.create('from', json({ a: 1 }), now, now + MINUTE);
      const lock = fileOf(dir, 'to').replace(/\.json$/, '.lock');
      writeFileSync(lock, '');
      let settled = false;
      const pending = provider.move('from', 'to', new Map(), now, now + MINUTE, now).finally(() => (settled = true));
      await new Promise((done) => setTimeout(done, 150));
      expect(settled).toBe(false);
      await expect(provider.read('from')).resolves.toBeDefined();
      rmSync(lock);
      await expect(pending).resolves.toEqual(json({ a: 1 }));
      await expect(provider.read('from')).resolves.toBeUndefined();
      await other.close();
    });
  });

  describe('when another process holds the lock', () => {
    const lockOf = (sid: string): string => fileOf(dir, sid).replace(/\.json$/, '.lock');
    let other: FileProvider;

    // Lock files matter only while the folder is shared: a second instance makes it so.
    beforeEach(async () => {
      other = await shareFolder(dir);
    });
    afterEach(() => other.close());

    it('waits for it to be released', async () => {
      await provider.create('busy', new Map(), now, now + MINUTE);
      writeFileSync(lockOf('busy'), '');
      let settled = false;
      const pending = provider.update('busy', json({ a: 1 }), now + MINUTE, now).finally(() => (settled = true));
      await new Promise((done) => setTimeout(done, 150));
      expect(settled).toBe(false);
      rmSync(lockOf('busy'));
      await expect(pending).resolves.toBe(true);
    });

    it('takes over a lock left by a crash once it is stale', async () => {
      await provider.create('crashed', new Map(), now, now + MINUTE);
      writeFileSync(lockOf('crashed'), '');
      const hourAgo = new Date(Date.now() - 60 * MINUTE);
      utimesSync(lockOf('crashed'), hourAgo, hourAgo);
      await expect(provider.update('crashed', json({ a: 1 }), now + MINUTE, now)).resolves.toBe(true);
      expect(existsSync(lockOf('crashed'))).toBe(false);
    });

    it('takes over a lock that stays held past lockStaleMs', async () => {
      const impatient = new FileProvider({ dir, lockStaleMs: 200 });
      await impatient.create('stuck', new Map(), now, now + MINUTE);
      writeFileSync(lockOf('stuck'), '');
      const started = Date.now();
      await expect(impatient.update('stuck', json({ a: 1 }), now + MINUTE, now)).resolves.toBe(true);
      expect(Date.now() - started).toBeGreaterThanOrEqual(150);
      await impatient.close();
    });
  });

  describe('the expiry index', () => {
    const hashOf = (sid: string): string => createHash('sha256').update(sid).digest('hex');
    /** The index entries of the folder, as `<expiresAt>.<hash>`, bucket folders flattened. */
    const entriesOf = (): string[] =>
      readdirSync(join(dir, 'index'))
        .filter((name) => /^\d+$/.test(name))
        .flatMap((bucket) => readdirSync(join(dir, 'index', bucket)))
        .sort();

    it('keeps one entry per session, named by its expiry, through create, update, move and destroy', async () => {
      await provider.create('a', new Map(), now, now + MINUTE);
      await provider.create('b', new Map(), now, now + MINUTE);
      await provider.update('a', json({ n: 1 }), now + 7 * MINUTE, now);
      await provider.move('b', 'c', new Map(), now, now + 9 * MINUTE, now);
      expect(entriesOf()).toEqual([`${now + 7 * MINUTE}.${hashOf('a')}`, `${now + 9 * MINUTE}.${hashOf('c')}`].sort());
      await provider.destroy('a');
      expect(entriesOf()).toEqual([`${now + 9 * MINUTE}.${hashOf('c')}`]);
      await expect(provider.count(now)).resolves.toBe(1);
    });

    it('counts what another instance over the folder did', async () => {
      const other = new FileProvider({ dir });
      try {
        for (const sid of ['x', 'y', 'z']) await other.create(sid, new Map(), now, now + 10 * MINUTE);
        await expect(provider.count(now)).resolves.toBe(3);
        await other.destroy('x');
        await provider.update('y', json({ a: 1 }), now + MINUTE, now); // expires sooner now
        await expect(provider.count(now)).resolves.toBe(2);
        await expect(other.count(now + 2 * MINUTE)).resolves.toBe(1);
      } finally {
        await other.close();
      }
    });

    it('is built on first use in a folder written before it existed', async () => {
      const old = join(root, 'old');
      mkdirSync(old);
      const write = (sid: string, expiresAt: number): void =>
        writeFileSync(fileOf(old, sid), JSON.stringify({ v: 1, sid, createdAt: now, expiresAt, values: { n: '1' } }));
      for (let i = 0; i < 30; i++) write(`live${i}`, now + 10 * MINUTE);
      for (let i = 0; i < 20; i++) write(`gone${i}`, now + MINUTE);
      const opened = new FileProvider({ dir: old });
      try {
        await expect(opened.count(now)).resolves.toBe(50);
        await expect(opened.count(now + 2 * MINUTE)).resolves.toBe(30);
        await expect(opened.gc(now + 2 * MINUTE)).resolves.toBe(20);
        const listed = [];
        for await (const entry of opened.entries(now)) listed.push(entry.sid);
        expect(listed).toHaveLength(30);
        expect(existsSync(join(old, 'index', 'v1'))).toBe(true);
      } finally {
        await opened.close();
      }
      const again = new FileProvider({ dir: old });
      await expect(again.count(now)).resolves.toBe(30); // built once: the next instance reads the journal
      await again.close();
    });

    it('repairs a stale entry when gc meets it: the live session is indexed again, not deleted, and listed once', async () => {
      await provider.create('s', json({ a: 1 }), now, now + 10 * MINUTE);
      const bucketOf = (t: number): string => join(dir, 'index', String(t - (t % (5 * MINUTE))));
      // As if a crash had left the entry of an older expiry (the move of the entry lost).
      mkdirSync(bucketOf(now + MINUTE), { recursive: true });
      renameSync(join(bucketOf(now + 10 * MINUTE), `${now + 10 * MINUTE}.${hashOf('s')}`), join(bucketOf(now + MINUTE), `${now + MINUTE}.${hashOf('s')}`));
      mkdirSync(bucketOf(now + 3 * MINUTE), { recursive: true });
      writeFileSync(join(bucketOf(now + 3 * MINUTE), `${now + 3 * MINUTE}.${hashOf('gone')}`), ''); // an entry whose session never came
      await expect(provider.gc(now + 5 * MINUTE)).resolves.toBe(0);
      expect(entriesOf()).toEqual([`${now + 10 * MINUTE}.${hashOf('s')}`]);
      const listed = [];
      for await (const entry of provider.entries(now + 5 * MINUTE)) listed.push(entry.sid);
      expect(listed).toEqual(['s']);
      expect(readdirSync(join(dir, 'index')).filter((name) => name.startsWith('claim.'))).toEqual([]);
    });

    it('takes over the claims of a gc that crashed', async () => {
      await provider.create('s', new Map(), now, now + MINUTE);
      const claim = join(dir, 'index', 'claim.999999.0123456789ab');
      mkdirSync(claim);
      const bucket = String(now + MINUTE - ((now + MINUTE) % (5 * MINUTE)));
      renameSync(join(dir, 'index', bucket, `${now + MINUTE}.${hashOf('s')}`), join(claim, `${now + MINUTE}.${hashOf('s')}`));
      const old = new Date(Date.now() - 10 * MINUTE);
      utimesSync(claim, old, old);
      const gone: string[] = [];
      await expect(provider.gc(now + 2 * MINUTE, (sid) => gone.push(sid))).resolves.toBe(1);
      expect(gone).toEqual(['s']);
      expect(existsSync(claim)).toBe(false);
    });
  });

  describe('when one process owns the folder', () => {
    const lockOf = (sid: string): string => fileOf(dir, sid).replace(/\.json$/, '.lock');

    it('writes without lock files, and takes them again once another instance opens the folder', async () => {
      await provider.create('s', new Map(), now, now + MINUTE);
      writeFileSync(lockOf('s'), ''); // alone in the folder, nobody else can hold it: ignored
      await expect(provider.update('s', json({ a: 1 }), now + MINUTE, now)).resolves.toBe(true);
      expect(readdirSync(join(dir, 'owner')).sort()).toEqual(['members', 'owner']);

      const other = await shareFolder(dir); // resolves once the first has handed over
      expect(existsSync(join(dir, 'owner', 'owner'))).toBe(false);
      expect(readdirSync(join(dir, 'owner', 'members'))).toHaveLength(2);
      let settled = false;
      const pending = provider.update('s', json({ b: 2 }), now + MINUTE, now).finally(() => (settled = true));
      await new Promise((done) => setTimeout(done, 100));
      expect(settled).toBe(false); // the lock file counts now
      rmSync(lockOf('s'));
      await expect(pending).resolves.toBe(true);
      expect(decodedValues((await other.read('s'))!.values)).toEqual({ a: 1, b: 2 });
      await other.close();
      expect(readdirSync(join(dir, 'owner', 'members'))).toHaveLength(1);
    });

    it('keeps the folder while another instance only reads (count, entries, read)', async () => {
      await provider.create('s', new Map(), now, now + MINUTE);
      const reader = new FileProvider({ dir });
      try {
        await expect(reader.count(now)).resolves.toBe(1);
        await expect(reader.read('s')).resolves.toBeDefined();
        for await (const entry of reader.entries(now)) expect(entry.sid).toBe('s');
        expect(readdirSync(join(dir, 'owner', 'members'))).toHaveLength(1); // not one of the writers
        writeFileSync(lockOf('s'), '');
        await expect(provider.update('s', json({ a: 1 }), now + MINUTE, now)).resolves.toBe(true); // still the owner
        rmSync(lockOf('s'));
      } finally {
        await reader.close();
      }
    });

    it('hands over without losing a write that was running, and takes the folder back when alone again', async () => {
      const quick = new FileProvider({ dir: join(root, 'quick'), lockStaleMs: 200 }); // heartbeat every 50 ms
      await quick.create('s', new Map(), now, now + MINUTE);
      const writes = Array.from({ length: 40 }, (_, i) => quick.update('s', json({ [`q${i}`]: i }), now + MINUTE, now));
      const other = new FileProvider({ dir: join(root, 'quick') });
      const theirs = Array.from({ length: 40 }, (_, i) => other.update('s', json({ [`o${i}`]: i }), now + MINUTE, now));
      await expect(Promise.all([...writes, ...theirs])).resolves.toEqual(Array(80).fill(true));
      expect(Object.keys(decodedValues((await quick.read('s'))!.values))).toHaveLength(80);
      await other.close();
      await new Promise((done) => setTimeout(done, 150));
      expect(readFileSync(join(root, 'quick', 'owner', 'owner'), 'utf8')).toMatch(new RegExp(`^${process.pid}\\.`));
      await quick.close();
      expect(readdirSync(join(root, 'quick', 'owner')).sort()).toEqual(['members']);
    });

    it('takes the folder from an owner that died without cleaning up', async () => {
      const crashed = join(root, 'crashed');
      mkdirSync(join(crashed, 'owner', 'members'), { recursive: true });
      writeFileSync(join(crashed, 'owner', 'members', '999999.0123456789ab.200'), '');
      writeFileSync(join(crashed, 'owner', 'owner'), '999999.0123456789ab.200');
      const old = new Date(Date.now() - MINUTE);
      utimesSync(join(crashed, 'owner', 'members', '999999.0123456789ab.200'), old, old);
      const next = new FileProvider({ dir: crashed, lockStaleMs: 200 });
      await expect(next.create('s', new Map(), now, now + MINUTE)).resolves.toBe(true);
      await new Promise((done) => setTimeout(done, 150));
      expect(readdirSync(join(crashed, 'owner', 'members'))).toHaveLength(1);
      expect(readFileSync(join(crashed, 'owner', 'owner'), 'utf8')).toMatch(new RegExp(`^${process.pid}\\.`));
      await next.close();
    });
  });

  describe('gc', () => {
    it('walks a large folder in batches, deleting exactly the expired sessions and old temp files', async () => {
      const expired = Array.from({ length: 150 }, (_, i) => `old${i}`);
      const live = Array.from({ length: 70 }, (_, i) => `new${i}`);
      await Promise.all(expired.map((sid) => provider.create(sid, json({ sid }), now, now + MINUTE)));
      await Promise.all(live.map((sid) => provider.create(sid, json({ sid }), now, now + 10 * MINUTE)));
      const hex = 'a'.repeat(64);
      writeFileSync(join(dir, `${hex}.0123456789ab.tmp`), 'left by a crash');
      writeFileSync(join(dir, `${hex}.ba9876543210.tmp`), 'being written right now');
      utimesSync(join(dir, `${hex}.0123456789ab.tmp`), new Date(now - 2 * 60 * MINUTE), new Date(now - 2 * 60 * MINUTE));
      writeFileSync(join(dir, 'README'), 'not ours');

      const gone: string[] = [];
      await expect(provider.gc(now + 2 * MINUTE, (sid) => gone.push(sid))).resolves.toBe(150);
      expect(gone.sort()).toEqual([...expired].sort());
      await expect(provider.count(now + 2 * MINUTE)).resolves.toBe(70);
      expect(listing(dir).filter((name) => !name.endsWith('.json')).sort()).toEqual(['README', `${hex}.ba9876543210.tmp`]);
    });

    it('sweeps past an entry it cannot read, then rejects naming it', async () => {
      await provider.create('expired', new Map(), now, now + MINUTE);
      await provider.create('a folder, not a file', new Map(), now, now + MINUTE);
      rmSync(fileOf(dir, 'a folder, not a file'));
      mkdirSync(fileOf(dir, 'a folder, not a file'));
      const gone: string[] = [];
      const err = await provider.gc(now + 2 * MINUTE, (sid) => gone.push(sid)).catch((error: unknown) => error);
      expect(err).toBeInstanceOf(ProviderError);
      expect((err as Error).message).toMatch(/gc deleted 1 sessions but failed on 1 files: EISDIR/);
      expect(gone).toEqual(['expired']);
    });

    it('does not delete a session that an update extended in the meantime', async () => {
      await provider.create('racing', new Map(), now, now + MINUTE);
      // The update queues for the lock first; gc peeks at the old, expired file, then must re-read under the lock.
      const [extended, deleted] = await Promise.all([
        provider.update('racing', json({ a: 1 }), now + 10 * MINUTE, now),
        provider.gc(now + MINUTE),
      ]);
      expect([extended, deleted]).toEqual([true, 0]);
      expect((await provider.read('racing'))!.expiresAt).toBe(now + 10 * MINUTE);
    });
  });

  describe('when the folder cannot be written', () => {
    // Tests run as root, for whom chmod 0500 blocks nothing. Replacing the folder
    // by a regular file is a fault that stops root too: every path inside it
    // fails with ENOTDIR, like a folder on a volume that went away.
    it('rejects with ProviderError instead of answering as if it worked', async () => {
      await provider.create('before', json({ a: 1 }), now, now + MINUTE);
      rmSync(dir, { recursive: true });
      writeFileSync(dir, 'not a folder');
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['create', () => provider.create('new', new Map(), now, now + MINUTE)],
        ['read', () => provider.read('before')],
        ['update', () => provider.update('before', json({ b: 2 }), now + MINUTE, now)],
        ['touch', () => provider.touch('before', now + MINUTE, now)],
        ['destroy', () => provider.destroy('before')],
        ['gc', () => provider.gc(now)],
        ['count', () => provider.count(now)],
        ['entries', async () => { for await (const _ of provider.entries(now)) break; }],
        ['listByUser', () => provider.listByUser('ann', now)],
      ];
      for (const [name, call] of calls) {
        const err = await call().then(() => undefined, (error: unknown) => error);
        expect([name, err]).toEqual([name, expect.any(ProviderError)]);
        expect((err as ProviderError).status).toBe(503);
      }
    });

    it('rejects a read whose file is not a regular file, rather than calling it absent', async () => {
      mkdirSync(fileOf(dir, 'odd'));
      await expect(provider.read('odd')).rejects.toBeInstanceOf(ProviderError);
    });

    it('throws ProviderError at construction when the folder cannot be created', () => {
      writeFileSync(join(root, 'file'), '');
      expect(() => new FileProvider({ dir: join(root, 'file', 'sessions') })).toThrow(ProviderError);
    });
  });

  describe('sessions by user', () => {
    const bound = (user: string, extra: Record<string, unknown> = {}): Map<string, string> => json({ ...extra, [USER_KEY]: user });
    const userDir = (user: string): string => join(dir, 'users', createHash('sha256').update(user).digest('base64url'));
    const markerOf = (user: string, sid: string): string => join(userDir(user), fileOf(dir, sid).slice(dir.length + 1));
    const listed = async (user: string, at = now): Promise<string[]> => (await provider.listByUser(user, at)).map((entry) => entry.sid).sort();

    it('marks a bound session with an empty owner-only file in its user folder, which count, entries and gc ignore', async () => {
      await provider.create('a', bound('ann'), now, now + MINUTE);
      await provider.create('b', json({ n: 1 }), now, now + MINUTE);
      expect(readdirSync(userDir('ann'))).toEqual([fileOf(dir, 'a').slice(dir.length + 1)]);
      expect(statSync(markerOf('ann', 'a')).size).toBe(0);
      expect(statSync(markerOf('ann', 'a')).mode & 0o777).toBe(0o600);
      expect(statSync(userDir('ann')).mode & 0o777).toBe(0o700);
      await expect(provider.count(now)).resolves.toBe(2);
      const entries = [];
      for await (const entry of provider.entries(now)) entries.push(entry.sid);
      expect(entries.sort()).toEqual(['a', 'b']);
      await expect(provider.gc(now + 2 * MINUTE)).resolves.toBe(2);
      expect(listing(dir)).toEqual(['users']);
      expect(readdirSync(join(dir, 'users'))).toEqual([]); // the sweep took the marker and the emptied user folder
      expect(reported).toEqual([]);
    });

    it('moves the marker as the session is rebound, moved, unbound and destroyed', async () => {
      await provider.create('s', json({ n: 1 }), now, now + MINUTE);
      expect(existsSync(join(dir, 'users'))).toBe(false); // nothing until a session is bound
      await provider.update('s', bound('ann'), now + MINUTE, now);
      expect(existsSync(markerOf('ann', 's'))).toBe(true);
      await provider.update('s', bound('bob'), now + MINUTE, now);
      expect([existsSync(userDir('ann')), existsSync(markerOf('bob', 's'))]).toEqual([false, true]);
      await provider.move('s', 't', new Map(), now, now + MINUTE, now);
      expect(readdirSync(userDir('bob'))).toEqual([fileOf(dir, 't').slice(dir.length + 1)]);
      await provider.move('t', 'u', new Map([[USER_KEY, JSON.stringify('cy')]]), now, now + MINUTE, now);
      expect([existsSync(userDir('bob')), existsSync(markerOf('cy', 'u'))]).toEqual([false, true]);
      await provider.update('u', new Map([[USER_KEY, undefined]]), now + MINUTE, now);
      expect(existsSync(userDir('cy'))).toBe(false);
      await provider.update('u', bound('di'), now + MINUTE, now);
      await provider.touch('u', now + 2 * MINUTE, now);
      expect(await listed('di')).toEqual(['u']);
      await provider.destroy('u');
      expect(readdirSync(join(dir, 'users'))).toEqual([]);
      expect(listing(dir)).toEqual(['users']); // no lock or temp file either
    });

    it('trusts the session file over a marker, and prunes the markers that are stale', async () => {
      await provider.create('mine', bound('ann', { n: 1 }), now, now + MINUTE);
      await provider.create('theirs', bound('bob'), now, now + MINUTE);
      await provider.create('expired', bound('ann'), now, now + MINUTE / 4);
      writeFileSync(markerOf('ann', 'theirs'), ''); // as if a rebind crashed half-way
      writeFileSync(markerOf('ann', 'gone'), ''); // as if a create crashed before its session file
      writeFileSync(join(userDir('ann'), 'README'), 'not ours');
      const found = await provider.listByUser('ann', now + MINUTE / 2);
      expect(found.map((entry) => [entry.sid, entry.values.get('n')])).toEqual([['mine', '1']]);
      await expect(listed('ann', now + 2 * MINUTE)).resolves.toEqual([]);
      const names = readdirSync(userDir('ann')).sort();
      expect(names).toEqual([fileOf(dir, 'expired'), fileOf(dir, 'mine')].map((path) => path.slice(dir.length + 1)).concat('README').sort());
      expect(await listed('bob')).toEqual(['theirs']); // its own marker stays
      expect(reported).toEqual([]);
    });

    it('drops the marker of a corrupt session file, reporting it', async () => {
      await provider.create('bad', bound('ann'), now, now + MINUTE);
      writeFileSync(fileOf(dir, 'bad'), '{');
      await expect(provider.listByUser('ann', now)).resolves.toEqual([]);
      expect(existsSync(userDir('ann'))).toBe(false);
      expect(reported).toHaveLength(1);
    });

    it('never loses a marker to a listing that runs while sessions are created and rebound', async () => {
      const sids = Array.from({ length: 60 }, (_, i) => `c${i}`);
      await Promise.all([
        ...sids.map(async (sid, i) => {
          if (i % 2 === 0) await provider.create(sid, bound('ann'), now, now + MINUTE);
          else {
            await provider.create(sid, json({ n: i }), now, now + MINUTE);
            await provider.update(sid, bound('ann'), now + MINUTE, now);
          }
        }),
        ...sids.map(() => provider.listByUser('ann', now)),
      ]);
      expect(await listed('ann')).toEqual([...sids].sort());
      expect(readdirSync(userDir('ann'))).toHaveLength(sids.length);
    });

    it('lists what another instance over the same folder bound', async () => {
      const other = new FileProvider({ dir });
      try {
        await other.create('x', bound('ann'), now, now + MINUTE);
        expect(await listed('ann')).toEqual(['x']);
        await provider.destroy('x');
        await expect(other.listByUser('ann', now)).resolves.toEqual([]);
      } finally {
        await other.close();
      }
    });
  });

  describe('options and lifecycle', () => {
    it('rejects bad options by name', () => {
      expect(() => new FileProvider({} as FileOptions)).toThrow(/option dir/);
      expect(() => new FileProvider({ dir, fsync: 'yes' } as unknown as FileOptions)).toThrow(/option fsync/);
      expect(() => new FileProvider({ dir, lockStaleMs: 0 })).toThrow(/option lockStaleMs/);
      expect(() => new FileProvider({ dir, folder: dir } as unknown as FileOptions)).toThrow(OptionError);
      expect(() => new FileProvider({ dir, folder: dir } as unknown as FileOptions)).toThrow(/unknown option folder/);
    });

    it('creates the folder and files readable by the owner only', async () => {
      await provider.create('secret', json({ token: 't' }), now, now + MINUTE);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(fileOf(dir, 'secret')).mode & 0o777).toBe(0o600);
    });

    it('finishes queued writes on close and refuses calls afterwards', async () => {
      await provider.create('closing', new Map(), now, now + MINUTE);
      const writes = Array.from({ length: 10 }, (_, i) => provider.update('closing', json({ [`k${i}`]: i }), now + MINUTE, now));
      await provider.close();
      await expect(Promise.all(writes)).resolves.toEqual(Array(10).fill(true));
      expect(listing(dir)).toHaveLength(1);
      await expect(provider.read('closing')).rejects.toThrow(/closed/);
    });
  });
});
