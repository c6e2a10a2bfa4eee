// Preloaded (NODE_OPTIONS=--require) into the child processes that
// __tests__/providers/redis-drivers.test.ts starts through the two-process
// conformance cases, so that those children use the driver under test too.
// SESSION_TEST_REDIS_DRIVER names it:
//   redis6            `require('redis')` resolves to node-redis 6, so the provider's own
//                     client (option url) is a node-redis 6 client, as after `npm install redis@6`.
//   ioredis, ioredis5 registers the provider `redis-<driver>`: a RedisProvider given a
//                     connected client of that package (option client), as an app would.
// Runs before ts-node is registered, hence plain JavaScript.
const Module = require('node:module');
const { join, sep } = require('node:path');

const driver = process.env.SESSION_TEST_REDIS_DRIVER;
const root = join(__dirname, '..', '..');

if (driver === 'redis6') {
  const resolveFilename = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    return resolveFilename.call(this, request === 'redis' ? 'redis6' : request, ...rest);
  };
  // Fail the child if the alias never took effect, instead of silently testing node-redis 5.
  process.on('exit', () => {
    if (!Object.keys(require.cache).some((path) => path.includes(`${sep}node_modules${sep}redis6${sep}`))) {
      console.error('redis-drivers.preload: node-redis 6 was never loaded');
      process.exitCode = 1;
    }
  });
} else if (driver === 'ioredis' || driver === 'ioredis5') {
  // The registry is TypeScript, loadable only once ts-node is registered: register on its first load.
  const registryFile = join(root, 'lib', 'providers', 'registry.ts');
  const load = Module._load;
  let registered = false;
  Module._load = function (...args) {
    const exports = load.apply(this, args);
    const registry = require.cache[registryFile];
    // Once only: the loads that were in flight when the registry finished come back here too.
    if (!registered && registry?.loaded) {
      registered = true;
      Module._load = load;
      registry.exports.register(`redis-${driver}`, ioredisProvider);
    }
    return exports;
  };
} else if (driver !== undefined) {
  throw new Error(`redis-drivers.preload: unknown SESSION_TEST_REDIS_DRIVER ${driver}`);
}

/** A RedisProvider over a client of `driver`. What the app does around it: wait until connected, close after. */
function ioredisProvider({ url, ...options }) {
  const exported = require(driver);
  const IORedis = exported.default ?? exported;
  const client = new IORedis(url);
  const ready = new Promise((resolve, reject) => {
    client.once('ready', resolve);
    client.once('error', reject);
  });
  const { RedisProvider } = require(join(root, 'lib', 'providers', 'redis.ts'));
  const provider = new RedisProvider({ ...options, client });
  const wrapped = { name: provider.name, entries: (now) => provider.entries(now) };
  for (const method of ['create', 'read', 'update', 'move', 'touch', 'destroy', 'gc', 'count', 'listByUser']) {
    wrapped[method] = async (...args) => {
      await ready;
      return provider[method](...args);
    };
  }
  wrapped.close = async () => {
    await provider.close();
    await client.quit();
  };
  return wrapped;
}
