// The Redis provider's options, checked at construction (no server needed):
// unknown names, malformed URLs, clients it refuses or takes, and a missing driver.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createCluster } from 'redis';
import { createCluster as createCluster6 } from 'redis6';
import IORedis from 'ioredis';
import IORedis5 from 'ioredis5';
import { OptionError } from '../../lib/errors';
import { RedisProvider, type RedisOptions } from '../../lib/providers/redis';
import { resolveProvider } from '../../lib/providers/registry';

const ROOT = join(__dirname, '..', '..');
/** Nothing listens there: construction never connects. */
const NO_SERVER = 'redis://127.0.0.1:1';

/** The OptionError `build` throws (failing the test when it throws nothing or something else). */
function optionError(build: () => unknown): OptionError {
  try {
    build();
  } catch (error) {
    expect(error).toBeInstanceOf(OptionError);
    return error as OptionError;
  }
  throw new Error('expected an OptionError');
}

/** Constructing never connects; closing releases the client the provider made. */
async function constructs(options: RedisOptions): Promise<void> {
  await new RedisProvider(options).close();
}

describe('redis provider options', () => {
  it('names an unknown option, in the constructor and through the registry', () => {
    expect(optionError(() => new RedisProvider({ url: NO_SERVER, prefx: 'app:' } as RedisOptions)).message).toMatch(/unknown option prefx/);
    expect(optionError(() => resolveProvider('redis', { url: NO_SERVER, timeout: 100 })).message).toMatch(/unknown option timeout/);
  });

  it.each([
    ['another scheme', 'http://127.0.0.1:6379'],
    ['no scheme', '127.0.0.1:6379'],
    ['a missing colon', 'redis//127.0.0.1'],
    ['an unparsable host', 'redis://[::1'],
    ['an empty string', ''],
    ['a number', 6379],
  ])('refuses a url with %s, naming url', (_, url) => {
    expect(optionError(() => new RedisProvider({ url: url as string })).message).toMatch(/option url is invalid/);
  });

  it('keeps the url out of the message: it may hold a password', () => {
    expect(optionError(() => new RedisProvider({ url: 'http://user:hunter2@127.0.0.1' })).message).not.toContain('hunter2');
  });

  it.each(['redis://127.0.0.1:6379/2', 'rediss://user:password@cache.example:6380', 'redis://'])('accepts %s', async (url) => {
    await expect(constructs({ url })).resolves.toBeUndefined();
  });

  it('wants exactly one of url, cluster and client', () => {
    expect(optionError(() => new RedisProvider({})).message).toMatch(/give option url .* or client/);
    const client = new IORedis({ lazyConnect: true });
    expect(optionError(() => new RedisProvider({ url: NO_SERVER, client })).message).toMatch(/give one of option url, option cluster or option client/);
    client.disconnect();
  });

  it('refuses a client it cannot drive', () => {
    expect(optionError(() => new RedisProvider({ client: {} as never })).message).toMatch(/option client is invalid/);
    expect(optionError(() => new RedisProvider({ client: null as never })).message).toMatch(/option client is invalid/);
  });

  it('takes Cluster clients of every driver (the Cluster layout), without connecting them', async () => {
    const clusters = [
      createCluster({ rootNodes: [{ url: NO_SERVER }] }),
      createCluster6({ rootNodes: [{ url: NO_SERVER }] }),
      new IORedis.Cluster([NO_SERVER], { lazyConnect: true }),
      new IORedis5.Cluster([NO_SERVER], { lazyConnect: true }),
    ];
    for (const cluster of clusters) {
      const provider = new RedisProvider({ client: cluster as never });
      expect(provider.isCluster).toBe(true);
      await provider.close();
    }
    for (const cluster of clusters) if ('disconnect' in cluster) cluster.disconnect();
  });

  it('checks option cluster: root nodes with redis:// urls, and not with url or client', async () => {
    for (const cluster of [{}, { rootNodes: [] }, { rootNodes: 'redis://127.0.0.1:1' }, null]) {
      expect(optionError(() => new RedisProvider({ cluster: cluster as never })).message).toMatch(/option cluster is invalid/);
    }
    const withPassword = { rootNodes: [{ url: 'http://user:hunter2@127.0.0.1:7000' }] };
    const message = optionError(() => new RedisProvider({ cluster: withPassword })).message;
    expect(message).toMatch(/option cluster.rootNodes is invalid/);
    expect(message).not.toContain('hunter2');
    expect(optionError(() => new RedisProvider({ url: NO_SERVER, cluster: { rootNodes: [{ url: NO_SERVER }] } })).message).toMatch(/give one of/);
    const provider = new RedisProvider({ cluster: { rootNodes: [{ url: NO_SERVER }] } });
    expect(provider.isCluster).toBe(true);
    await provider.close();
  });

  it('checks waitReplicas and waitTimeoutMs', async () => {
    expect(optionError(() => new RedisProvider({ url: NO_SERVER, waitReplicas: -1 })).message).toMatch(/option waitReplicas is invalid/);
    expect(optionError(() => new RedisProvider({ url: NO_SERVER, waitReplicas: 1.5 })).message).toMatch(/option waitReplicas is invalid/);
    expect(optionError(() => new RedisProvider({ url: NO_SERVER, waitTimeoutMs: 0 })).message).toMatch(/option waitTimeoutMs is invalid/);
    expect(optionError(() => new RedisProvider({ url: NO_SERVER, timeoutMs: 1000, waitTimeoutMs: 1000 })).message).toMatch(/below timeoutMs/);
    const provider = new RedisProvider({ url: NO_SERVER, waitReplicas: 1, timeoutMs: 600 });
    expect([provider.waitReplicas, provider.waitTimeoutMs]).toEqual([1, 300]);
    await provider.close();
  });

  it('refuses an ioredis client with a keyPrefix, which SCAN would not apply', () => {
    const clients = [
      new IORedis({ lazyConnect: true, keyPrefix: 'app:' }),
      new IORedis5({ lazyConnect: true, keyPrefix: 'app:' }),
      new IORedis.Cluster([NO_SERVER], { lazyConnect: true, keyPrefix: 'app:' }),
      new IORedis.Cluster([NO_SERVER], { lazyConnect: true, redisOptions: { keyPrefix: 'app:' } }),
    ];
    for (const client of clients) {
      expect(optionError(() => new RedisProvider({ client: client as never })).message).toMatch(/keyPrefix \(use the option prefix instead\)/);
      client.disconnect();
    }
  });
});

