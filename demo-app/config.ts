/**
 * The demo's configuration from environment variables, checked up front so a
 * typo fails at start with the variable's name instead of at the first request.
 */
import type { SessionOptions } from '../lib';
import type { DemoOptions } from './app';

export interface DemoConfig {
  port: number;
  host: string;
  demo: DemoOptions;
}

/** Which variable names a provider's options (passed through to `providerOptions` only when set). */
const PROVIDER_ENV: Record<string, Record<string, string>> = {
  memory: {},
  file: { dir: 'SESSION_DIR' },
  sqlite: { path: 'SESSION_DB' },
  redis: { url: 'REDIS_URL' },
  postgres: { connectionString: 'DATABASE_URL' },
};

/**
 * Reads PORT (3000), HOST (127.0.0.1), SESSION_PROVIDER (memory; file, sqlite,
 * redis, postgres with SESSION_DIR, SESSION_DB, REDIS_URL, DATABASE_URL),
 * SESSION_TRANSPORT (cookie | query), SESSION_MAX_LIFETIME (seconds),
 * SESSION_SECRET and DEMO_REPLACE_AFTER (seconds, 360).
 * @throws Error naming the variable when a value is invalid.
 */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): DemoConfig {
  const port = integer(env, 'PORT', 3000, 0, 65535);
  const host = env.HOST || '127.0.0.1';

  const provider = env.SESSION_PROVIDER || 'memory';
  const variables = PROVIDER_ENV[provider];
  if (variables === undefined) fail('SESSION_PROVIDER', provider, `one of ${Object.keys(PROVIDER_ENV).join(', ')}`);
  const providerOptions: Record<string, unknown> = {};
  for (const [option, name] of Object.entries(variables)) {
    if (env[name]) providerOptions[option] = env[name];
  }

  const transport = env.SESSION_TRANSPORT || 'cookie';
  if (transport !== 'cookie' && transport !== 'query') fail('SESSION_TRANSPORT', transport, "'cookie' or 'query'");

  const session: SessionOptions = { provider, providerOptions, transports: [transport] };
  if (env.SESSION_MAX_LIFETIME) session.maxLifetime = positive(env, 'SESSION_MAX_LIFETIME');
  // Length and the rest are checked by sessions(), which names the option.
  if (env.SESSION_SECRET) session.secret = env.SESSION_SECRET;

  const demo: DemoOptions = { session };
  if (env.DEMO_REPLACE_AFTER) demo.replaceAfter = positive(env, 'DEMO_REPLACE_AFTER');
  return { port, host, demo };
}

function fail(name: string, value: string, expected: string): never {
  throw new Error(`${name}=${JSON.stringify(value)} is invalid: expected ${expected}`);
}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const text = env[name];
  if (!text) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) fail(name, text, `an integer from ${min} to ${max}`);
  return value;
}

function positive(env: NodeJS.ProcessEnv, name: string): number {
  const text = env[name] ?? '';
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) fail(name, text, 'a positive number of seconds');
  return value;
}

/**
 * Where the session store's settings came from, for start-up messages:
 * `redis (REDIS_URL)`, `redis (REDIS_URL not set: the provider's default)`,
 * `memory`. Names the variables, never their values (a URL may hold a password).
 */
export function storeSource(env: NodeJS.ProcessEnv = process.env): string {
  const provider = env.SESSION_PROVIDER || 'memory';
  const names = Object.values(PROVIDER_ENV[provider] ?? {});
  if (names.length === 0) return provider;
  const set = names.filter((name) => env[name]);
  if (set.length === 0) return `${provider} (${names.join(', ')} not set: the provider's default)`;
  return `${provider} (${set.join(', ')})`;
}
