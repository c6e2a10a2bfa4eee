// The Redis provider given `url` when the installed `redis` is node-redis 6 (what
// `npm install redis` gives today): it creates its own node-redis 6 client. Here
// `redis` is resolved to the real node-redis 6 package (installed as the alias
// `redis6`); nothing of it is mocked.
import { ProviderError } from '../../lib/errors';
import { RedisProvider } from '../../lib/providers/redis';
import { providerConformance } from '../../lib/testing';
import { eventually, rejectionTime } from '../support/provider-waits';
import { discard, redisBinary, restartRedis, skipReason, startRedis, stopRedis, type RedisServer } from '../support/services';

jest.mock('redis', () => jest.requireActual('redis6'));

const reason = skipReason('redis');
if (reason) console.warn(`Skipping the Redis provider tests with node-redis 6: ${reason}`);
const describeRedis = reason ? describe.skip : describe;
const url = process.env.REDIS_URL ?? '';
const MINUTE = 60_000;

let counter = 0;
function uniquePrefix(): string {
  counter += 1;
  return `url6:${process.pid}:${counter}:${Math.random().toString(36).slice(2, 8)}:`;
}

/** Deletes the provider's keys with the provider's own kind of client, then closes it. */
async function cleanUp(provider: RedisProvider): Promise<void> {
  const { createClient } = jest.requireActual<typeof import('redis6')>('redis6');
  const client = await createClient({ url }).connect();
  try {
    for await (const keys of client.scanIterator({ MATCH: `${provider.prefix}*`, COUNT: 500 })) {
      if (keys.length > 0) await client.del(keys);
    }
  } finally {
    client.destroy();
  }
  await provider.close();
}

describeRedis('redis provider with url, node-redis 6 installed', () => {
  it('really gets node-redis 6 for `redis`', () => {
    expect(jest.requireActual<{ version: string }>('redis6/package.json').version).toMatch(/^6\./);
    expect((require('redis') as typeof import('redis6')).createClient).toBe(jest.requireActual<typeof import('redis6')>('redis6').createClient);
  });

  providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new RedisProvider({ url, prefix: uniquePrefix() }), {
    name: 'redis (url, node-redis 6)',
    destroy: (provider) => cleanUp(provider as RedisProvider),
    skip: [
      { reason: 'sessions live on a server: no synchronous read', groups: ['readNow'] },
      { reason: 'the two-process cases run in redis-drivers.test.ts (node-redis 6 children included)', groups: ['persistent'] },
    ],
  });

  const describeFault = redisBinary() === undefined ? describe.skip : describe;
  describeFault('when the server goes away and comes back', () => {
    let server: RedisServer;
    beforeAll(async () => {
      server = await startRedis();
    });
    afterAll(async () => {
      await discard(server);
    });

    it('rejects with ProviderError at once while it is down, and works again after a restart', async () => {
      const provider = new RedisProvider({ url: server.url, prefix: 'fault6:' });
      const now = Date.now();
      await provider.create('before', new Map([['a', '1']]), now, now + MINUTE);
      expect((await provider.read('before'))!.values.get('a')).toBe('1');

      await stopRedis(server);
      const { ms, error } = await rejectionTime(provider.read('before'));
      expect(error).toBeInstanceOf(ProviderError);
      expect(ms).toBeLessThan(1000);

      server = await restartRedis(server);
      await eventually(() => provider.read('before'), 10_000);
      await expect(provider.create('after', new Map(), now, now + MINUTE)).resolves.toBe(true);
      await provider.close();
    });
  });
});