describe('redis provider without the redis package', () => {
  // A real Node process in which `redis` cannot be resolved, as if it were not installed.
  const child = `
    const Module = require('node:module');
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (request === 'redis') throw Object.assign(new Error("Cannot find module 'redis'"), { code: 'MODULE_NOT_FOUND' });
      return resolve.call(this, request, ...rest);
    };
    const { RedisProvider } = require('./lib/providers/redis.ts');
    const loaded = () => Object.keys(require.cache).some((path) => /[\\\\/]node_modules[\\\\/]@?redis[\\\\/]/.test(path));
    const result = { loadedByImport: loaded() };
    try {
      new RedisProvider({ url: 'redis://127.0.0.1:1' });
    } catch (error) {
      Object.assign(result, { name: error.name, message: error.message });
    }
    const IORedis = require('ioredis').default;
    const client = new IORedis({ lazyConnect: true });
    new RedisProvider({ client });
    client.disconnect();
    result.loadedWithClient = loaded();
    console.log(JSON.stringify(result));`;

  it('throws an OptionError saying how to fix it, and works with a client of another package', () => {
    const run = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', child], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
    expect(run.stderr).toBe('');
    const result = JSON.parse(run.stdout.trim());
    expect(result).toEqual({
      loadedByImport: false,
      name: 'OptionError',
      message: expect.stringContaining('Cannot import `redis`: install it or pass `client`'),
      loadedWithClient: false,
    });
  });
});
