import { OptionError } from '../errors';
import { missingProviderMethods, type Provider, type ProviderFactory } from './provider';

const registered = new Map<string, Provider | ProviderFactory>();

// Built-in providers by name. Their drivers load on first use, so an app that
// never names `redis` never needs the `redis` package installed.
const builtIn: Record<string, () => ProviderFactory> = {
  memory: () => (options) => new (require('./memory').MemoryProvider)(options),
  file: () => (options) => new (require('./file').FileProvider)(options),
  sqlite: () => (options) => new (require('./sqlite').SqliteProvider)(options),
  redis: () => (options) => new (require('./redis').RedisProvider)(options),
  postgres: () => (options) => new (require('./postgres').PostgresProvider)(options),
};

/**
 * Makes a provider available by name to `sessions({ provider: name })`, like a
 * `database/sql` driver. Pass an instance (shared by every manager that names
 * it) or a factory `(providerOptions) => Provider`.
 *
 * @example register('mystore', (options) => new MyStore(options));
 * @throws when the name is taken or the provider is missing or incomplete.
 */
export function register(name: string, provider: Provider | ProviderFactory): void {
  if (typeof name !== 'string' || name === '') throw new OptionError('register: name must be a non-empty string');
  if (provider === undefined || provider === null) throw new OptionError(`register: provider "${name}" is missing`);
  if (registered.has(name) || Object.hasOwn(builtIn, name)) throw new OptionError(`register: a provider named "${name}" is already registered`);
  if (typeof provider !== 'function') assertProvider(provider, `register("${name}")`);
  registered.set(name, provider);
}

/** Builds the provider a manager asked for: a registered name, or an instance passed as is. */
export function resolveProvider(provider: string | Provider, options: Record<string, unknown>): Provider {
  if (typeof provider !== 'string') {
    assertProvider(provider, 'provider');
    return provider;
  }
  const entry = registered.get(provider) ?? (Object.hasOwn(builtIn, provider) ? builtIn[provider]() : undefined);
  if (entry === undefined) {
    throw new OptionError(`unknown provider "${provider}" (forgotten import/register?)`);
  }
  if (typeof entry !== 'function') return entry;
  const built = entry(options);
  assertProvider(built, `provider "${provider}"`);
  return built;
}

function assertProvider(candidate: unknown, what: string): asserts candidate is Provider {
  const missing = missingProviderMethods(candidate);
  if (missing.length > 0) throw new OptionError(`${what} is not a Provider: missing ${missing.join(', ')}`);
}
