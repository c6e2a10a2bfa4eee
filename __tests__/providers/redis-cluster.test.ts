// The Redis provider on a real Redis Cluster (3 masters, 1 replica each,
// started by this file: see __tests__/support/redis-cluster.ts): the whole
// conformance suite with node-redis (option `cluster`) and with an ioredis
// `Cluster` client, then the Cluster layout itself: sessions on every master,
// index entries that converge.
import { createClient, createCluster } from 'redis';
import { createCluster as createCluster6 } from 'redis6';
import IORedis from 'ioredis';
import { ProviderError } from '../../lib/errors';
import { USER_KEY } from '../../lib/providers/provider';
import { RedisProvider } from '../../lib/providers/redis';
import { EXPIRY_SHARDS, expiryShard, expiryShardKey } from '../../lib/providers/redis-cluster-scripts';
import { sessionKey, userHash, userKey } from '../../lib/providers/redis-scripts';
import { main } from '../../lib/cli/run';
import { createManager } from '../../lib/index';
import { providerConformance } from '../../lib/testing';
import { clusterSkipReason, startRedisCluster, stopRedisCluster, topology, type RedisCluster } from '../support/redis-cluster';

const reason = clusterSkipReason();
if (reason) console.warn(`Skipping the Redis Cluster tests: ${reason}`);
const describeCluster = reason ? describe.skip : describe;

const MINUTE = 60_000;
let counter = 0;
function uniquePrefix(): string {
  counter += 1;
  return `ctest:${process.pid}:${counter}:${Math.random().toString(36).slice(2, 8)}:`;
}

let cluster: RedisCluster;

/** A plain client per master (the cluster does not fail over in this file), for looking at the keys from outside. */
let masters: Map<number, ReturnType<typeof createClient>>;

/** The keys under `prefix` on each master (SCAN of each node: test code only), by master port. */
async function keysByMaster(prefix: string): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  for (const [port, client] of masters) {
    const keys: string[] = [];
    for await (const page of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...page);
    out.set(port, keys);
  }
  return out;
}

/** Deletes every key under the provider's prefix (key by key: one DEL may not span slots), then closes it. */
async function cleanUp(provider: RedisProvider): Promise<void> {
  try {
    for (const [port, keys] of await keysByMaster(provider.prefix)) await Promise.all(keys.map((key) => masters.get(port)!.unlink(key)));
  } finally {
    await provider.close();
  }
}

const owned = (user: string, extra: Record<string, unknown> = {}): Map<string, string> =>
  new Map(Object.entries({ ...extra, [USER_KEY]: user }).map(([key, value]) => [key, JSON.stringify(value)]));

