import { createClient, createCluster } from 'redis';
import IORedis from 'ioredis';
import { ProviderError } from '../../lib/errors';
import { RedisProvider } from '../../lib/providers/redis';
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
    gcByBackend: 'Redis deletes each session at its expiresAt by itself (PEXPIREAT), so gc() resolves 0',
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

    it('lists more sessions than one SCAN page, each once', async () => {
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

    it('rejects a client of another kind, and Cluster clients, at construction', () => {
      expect(() => new RedisProvider({ client: {} as never })).toThrow(/option client is invalid/);
      // Neither connects: constructing them is enough to show they are refused.
      expect(() => new RedisProvider({ client: createCluster({ rootNodes: [{ url }] }) as never })).toThrow(/Cluster clients are not supported/);
      const ioCluster = new IORedis.Cluster([url], { lazyConnect: true });
      expect(() => new RedisProvider({ client: ioCluster as never })).toThrow(/Cluster clients are not supported/);
      ioCluster.disconnect();
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
