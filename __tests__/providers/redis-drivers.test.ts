// The Redis provider with every supported driver: node-redis 5 (`redis`) and 6
// (`redis6`), ioredis 6 (`ioredis`) and 5 (`ioredis5`), each passed in as `client`
// and run through the whole conformance suite, two-process cases included (their
// children use the same driver, see redis-drivers.preload.js). Then the reply
// shapes the drivers can be configured to produce, and what may reach an error.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { createClient, RESP_TYPES } from 'redis';
import { createClient as createClient6, RESP_TYPES as RESP_TYPES6 } from 'redis6';
import IORedis from 'ioredis';
import IORedis5 from 'ioredis5';
import { ProviderError } from '../../lib/errors';
import { RedisProvider, type IORedisClient, type NodeRedisClient } from '../../lib/providers/redis';
import { providerConformance, type ConformanceSkip } from '../../lib/testing';
import { eventually } from '../support/provider-waits';
import { freePort, redisBinary, skipReason } from '../support/services';

const reason = skipReason('redis');
if (reason) console.warn(`Skipping the Redis driver tests: ${reason}`);
const describeRedis = reason ? describe.skip : describe;
const url = process.env.REDIS_URL ?? '';
const MINUTE = 60_000;
const NO_READNOW: ConformanceSkip = { reason: 'sessions live on a server: no synchronous read', groups: ['readNow'] };
/** Preloaded into the two-process children, so they use the driver under test (see the file). */
const PRELOAD = join(__dirname, 'redis-drivers.preload.js');

type Package = 'redis' | 'redis6' | 'ioredis' | 'ioredis5';
const version = (pkg: Package): string => (require(`${pkg}/package.json`) as { version: string }).version;

/** A client as the app holds it: handed to the provider, closed by the app. */
interface AppClient {
  client: NodeRedisClient | IORedisClient;
  close(): Promise<void>;
}

interface Driver {
  pkg: Package;
  label: string;
  connect(url: string): Promise<AppClient>;
  /** The registry name the two-process children build (redis-drivers.preload.js registers the ioredis ones). */
  childProvider: string;
}

type NodeRedisFactory = (options: { url: string }) => { connect(): Promise<unknown> };
type IORedisConstructor = new (url: string, options?: Record<string, unknown>) => IORedisClient & {
  disconnect(): void;
  once(event: string, listener: () => void): unknown;
};

function nodeRedis(create: NodeRedisFactory, options: Record<string, unknown> = {}): (url: string) => Promise<AppClient> {
  return async (url) => {
    const client = (await create({ url, ...options }).connect()) as NodeRedisClient & { destroy(): void };
    return { client, close: async () => client.destroy() };
  };
}

function ioredis(Redis: IORedisConstructor, options: Record<string, unknown> = {}): (url: string) => Promise<AppClient> {
  return async (url) => {
    const client = new Redis(url, options);
    await once(client as never, 'ready'); // the provider expects a connected client
    return { client, close: async () => client.disconnect() };
  };
}

const DRIVERS: Driver[] = [
  { pkg: 'redis', label: `node-redis ${version('redis')}`, connect: nodeRedis(createClient as NodeRedisFactory), childProvider: 'redis' },
  { pkg: 'redis6', label: `node-redis ${version('redis6')}`, connect: nodeRedis(createClient6 as NodeRedisFactory), childProvider: 'redis' },
  { pkg: 'ioredis', label: `ioredis ${version('ioredis')}`, connect: ioredis(IORedis as never), childProvider: 'redis-ioredis' },
  { pkg: 'ioredis5', label: `ioredis ${version('ioredis5')}`, connect: ioredis(IORedis5 as never), childProvider: 'redis-ioredis5' },
];

let counter = 0;
function uniquePrefix(): string {
  counter += 1;
  return `drivers:${process.pid}:${counter}:${Math.random().toString(36).slice(2, 8)}:`;
}

/** node-redis 5 for the test's own reads and writes, next to the client under test. */
let admin: ReturnType<typeof createClient>;

async function cleanUp(provider: RedisProvider): Promise<void> {
  for await (const keys of admin.scanIterator({ MATCH: `${provider.prefix}*`, COUNT: 500 })) {
    if (keys.length > 0) await admin.del(keys);
  }
  await provider.close();
}

