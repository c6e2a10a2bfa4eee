import { createClient, createCluster } from 'redis';
import IORedis from 'ioredis';
import { ProviderError } from '../../lib/errors';
import { USER_KEY } from '../../lib/providers/provider';
import { RedisProvider } from '../../lib/providers/redis';
import { userHash } from '../../lib/providers/redis-scripts';
import { providerConformance } from '../../lib/testing';
import { eventually, rejectionTime } from '../support/provider-waits';
import {
  missingDriverMessage,
  restartRedis,
  skipReason,
  startRedis,
  stopRedis,
  discard,
  redisBinary,
  type RedisServer,
} from '../support/services';

const reason = skipReason('redis');
if (reason) console.warn(`Skipping the Redis provider tests: ${reason}`);
const describeRedis = reason ? describe.skip : describe;
const url = process.env.REDIS_URL ?? '';

let counter = 0;
/** A prefix no other test (or test run) uses, so tests sharing the server never see each other's keys. */
function uniquePrefix(): string {
  counter += 1;
  return `test:${process.pid}:${counter}:${Math.random().toString(36).slice(2, 8)}:`;
}

/** Deletes every key under the provider's prefix, then closes it. */
async function cleanUp(provider: RedisProvider): Promise<void> {
  const client = createClient({ url });
  await client.connect();
  try {
    for await (const keys of client.scanIterator({ MATCH: `${provider.prefix}*`, COUNT: 500 })) {
      if (keys.length > 0) await client.del(keys);
    }
  } finally {
    client.destroy();
  }
  await provider.close();
}

const MINUTE = 60_000;
/** How long a test waits for the client to reconnect by itself (backoff up to ~2 s). */
const RECONNECT_MS = 10_000;
const one = (key: string, json: string): Map<string, string> => new Map([[key, json]]);