describeCluster('redis provider on a Redis Cluster', () => {
  beforeAll(async () => {
    cluster = await startRedisCluster();
    masters = new Map();
    for (const port of (await topology(cluster)).masters) masters.set(port, await createClient({ url: `redis://127.0.0.1:${port}` }).connect());
  }, 60_000);
  afterAll(async () => {
    for (const client of masters?.values() ?? []) client.destroy();
    await stopRedisCluster(cluster);
  });

  describe('with node-redis (option cluster)', () => {
    providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new RedisProvider({ cluster: { rootNodes: cluster.rootNodes }, prefix: uniquePrefix() }), {
      name: 'redis cluster (node-redis)',
      skip: [{ reason: 'sessions live on a server: no synchronous read', groups: ['readNow'] }],
      destroy: (provider) => cleanUp(provider as RedisProvider),
      persistent: {
        reopen: (provider) => new RedisProvider({ cluster: { rootNodes: cluster.rootNodes }, prefix: (provider as RedisProvider).prefix }),
        processOptions: (provider) => ({ name: 'redis', options: { cluster: { rootNodes: cluster.rootNodes }, prefix: (provider as RedisProvider).prefix } }),
        perProcess: 100,
        inFlight: 10,
      },
    });
  });

  describe('with an ioredis Cluster client', () => {
    let client: InstanceType<typeof IORedis.Cluster>;
    beforeAll(async () => {
      client = new IORedis.Cluster(cluster.rootNodes.map(({ url }) => url));
      await new Promise<void>((resolve, reject) => {
        client.once('ready', () => resolve());
        client.once('error', reject);
      });
    });
    afterAll(() => {
      client.disconnect();
    });

    providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new RedisProvider({ client, prefix: uniquePrefix() }), {
      name: 'redis cluster (ioredis)',
      skip: [{ reason: 'sessions live on a server: no synchronous read', groups: ['readNow'] }],
      destroy: (provider) => cleanUp(provider as RedisProvider),
      persistent: {
        reopen: (provider) => new RedisProvider({ client, prefix: (provider as RedisProvider).prefix }),
        // The children use node-redis: both drivers share the layout.
        processOptions: (provider) => ({ name: 'redis', options: { cluster: { rootNodes: cluster.rootNodes }, prefix: (provider as RedisProvider).prefix } }),
        perProcess: 100,
        inFlight: 10,
      },
    });

    it('leaves the client open on close', async () => {
      await new RedisProvider({ client, prefix: uniquePrefix() }).close();
      await expect(client.call('PING')).resolves.toBe('PONG');
    });

    it('with waitReplicas, sends WAIT to the node it wrote to (a pipeline: WAIT has no key to route by)', async () => {
      const prefix = uniquePrefix();
      const waiting = new RedisProvider({ client, prefix, waitReplicas: 1, waitTimeoutMs: 1000, timeoutMs: 3000 });
      const impossible = new RedisProvider({ client, prefix, waitReplicas: 2, waitTimeoutMs: 100 });
      try {
        const now = Date.now();
        await expect(waiting.create('w', owned('eve'), now, now + MINUTE)).resolves.toBe(true);
        await expect(waiting.update('w', new Map([['a', '1']]), now + MINUTE, now)).resolves.toBe(true);
        await waiting.destroy('w');
        await expect(impossible.create('w2', new Map(), now, now + MINUTE)).rejects.toThrow(/reached 1 of 2 replicas/);
      } finally {
        await impossible.close();
        await cleanUp(waiting);
      }
    });
  });

  describe('with a node-redis 6 Cluster client (RESP3 replies)', () => {
    let client: ReturnType<typeof createCluster6>;
    beforeAll(async () => {
      client = createCluster6({ rootNodes: cluster.rootNodes });
      await client.connect();
    });
    afterAll(async () => {
      await client.close();
    });

    providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new RedisProvider({ client: client as never, prefix: uniquePrefix() }), {
      name: 'redis cluster (node-redis 6 client)',
      skip: [
        { reason: 'sessions live on a server: no synchronous read', groups: ['readNow'] },
        { reason: 'the two-process cases run with node-redis 5 and ioredis above', groups: ['persistent'] },
      ],
      destroy: (provider) => cleanUp(provider as RedisProvider),
    });
  });

  it('the operator CLI reaches a Cluster with --cluster: count, list --user, destroy-user', async () => {
    const prefix = uniquePrefix();
    const manager = createManager({ provider: 'redis', providerOptions: { cluster: { rootNodes: cluster.rootNodes }, prefix } });
    try {
      await manager.create(new Map([['n', '1']]));
      await manager.create(new Map([['n', '2']]), undefined, undefined, 'ann');
      await manager.create(new Map([['n', '3']]), undefined, undefined, 'ann');
      const run = async (...argv: string[]): Promise<{ code: number; json: unknown }> => {
        let out = '';
        const stream = { write: (text: string) => ((out += text), true), once: () => undefined };
        const code = await main([...argv, '--cluster', cluster.rootNodes.map((node) => node.url).join(','), '--prefix', prefix, '--json', '--quiet'], { stdout: stream, stderr: stream, env: {} });
        return { code, json: JSON.parse(out) };
      };
      expect(await run('count')).toEqual({ code: 0, json: { count: 3 } });
      expect(((await run('list', '--user', 'ann')).json as { sessions: unknown[] }).sessions).toHaveLength(2);
      expect(await run('destroy-user', 'ann')).toMatchObject({ code: 0, json: { destroyed: 2 } });
      expect(await manager.count()).toBe(1);
    } finally {
      await cleanUp(manager.provider as RedisProvider);
      await manager.close();
    }
  });

  describe('the Cluster layout', () => {
    let provider: RedisProvider;
    beforeEach(() => {
      provider = new RedisProvider({ cluster: { rootNodes: cluster.rootNodes }, prefix: uniquePrefix() });
    });
    afterEach(async () => {
      await cleanUp(provider);
    });

    it('spreads sessions and index shards over all three masters, and every operation works there', async () => {
      const now = Date.now();
      const users = ['ann', 'bob', 'cy'];
      const sids = Array.from({ length: 60 }, (_, i) => `s${i}`);
      await Promise.all(sids.map((sid, i) => provider.create(sid, owned(users[i % 3], { i }), now, now + MINUTE)));

      const byMaster = await keysByMaster(provider.prefix);
      expect(byMaster.size).toBe(3);
      for (const keys of byMaster.values()) {
        expect(keys.filter((key) => key.endsWith('}')).length).toBeGreaterThan(0); // session hashes on every master
      }
      const shardsUsed = new Set(sids.map(expiryShard));
      const mastersWithShards = [...byMaster.values()].filter((keys) => keys.some((key) => key.startsWith(`${provider.prefix}expiries:{`)));
      expect(shardsUsed.size).toBeGreaterThan(8);
      expect(mastersWithShards.length).toBe(3);

      await expect(provider.count(now)).resolves.toBe(60);
      const listed: string[] = [];
      for await (const entry of provider.entries(now)) listed.push(entry.sid);
      expect(listed.sort()).toEqual([...sids].sort());
      expect((await provider.listByUser('ann', now)).map((entry) => entry.sid).sort()).toEqual(sids.filter((_, i) => i % 3 === 0).sort());

      // Rebind, move (two slots) and destroy, then the indexes agree.
      await expect(provider.update('s1', owned('ann'), now + 2 * MINUTE, now)).resolves.toBe(true);
      await expect(provider.move('s2', 's2-new', new Map([['moved', 'true']]), now, now + MINUTE, now)).resolves.toBeInstanceOf(Map);
      await provider.destroy('s0');
      await expect(provider.count(now)).resolves.toBe(59);
      const ann = (await provider.listByUser('ann', now)).map((entry) => entry.sid);
      expect(ann).toContain('s1');
      expect(ann).not.toContain('s0');
      expect((await provider.listByUser('cy', now)).map((entry) => entry.sid)).toContain('s2-new');
      expect((await provider.listByUser('cy', now)).map((entry) => entry.sid)).not.toContain('s2');

      // All expire: gc reports each once, from every shard, and the shards are empty after.
      const later = now + 3 * MINUTE;
      const reported: string[] = [];
      await expect(provider.gc(later, (sid) => reported.push(sid))).resolves.toBe(59);
      expect(new Set(reported).size).toBe(59);
      await expect(provider.count(now)).resolves.toBe(0);
      const left = await keysByMaster(provider.prefix);
      expect([...left.values()].flat().filter((key) => key.startsWith(`${provider.prefix}expiries:`))).toEqual([]);
    });

    it('prunes an index entry whose session is gone when it meets it, and never lists it', async () => {
      const now = Date.now();
      await provider.create('kept', owned('dee'), now, now + MINUTE);
      await provider.create('lost', owned('dee'), now, now + MINUTE);
      // As if the hash had been lost (a failover, an eviction) while its index entries stayed.
      const direct = await createCluster({ rootNodes: cluster.rootNodes }).connect();
      try {
        await direct.del(sessionKey(provider.prefix, 'lost'));
        const shard = expiryShardKey(provider.prefix, expiryShard('lost'));
        const users = userKey(provider.prefix, userHash('dee'));
        await expect(provider.count(now)).resolves.toBe(2); // counted until met or collected
        expect((await provider.listByUser('dee', now)).map((entry) => entry.sid)).toEqual(['kept']);
        expect(await direct.zScore(users, 'lost')).toBeNull();
        const listed: string[] = [];
        for await (const entry of provider.entries(now)) listed.push(entry.sid);
        expect(listed).toEqual(['kept']);
        expect(await direct.zScore(shard, 'lost')).toBeNull();
        await expect(provider.count(now)).resolves.toBe(1);
      } finally {
        direct.destroy();
      }
    });

    it('fixes the score of a shard entry that lagged behind its session, in gc, without collecting it', async () => {
      const now = Date.now();
      await provider.create('lagging', new Map(), now, now + 10 * MINUTE);
      const shard = expiryShardKey(provider.prefix, expiryShard('lagging'));
      const direct = await createCluster({ rootNodes: cluster.rootNodes }).connect();
      try {
        await direct.zAdd(shard, { score: now - 1, value: 'lagging' });
        await expect(provider.gc(now)).resolves.toBe(0);
        expect(await direct.zScore(shard, 'lagging')).toBe(now + 10 * MINUTE);
        await expect(provider.count(now)).resolves.toBe(1);
      } finally {
        direct.destroy();
      }
    });

    it('uses 16 fixed shards named prefix + expiries:{n}:sids', () => {
      expect(EXPIRY_SHARDS).toBe(16);
      expect(expiryShardKey('sess:', 3)).toBe('sess:expiries:{3}:sids');
      for (const sid of ['a', 'b', 'conf_1_x', 'x'.repeat(43)]) expect(expiryShard(sid)).toBe(expiryShard(sid));
    });

    it('rejects with a ProviderError when no root node answers, and keeps trying on the next call', async () => {
      const unreachable = new RedisProvider({ cluster: { rootNodes: [{ url: 'redis://127.0.0.1:1' }] }, timeoutMs: 1000 });
      try {
        await expect(unreachable.read('x')).rejects.toBeInstanceOf(ProviderError);
        await expect(unreachable.count(Date.now())).rejects.toBeInstanceOf(ProviderError);
      } finally {
        await unreachable.close();
      }
    });

    it('with waitReplicas, acknowledges writes once a replica holds them', async () => {
      const waiting = new RedisProvider({ cluster: { rootNodes: cluster.rootNodes }, prefix: provider.prefix, waitReplicas: 1, waitTimeoutMs: 1000, timeoutMs: 3000 });
      try {
        const now = Date.now();
        await expect(waiting.create('w', owned('eve'), now, now + MINUTE)).resolves.toBe(true);
        await expect(waiting.update('w', new Map([['a', '1']]), now + MINUTE, now)).resolves.toBe(true);
        await expect(waiting.move('w', 'w2', new Map(), now, now + MINUTE, now)).resolves.toBeInstanceOf(Map);
        await waiting.destroy('w2');
      } finally {
        await waiting.close();
      }
      const impossible = new RedisProvider({ cluster: { rootNodes: cluster.rootNodes }, prefix: provider.prefix, waitReplicas: 2, waitTimeoutMs: 100 });
      try {
        const now = Date.now();
        const error = await impossible.create('w3', new Map(), now, now + MINUTE).catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(ProviderError);
        expect((error as Error).message).toMatch(/reached 1 of 2 replicas/);
      } finally {
        await impossible.close();
      }
    });
  });
});