/** Everything a handed-out error exposes: its inspection (hidden properties and the cause chain included) and every own property as JSON. */
function exposure(error: unknown): string {
  const parts = [inspect(error, { depth: 10, showHidden: true })];
  for (let current = error; current !== undefined && current !== null; current = (current as { cause?: unknown }).cause) {
    parts.push(JSON.stringify(current, Object.getOwnPropertyNames(current)));
  }
  return parts.join('\n');
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

/** What must never reach an error: the id, the key built from it, a value and a key of the session. */
function secrets(prefix: string): { sid: string; key: string; field: string; json: string } {
  const sid = `sid-${Math.random().toString(36).slice(2)}-do-not-log`;
  return { sid, key: `${prefix}{${sid}}`, field: 'field-named-secretly', json: JSON.stringify('value-that-is-private') };
}

function expectNothingOf(error: Error, leaks: Record<string, string>): void {
  const text = exposure(error);
  for (const leak of Object.values(leaks)) expect(text).not.toContain(leak);
  expect(text).not.toContain('value-that-is-private');
}

beforeAll(async () => {
  if (!reason) admin = await createClient({ url }).connect();
});
afterAll(() => admin?.destroy());

describeRedis.each(DRIVERS)('redis provider with a $label client ($pkg)', (driver) => {
  let app: AppClient;

  beforeAll(async () => {
    app = await driver.connect(url);
  });

  afterAll(async () => {
    await app.close();
  });

  providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new RedisProvider({ client: app.client, prefix: uniquePrefix() }), {
    name: `redis (${driver.label})`,
    destroy: (provider) => cleanUp(provider as RedisProvider),
    skip: [NO_READNOW],
    persistent: {
      reopen: (provider) => new RedisProvider({ client: app.client, prefix: (provider as RedisProvider).prefix }),
      processOptions: (provider) => ({ name: driver.childProvider, options: { url, prefix: (provider as RedisProvider).prefix } }),
      perProcess: 200,
      inFlight: 10,
      // The child processes use this driver too.
      env: driver.pkg === 'redis' ? undefined : { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${PRELOAD}`.trim(), SESSION_TEST_REDIS_DRIVER: driver.pkg },
    },
  });

  describe('when a command fails on a key of the wrong type', () => {
    let provider: RedisProvider;
    let leaks: ReturnType<typeof secrets>;
    beforeEach(async () => {
      provider = new RedisProvider({ client: app.client, prefix: uniquePrefix() });
      leaks = secrets(provider.prefix);
      await admin.set(leaks.key, leaks.json); // a string where the provider expects a hash
    });
    afterEach(() => cleanUp(provider));

    it('hands out neither the id nor the value: read (HGETALL)', async () => {
      const error = await rejection(provider.read(leaks.sid));
      expect(error).toBeInstanceOf(ProviderError);
      expect(error.message).toMatch(/read failed: WRONGTYPE/);
      expectNothingOf(error, leaks);
    });

    it('hands out neither the id nor the keys and values: update (EVALSHA)', async () => {
      const now = Date.now();
      const error = await rejection(provider.update(leaks.sid, new Map([[leaks.field, leaks.json]]), now + MINUTE, now));
      expect(error).toBeInstanceOf(ProviderError);
      expect(error.message).toMatch(/update failed: WRONGTYPE/);
      expectNothingOf(error, leaks);
    });

    it('hands out neither the id nor the keys and values: move (EVALSHA, two keys)', async () => {
      const now = Date.now();
      const error = await rejection(provider.move(leaks.sid, `${leaks.sid}-to`, new Map([[leaks.field, leaks.json]]), now, now + MINUTE, now));
      expect(error).toBeInstanceOf(ProviderError);
      expectNothingOf(error, leaks);
    });

    it('keeps what diagnoses the failure in the cause: name, code and the redacted message', async () => {
      const error = await rejection(provider.read(leaks.sid));
      const cause = error.cause as Error & Record<string, unknown>;
      expect(cause).toBeInstanceOf(Error);
      expect(cause.message).toMatch(/^WRONGTYPE/);
      // No command, args or previousErrors: only what names the failure.
      expect(Object.keys(cause).filter((name) => name !== 'name' && name !== 'code')).toEqual([]);
    });
  });
});

// What the provider strips must really be there: ioredis attaches the command's arguments to its errors.
describeRedis.each(DRIVERS.filter((driver) => driver.pkg.startsWith('ioredis')))('a raw $label error (what the provider must not pass on)', (driver) => {
  it('carries the key and the value of the failed command', async () => {
    const app = await driver.connect(url);
    const key = `drivers:${process.pid}:raw-${Math.random().toString(36).slice(2)}`;
    try {
      await admin.set(key, 'x');
      const error = await rejection((app.client as IORedisClient).call('HSET', [key, 'field', 'value-that-is-private']));
      expect(inspect(error, { depth: 10 })).toContain('value-that-is-private');
      expect(inspect(error, { depth: 10 })).toContain(key);
    } finally {
      await admin.del(key);
      await app.close();
    }
  });
});

describeRedis('redis provider with clients configured to shape replies differently', () => {
  const variants: { label: string; connect: (url: string) => Promise<AppClient> }[] = [
    { label: 'node-redis 5, RESP3 (hashes as objects)', connect: nodeRedis(createClient as NodeRedisFactory, { RESP: 3 }) },
    { label: 'node-redis 6, RESP2 (hashes as flat arrays)', connect: nodeRedis(createClient6 as NodeRedisFactory, { RESP: 2 }) },
    {
      label: 'node-redis 6, maps as Map and strings as Buffer',
      connect: nodeRedis(createClient6 as NodeRedisFactory, { typeMapping: { [RESP_TYPES6.MAP]: Map, [RESP_TYPES6.BLOB_STRING]: Buffer } }),
    },
    {
      label: 'node-redis 5, RESP3, strings as Buffer',
      connect: nodeRedis(createClient as NodeRedisFactory, { RESP: 3, typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } }),
    },
    { label: 'ioredis 6, RESP3 with resp3 reply mapping', connect: ioredis(IORedis as never, { protocol: 3, replyMapping: 'resp3' }) },
  ];

  describe.each(variants)('$label', ({ label, connect }) => {
    let app: AppClient;
    beforeAll(async () => {
      app = await connect(url);
    });
    afterAll(() => app.close());

    providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new RedisProvider({ client: app.client, prefix: uniquePrefix() }), {
      name: `redis (${label})`,
      destroy: (provider) => cleanUp(provider as RedisProvider),
      skip: [NO_READNOW, { reason: 'the two-process cases run once per driver, above', groups: ['persistent'] }],
    });
  });
});

describeRedis('redis provider meeting a reply it does not understand', () => {
  it('rejects with ProviderError instead of answering "no session" (a driver mapping HGETALL to something else)', async () => {
    // ioredis's own hook for reshaping a command's reply; it applies to every ioredis 5 client of this test file.
    IORedis5.Command.setReplyTransformer('HGETALL', () => 42);
    const app = await ioredis(IORedis5 as never)(url);
    const provider = new RedisProvider({ client: app.client, prefix: uniquePrefix() });
    try {
      const error = await rejection(provider.read('any'));
      expect(error).toBeInstanceOf(ProviderError);
      expect(error.message).toMatch(/read: expected a hash, got a number/);
    } finally {
      IORedis5.Command.setReplyTransformer('HGETALL', undefined as never);
      await cleanUp(provider);
      await app.close();
    }
  });

  it('rejects with ProviderError for a hash at a session key that is not a session (a foreign key under the prefix)', async () => {
    const provider = new RedisProvider({ url, prefix: uniquePrefix() });
    try {
      await admin.hSet(`${provider.prefix}{foreign}`, { name: 'foreign-value' });
      const error = await rejection(provider.read('foreign'));
      expect(error).toBeInstanceOf(ProviderError);
      expect(error.message).toMatch(/read: the hash at this key is not a session/);
      expect(exposure(error)).not.toContain('foreign-value');
    } finally {
      await cleanUp(provider);
    }
  });

  it('rejects with ProviderError for a session whose expiry is not a timestamp, in entries()', async () => {
    const provider = new RedisProvider({ url, prefix: uniquePrefix() });
    try {
      const now = Date.now();
      await admin.hSet(`${provider.prefix}{odd}`, { 'm:c': '1', 'm:e': 'soon' });
      await admin.zAdd(`${provider.prefix}expiries`, { score: now + MINUTE, value: 'odd' });
      const walk = async (): Promise<void> => {
        for await (const entry of provider.entries(now)) void entry;
      };
      await expect(walk()).rejects.toThrow(/entries: the hash at this key is not a session/);
    } finally {
      await cleanUp(provider);
    }
  });
});

// A server that echoes the arguments of a failed command in its error message:
// EVALSHA renamed away, so Redis answers "ERR unknown command 'EVALSHA', with args
// beginning with: '<sha>' '1' '<key>' … '<value>'".
const describeEcho = reason || redisBinary() === undefined ? describe.skip : describe;
describeEcho('redis provider when the server quotes the arguments in its error message', () => {
  let server: ChildProcess;
  let echoUrl: string;
  beforeAll(async () => {
    const port = await freePort();
    server = spawn(redisBinary()!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--rename-command', 'EVALSHA', ''], {
      stdio: 'ignore',
    });
    echoUrl = `redis://127.0.0.1:${port}`;
    await eventually(async () => (await createClient({ url: echoUrl }).connect()).destroy(), 15_000);
  });
  afterAll(() => {
    server.kill('SIGKILL');
  });

  it('does quote them (what the provider must redact)', async () => {
    const client = await createClient({ url: echoUrl }).connect();
    try {
      const error = await rejection(client.sendCommand(['EVALSHA', 'sha', '1', 'sess:{an-id}', '"a value"']));
      expect(error.message).toContain("'sess:{an-id}' '\"a value\"'");
    } finally {
      client.destroy();
    }
  });

  it.each(DRIVERS)('redacts them from the message ($label)', async (driver) => {
    const app = await driver.connect(echoUrl);
    const provider = new RedisProvider({ client: app.client, prefix: uniquePrefix() });
    const leaks = secrets(provider.prefix);
    try {
      const now = Date.now();
      const error = await rejection(provider.create(leaks.sid, new Map([[leaks.field, leaks.json]]), now, now + MINUTE));
      expect(error).toBeInstanceOf(ProviderError);
      expect(error.message).toMatch(/create failed: ERR unknown command/);
      expectNothingOf(error, leaks);
    } finally {
      await provider.close();
      await app.close();
    }
  });
});