describeRedis('redis provider', () => {
  providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new RedisProvider({ url, prefix: uniquePrefix() }), {
    name: 'redis',
    skip: [{ reason: 'sessions live on a server: no synchronous read', groups: ['readNow'] }],
    destroy: (provider) => cleanUp(provider as RedisProvider),
    persistent: {
      reopen: (provider) => new RedisProvider({ url, prefix: (provider as RedisProvider).prefix }),
      processOptions: (provider) => ({ name: 'redis', options: { url, prefix: (provider as RedisProvider).prefix } }),
      perProcess: 200,
      inFlight: 10,
    },
  });

  describe('storage layout', () => {
    it('keeps one hash per session at prefix{sid}, values under v:, metadata under m:, with a TTL', async () => {
      const provider = new RedisProvider({ url, prefix: uniquePrefix() });
      const client = await createClient({ url }).connect();
      try {
        const now = Date.now();
        await provider.create('abc', new Map([['m:e', '"user key named like metadata"'], ['n', '1']]), now, now + MINUTE);
        const key = `${provider.prefix}{abc}`;
        expect(await client.hGetAll(key)).toEqual({
          'm:c': String(now),
          'm:e': String(now + MINUTE),
          'v:m:e': '"user key named like metadata"',
          'v:n': '1',
        });
        expect(await client.pExpireTime(key)).toBe(now + MINUTE);
        expect((await provider.read('abc'))!.values.get('m:e')).toBe('"user key named like metadata"');
      } finally {
        client.destroy();
        await cleanUp(provider);
      }
    });

    it('does not count keys of a longer prefix that starts with its own', async () => {
      const prefix = uniquePrefix();
      const [short, long] = [new RedisProvider({ url, prefix }), new RedisProvider({ url, prefix: `${prefix}x` })];
      try {
        const now = Date.now();
        await short.create('a', new Map(), now, now + MINUTE);
        await long.create('b', new Map(), now, now + MINUTE);
        await expect(short.count(now)).resolves.toBe(1);
      } finally {
        await cleanUp(long);
        await cleanUp(short);
      }
    });

    it('lists more sessions than one page (all of one expiry: the cursor orders ids), each once', async () => {
      const provider = new RedisProvider({ url, prefix: uniquePrefix() });
      try {
        const now = Date.now();
        await Promise.all(Array.from({ length: 1200 }, (_, i) => provider.create(`s${i}`, one('i', String(i)), now, now + MINUTE)));
        await expect(provider.count(now)).resolves.toBe(1200);
        const seen = new Set<string>();
        for await (const entry of provider.entries(now)) seen.add(entry.sid);
        expect(seen.size).toBe(1200);
      } finally {
        await cleanUp(provider);
      }
    });
  });

  describe('indexes', () => {
    let provider: RedisProvider;
    let client: ReturnType<typeof createClient>;
    beforeEach(async () => {
      provider = new RedisProvider({ url, prefix: uniquePrefix() });
      client = await createClient({ url }).connect();
    });
    afterEach(async () => {
      client.destroy();
      await cleanUp(provider);
    });
    const bound = (user: string, extra: Record<string, string> = {}): Map<string, string> => new Map([...Object.entries(extra), [USER_KEY, JSON.stringify(user)]]);
    const userSet = (user: string): string => `${provider.prefix}user:{${userHash(user)}}:sids`;
    const expiries = (): string => `${provider.prefix}expiries`;

    it('keeps expiries (score expiresAt) and a set per user with m:u in the hash, the set expiring with its last session', async () => {
      const now = Date.now();
      await provider.create('a', bound('ann'), now, now + MINUTE);
      await provider.create('b', bound('ann'), now, now + 2 * MINUTE);
      await provider.create('c', one('n', '1'), now, now + MINUTE);
      expect(await client.zRangeWithScores(expiries(), 0, -1)).toEqual([
        { value: 'a', score: now + MINUTE },
        { value: 'c', score: now + MINUTE },
        { value: 'b', score: now + 2 * MINUTE },
      ]);
      expect(await client.zRangeWithScores(userSet('ann'), 0, -1)).toEqual([
        { value: 'a', score: now + MINUTE },
        { value: 'b', score: now + 2 * MINUTE },
      ]);
      expect(await client.pExpireTime(userSet('ann'))).toBe(now + 2 * MINUTE);
      expect(await client.hGet(`${provider.prefix}{a}`, 'm:u')).toBe(userHash('ann'));
      expect(Boolean(await client.hExists(`${provider.prefix}{c}`, 'm:u'))).toBe(false);

      await provider.touch('a', now + 5 * MINUTE, now);
      expect(await client.zScore(userSet('ann'), 'a')).toBe(now + 5 * MINUTE);
      expect(await client.zScore(expiries(), 'a')).toBe(now + 5 * MINUTE);
      expect(await client.pExpireTime(userSet('ann'))).toBe(now + 5 * MINUTE);
    });

    it('follows rebinding, unbinding, move and destroy, leaving no index entry behind', async () => {
      const now = Date.now();
      await provider.create('a', bound('ann'), now, now + MINUTE);
      await provider.update('a', bound('bob'), now + MINUTE, now);
      expect(await client.exists(userSet('ann'))).toBe(0);
      expect(await client.zRange(userSet('bob'), 0, -1)).toEqual(['a']);
      await provider.move('a', 'a2', new Map(), now, now + MINUTE, now);
      expect(await client.zRange(userSet('bob'), 0, -1)).toEqual(['a2']);
      expect(await client.zRange(expiries(), 0, -1)).toEqual(['a2']);
      await provider.move('a2', 'a3', bound('cy'), now, now + MINUTE, now);
      expect([await client.exists(userSet('bob')), await client.zRange(userSet('cy'), 0, -1)]).toEqual([0, ['a3']]);
      await provider.update('a3', new Map([[USER_KEY, undefined]]), now + MINUTE, now);
      expect(await client.exists(userSet('cy'))).toBe(0);
      expect(Boolean(await client.hExists(`${provider.prefix}{a3}`, 'm:u'))).toBe(false);
      await provider.update('a3', bound('dee'), now + MINUTE, now);
      await provider.update('a3', new Map([[USER_KEY, '42']]), now + MINUTE, now); // not a JSON string: bound to no one
      expect(await client.exists(userSet('dee'))).toBe(0);
      await provider.update('a3', bound('eve'), now + MINUTE, now);
      await provider.destroy('a3');
      expect(await client.keys(`${provider.prefix}*`)).toEqual([]);
    });

    it('gc reports sessions Redis already deleted at their TTL, once, and count() drops them', async () => {
      const now = Date.now();
      await provider.create('short', bound('ann'), now, now + 50);
      await provider.create('long', bound('ann'), now, now + MINUTE);
      await eventually(async () => {
        if ((await client.exists(`${provider.prefix}{short}`)) !== 0) throw new Error('not yet expired');
      }, 5000);
      const later = Date.now();
      await expect(provider.count(later)).resolves.toBe(1);
      const [first, second] = [new RedisProvider({ url, prefix: provider.prefix }), new RedisProvider({ url, prefix: provider.prefix })];
      const reported: string[] = [];
      const counts = await Promise.all([first.gc(later, (sid) => reported.push(sid)), second.gc(later, (sid) => reported.push(sid))]);
      await Promise.all([first.close(), second.close()]);
      expect([counts.sort(), reported]).toEqual([[0, 1], ['short']]);
      expect(await client.zRange(expiries(), 0, -1)).toEqual(['long']);
      expect((await provider.listByUser('ann', later)).map((entry) => entry.sid)).toEqual(['long']);
    });

    it('gc collects more than one batch', async () => {
      const now = Date.now();
      await Promise.all(Array.from({ length: 1100 }, (_, i) => provider.create(`s${i}`, new Map(), now, now + MINUTE)));
      let reported = 0;
      await expect(provider.gc(now + 2 * MINUTE, () => (reported += 1))).resolves.toBe(1100);
      expect([reported, await client.exists(expiries())]).toEqual([1100, 0]);
    });

    it('lists each session once while sessions are touched, destroyed and created during the walk', async () => {
      const now = Date.now();
      const sids = Array.from({ length: 1200 }, (_, i) => `s${String(i).padStart(4, '0')}`);
      await Promise.all(sids.map((sid, i) => provider.create(sid, new Map(), now, now + MINUTE + (i % 3))));
      // The index's order: by expiry, then by id. The first page ends at ordered[499], the next page's cursor.
      const ordered = sids.map((sid, i) => ({ sid, rank: i % 3 })).sort((a, b) => a.rank - b.rank || (a.sid < b.sid ? -1 : 1));
      const seen: string[] = [];
      for await (const entry of provider.entries(now)) {
        seen.push(entry.sid);
        if (seen.length === 100) {
          // Ahead of the cursor and behind it: touched far ahead, destroyed, and a new one.
          await Promise.all(sids.filter((_, i) => i % 10 === 0).map((sid) => provider.touch(sid, now + 10 * MINUTE, now)));
          await provider.destroy(sids[1199]);
          await provider.destroy(ordered[499].sid); // the cursor itself goes: the next page still starts right after it
          await provider.create('new', new Map(), now, now + 3 * MINUTE);
        }
      }
      expect(seen.length).toBe(new Set(seen).size);
      expect(seen.sort()).toEqual([...sids.slice(0, 1199), 'new'].sort());
    });

    it('prunes ids whose session is gone or bound to someone else when listByUser meets them', async () => {
      const now = Date.now();
      await provider.create('mine', bound('ann'), now, now + MINUTE);
      await provider.create('theirs', bound('bob'), now, now + MINUTE);
      // What the scripts never leave, but a hash deleted behind their back (or by an older version) would.
      await client.zAdd(userSet('ann'), [{ score: now + MINUTE, value: 'gone' }, { score: now + MINUTE, value: 'theirs' }]);
      expect((await provider.listByUser('ann', now)).map((entry) => entry.sid)).toEqual(['mine']);
      expect(await client.zRange(userSet('ann'), 0, -1)).toEqual(['mine']);
      expect(await client.zRange(userSet('bob'), 0, -1)).toEqual(['theirs']);
    });

    it('counts a session written before the indexes existed only from its next write that moves its expiry', async () => {
      const now = Date.now();
      await client.hSet(`${provider.prefix}{old}`, { 'm:c': String(now), 'm:e': String(now + MINUTE), 'v:n': '1' });
      await client.pExpireAt(`${provider.prefix}{old}`, now + MINUTE);
      await expect(provider.count(now)).resolves.toBe(0);
      // A write that keeps the expiry (the common one: it slides on the touchAfter schedule) leaves TTL and indexes alone.
      await expect(provider.update('old', new Map([['n', '2']]), now + MINUTE, now)).resolves.toBe(true);
      await expect(provider.count(now)).resolves.toBe(0);
      await provider.touch('old', now + 2 * MINUTE, now);
      await expect(provider.count(now)).resolves.toBe(1);
      expect(await client.pExpireTime(`${provider.prefix}{old}`)).toBe(now + 2 * MINUTE);
    });
  });

  describe('when the app passes its own client', () => {
    it('uses a node-redis client and leaves it open after close()', async () => {
      const client = await createClient({ url }).connect();
      const provider = new RedisProvider({ client, prefix: uniquePrefix() });
      try {
        const now = Date.now();
        await provider.create('mine', one('a', '1'), now, now + MINUTE);
        await provider.close();
        await expect(client.ping()).resolves.toBe('PONG');
        await expect(client.exists(`${provider.prefix}{mine}`)).resolves.toBe(1);
      } finally {
        await cleanUp(new RedisProvider({ url, prefix: provider.prefix }));
        client.destroy();
      }
    });

    it('uses an ioredis client and leaves it open after close()', async () => {
      const client = new IORedis(url);
      await new Promise((resolve) => client.once('ready', resolve)); // "a connected client"
      const provider = new RedisProvider({ client, prefix: uniquePrefix() });
      try {
        const now = Date.now();
        await provider.create('io', one('a', '1'), now, now + MINUTE);
        await expect(provider.update('io', one('b', '2'), now + MINUTE, now)).resolves.toBe(true);
        expect(Object.fromEntries((await provider.read('io'))!.values)).toEqual({ a: '1', b: '2' });
        await expect(provider.count(now)).resolves.toBe(1);
        await provider.close();
        await expect(client.ping()).resolves.toBe('PONG');
      } finally {
        await cleanUp(new RedisProvider({ url, prefix: provider.prefix }));
        client.disconnect();
      }
    });

    it('rejects a client of another kind at construction, and takes Cluster clients (the Cluster layout)', async () => {
      expect(() => new RedisProvider({ client: {} as never })).toThrow(/option client is invalid/);
      // Neither connects: constructing them is enough (the Cluster suites run against a real cluster).
      const ioCluster = new IORedis.Cluster([url], { lazyConnect: true });
      for (const client of [createCluster({ rootNodes: [{ url }] }), ioCluster]) {
        const provider = new RedisProvider({ client: client as never });
        expect(provider.isCluster).toBe(true);
        await provider.close();
      }
      ioCluster.disconnect();
      const single = new RedisProvider({ url });
      expect(single.isCluster).toBe(false);
      await single.close();
    });

    it('rejects a prefix with a brace, which would change the Cluster hash tag', () => {
      expect(() => new RedisProvider({ url, prefix: 'app{x}:' })).toThrow(/option prefix is invalid/);
    });
  });

  describe('when the script cache is flushed', () => {
    it('falls back from EVALSHA to EVAL', async () => {
      const provider = new RedisProvider({ url, prefix: uniquePrefix() });
      const client = await createClient({ url }).connect();
      try {
        await client.scriptFlush();
        const now = Date.now();
        await expect(provider.create('flushed', new Map(), now, now + MINUTE)).resolves.toBe(true);
        await client.scriptFlush();
        await expect(provider.touch('flushed', now + 2 * MINUTE, now)).resolves.toBe(true);
      } finally {
        client.destroy();
        await cleanUp(provider);
      }
    });
  });

  // Fault tests stop and restart a private server, never the shared one other suites use.
  const describeFault = redisBinary() === undefined ? describe.skip : describe;
  if (redisBinary() === undefined) console.warn('Skipping the fault tests: redis-server is not installed here');
  describeFault('when the server goes away and comes back', () => {
    let server: RedisServer;
    beforeAll(async () => {
      server = await startRedis();
    });
    afterAll(async () => {
      await discard(server);
    });

    it('rejects with ProviderError at once while it is down, and works again after a restart on the same port', async () => {
      const provider = new RedisProvider({ url: server.url, prefix: 'fault:' });
      const now = Date.now();
      await provider.create('before', new Map(), now, now + MINUTE);

      await stopRedis(server);
      for (const call of [provider.read('before'), provider.update('before', one('a', '1'), now + MINUTE, now), provider.count(now)]) {
        const { ms, error } = await rejectionTime(call);
        expect(error).toBeInstanceOf(ProviderError);
        expect(ms).toBeLessThan(1000);
      }

      server = await restartRedis(server);
      // The client reconnects by itself (backoff up to ~2 s); the server restarted empty.
      await eventually(() => provider.read('before'), RECONNECT_MS);
      await expect(provider.create('after', one('a', '1'), now, now + MINUTE)).resolves.toBe(true);
      expect((await provider.read('after'))!.values.get('a')).toBe('1');
      await provider.close();
    });

    it('fails fast with a passed-in client that would queue commands offline', async () => {
      const client = createClient({ url: server.url });
      client.on('error', () => undefined); // the app's business; this test only needs the process to stay up
      await client.connect();
      const provider = new RedisProvider({ client });
      await stopRedis(server);
      const { ms, error } = await rejectionTime(provider.read('x'));
      expect(error).toBeInstanceOf(ProviderError);
      expect(ms).toBeLessThan(1000);
      server = await restartRedis(server);
      await eventually(() => provider.read('x'), RECONNECT_MS);
      await provider.close();
      client.destroy();
    });

    it('rejects within timeoutMs when the server hangs (SIGSTOP), and works once it resumes', async () => {
      const provider = new RedisProvider({ url: server.url, prefix: 'hang:', timeoutMs: 300 });
      await provider.destroy('warm-up'); // connected
      process.kill(server.pid, 'SIGSTOP');
      try {
        const { ms, error } = await rejectionTime(provider.read('x'));
        expect(error).toBeInstanceOf(ProviderError);
        expect((error as Error).message).toMatch(/timed out after 300 ms/);
        expect(ms).toBeLessThan(1000);
      } finally {
        process.kill(server.pid, 'SIGCONT');
      }
      await expect(eventually(() => provider.read('x'), RECONNECT_MS)).resolves.toBeUndefined();
      await provider.close();
    });

    it('rejects within timeoutMs when Redis is unreachable from the start', async () => {
      const port = server.port;
      await stopRedis(server);
      const provider = new RedisProvider({ url: `redis://127.0.0.1:${port}`, timeoutMs: 2000 });
      const first = await rejectionTime(provider.read('x'));
      expect(first.error).toBeInstanceOf(ProviderError);
      expect(first.ms).toBeLessThan(2500);
      const second = await rejectionTime(provider.read('x'));
      expect(second.ms).toBeLessThan(1000);
      await provider.close();
      server = await restartRedis(server);
    });
  });

  it('says how to fix a missing driver', async () => {
    await expect(missingDriverMessage('redis', 'RedisProvider', { url })).resolves.toMatch('Cannot import `redis`: install it or pass `client`');
  });
});
