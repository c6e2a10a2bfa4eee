import { randomBytes } from 'node:crypto';
import { OptionError } from './errors';
import type { FileOptions } from './providers/file';
import type { MemoryOptions } from './providers/memory';
import type { PostgresOptions } from './providers/postgres';
import type { Provider } from './providers/provider';
import type { RedisOptions } from './providers/redis';
import type { SqliteOptions } from './providers/sqlite';

export type Transport = 'cookie' | 'header' | 'query';

/** Attributes of the session cookie. */
export interface CookieOptions {
  /** @default '/' */
  path?: string;
  domain?: string;
  /** `'auto'` sets `Secure` when the request came over HTTPS (`req.secure`). @default 'auto' */
  secure?: boolean | 'auto';
  /** @default 'lax' */
  sameSite?: 'lax' | 'strict' | 'none' | false;
  /** @default true */
  httpOnly?: boolean;
  /** `false` writes a browser-session cookie (no `Max-Age`). @default true */
  persistent?: boolean;
  /** CHIPS partitioned cookie. @default false */
  partitioned?: boolean;
  priority?: 'low' | 'medium' | 'high';
}

/**
 * The `providerOptions` of each provider name. A provider registered by name
 * adds its own by merging:
 * `declare module 'session-manager' { interface ProviderOptionsByName { mystore: MyOptions } }`
 */
export interface ProviderOptionsByName {
  memory: MemoryOptions;
  file: FileOptions;
  sqlite: SqliteOptions;
  redis: RedisOptions;
  postgres: PostgresOptions;
}

/** A provider name (built-in, or registered), or a provider instance. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export type ProviderChoice = keyof ProviderOptionsByName | (string & {}) | Provider;

/** The `providerOptions` that go with provider `P`. */
export type ProviderOptionsOf<P> = P extends keyof ProviderOptionsByName ? ProviderOptionsByName[P] : Record<string, unknown>;

/** Options of `sessions()` and `createManager()`. See the README's options table. */
export interface SessionOptions<P extends ProviderChoice = ProviderChoice> {
  /** A registered provider's name, or an instance. @default 'memory' */
  provider?: P;
  /** Passed to a named provider's factory, typed by its name. @default {} */
  providerOptions?: ProviderOptionsOf<P>;
  /** @default 'sid' */
  cookieName?: string;
  /** Idle timeout in seconds; every use slides it. @default 3600 */
  maxLifetime?: number;
  /** Hard cap in seconds from creation, however active the session. @default none */
  absoluteLifetime?: number;
  /**
   * Seconds a new session lives until it is used again; its first reuse gives
   * it the full `maxLifetime`. Bounds what one-shot visitors (bots, a flood)
   * leave in the store: at most their creation rate × this. @default none
   */
  newSessionLifetime?: number;
  /** At `bindUser()`, a user's oldest sessions beyond this many end (concurrent-session control). @default none */
  maxSessionsPerUser?: number;
  /**
   * Seconds after which a session's id is replaced on its next request (same
   * data, same `absoluteLifetime`): a stolen id stops working soon. @default off
   */
  renewAfter?: number;
  /**
   * Seconds the old id still leads to the renewed session, so requests already
   * in flight with it (an SPA's parallel fetches) keep the session. @default 10
   */
  renewGrace?: number;
  /** Signs the id (cookie-parser's `s:` format); the first signs, all verify. At least 32 characters each. */
  secret?: string | string[];
  cookie?: CookieOptions;
  /** Where the id is read from, in order. @default ['cookie'] */
  transports?: Transport[];
  /** @default 'x-session-id' */
  headerName?: string;
  /** @default 'sid' */
  queryParam?: string;
  /** Store (and send) a session before anything is set in it. @default false */
  saveUninitialized?: boolean;
  /** Seconds between expiry refreshes of a read-only session; 0 refreshes every request. @default maxLifetime / 10 */
  touchAfter?: number;
  /** Seconds between GC runs. @default min(maxLifetime, 600) */
  gcInterval?: number;
  /** Session id generator; ids must be 16–256 characters of `[A-Za-z0-9_-]`. @default 32 random bytes, base64url */
  genid?: () => string;
  /** Receives errors that have no request to go to (GC, background touch). @default logs to stderr */
  onError?: (err: Error) => void;
  /** Current time in milliseconds; inject a fake clock in tests. @default Date.now */
  clock?: () => number;
  /**
   * `'express-session'`: `req.session` also behaves as express-session's
   * (property access, callback forms, `cookie.maxAge`), so Passport,
   * connect-flash and CSRF packages work unchanged. Writes stay per key.
   */
  compat?: 'express-session';
}

/** Options after defaults and validation; times in milliseconds. */
export interface ResolvedOptions {
  provider: string | Provider;
  providerOptions: Record<string, unknown>;
  cookieName: string;
  maxLifetimeMs: number;
  absoluteLifetimeMs: number | undefined;
  newSessionLifetimeMs: number | undefined;
  maxSessionsPerUser: number | undefined;
  renewAfterMs: number | undefined;
  renewGraceMs: number;
  secrets: string[] | undefined;
  cookie: Required<Omit<CookieOptions, 'domain' | 'priority'>> & Pick<CookieOptions, 'domain' | 'priority'>;
  transports: Transport[];
  headerName: string;
  queryParam: string;
  saveUninitialized: boolean;
  touchAfterMs: number;
  gcIntervalMs: number;
  genid: () => string;
  onError: (err: Error) => void;
  clock: () => number;
  compat: 'express-session' | undefined;
}

export const DEFAULT_MAX_LIFETIME_SECONDS = 3600;
export const MAX_GC_INTERVAL_SECONDS = 600;
export const DEFAULT_RENEW_GRACE_SECONDS = 10;
/** A grace window is for requests already in flight; a longer one only keeps a stolen old id alive. */
export const MAX_GRACE_SECONDS = 300;
export const MIN_SECRET_LENGTH = 32;

/** Ids we issue and accept: URL- and cookie-safe, long enough not to be guessed. */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9_-]{16,256}$/;

/** 256 random bits, base64url: 43 characters. */
export function defaultGenid(): string {
  return randomBytes(32).toString('base64url');
}

// RFC 6265 cookie-name = token (RFC 7230): visible ASCII minus separators.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const OPTION_NAMES = new Set([
  'provider', 'providerOptions', 'cookieName', 'maxLifetime', 'absoluteLifetime', 'secret', 'cookie',
  'transports', 'headerName', 'queryParam', 'saveUninitialized', 'touchAfter', 'gcInterval', 'genid',
  'onError', 'clock', 'compat', 'newSessionLifetime', 'maxSessionsPerUser', 'renewAfter', 'renewGrace',
]);
const COOKIE_OPTION_NAMES = new Set(['path', 'domain', 'secure', 'sameSite', 'httpOnly', 'persistent', 'partitioned', 'priority']);
const TRANSPORTS: readonly Transport[] = ['cookie', 'header', 'query'];

function fail(option: string, value: unknown, why: string): never {
  throw new OptionError(`option ${option} is invalid: ${describe(value)} (${why})`);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'function') return 'a function';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function seconds(option: string, value: unknown, { allowZero = false } = {}): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    fail(option, value, allowZero ? 'a number of seconds, 0 or more' : 'a positive number of seconds');
  }
  return value * 1000;
}

function nonEmptyString(option: string, value: unknown, pattern?: RegExp): string {
  if (typeof value !== 'string' || value === '' || (pattern && !pattern.test(value))) {
    fail(option, value, pattern ? `must match ${pattern}` : 'a non-empty string');
  }
  return value;
}

function fn<T>(option: string, value: unknown): T {
  if (typeof value !== 'function') fail(option, value, 'must be a function');
  return value as T;
}

function defaultOnError(err: Error): void {
  console.error(err);
}

/** Applies defaults and validates every option; throws an `OptionError` that names the option. */
export function resolveOptions(options: SessionOptions<ProviderChoice> = {}): ResolvedOptions {
  if (!isPlainObject(options)) throw new OptionError(`options must be an object, got ${describe(options)}`);
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new OptionError(`unknown option ${name}`);
  }

  const provider = options.provider ?? 'memory';
  if (typeof provider !== 'string' && !isPlainObject(provider)) fail('provider', provider, 'a provider name or a Provider object');
  const providerOptions = options.providerOptions ?? {};
  if (!isPlainObject(providerOptions)) fail('providerOptions', providerOptions, 'must be an object');

  const cookieName = nonEmptyString('cookieName', options.cookieName ?? 'sid', TOKEN);
  const maxLifetimeMs = seconds('maxLifetime', options.maxLifetime ?? DEFAULT_MAX_LIFETIME_SECONDS);
  const absoluteLifetimeMs = options.absoluteLifetime === undefined ? undefined : seconds('absoluteLifetime', options.absoluteLifetime);
  const newSessionLifetimeMs = options.newSessionLifetime === undefined ? undefined : seconds('newSessionLifetime', options.newSessionLifetime);

  const renewAfterMs = options.renewAfter === undefined ? undefined : seconds('renewAfter', options.renewAfter);
  const renewGraceMs = options.renewGrace === undefined ? DEFAULT_RENEW_GRACE_SECONDS * 1000 : seconds('renewGrace', options.renewGrace, { allowZero: true });
  if (renewGraceMs > MAX_GRACE_SECONDS * 1000) fail('renewGrace', options.renewGrace, `at most ${MAX_GRACE_SECONDS} seconds: the window is for requests already in flight`);

  const secrets = resolveSecrets(options.secret);
  const cookie = resolveCookie(options.cookie ?? {}, cookieName);
  const transports = resolveTransports(options.transports ?? ['cookie']);
  const headerName = nonEmptyString('headerName', options.headerName ?? 'x-session-id', TOKEN).toLowerCase();
  const queryParam = nonEmptyString('queryParam', options.queryParam ?? 'sid');

  const saveUninitialized = options.saveUninitialized ?? false;
  if (typeof saveUninitialized !== 'boolean') fail('saveUninitialized', saveUninitialized, 'must be a boolean');

  const touchAfterMs = options.touchAfter === undefined ? maxLifetimeMs / 10 : seconds('touchAfter', options.touchAfter, { allowZero: true });
  if (touchAfterMs > maxLifetimeMs) fail('touchAfter', options.touchAfter, 'must not exceed maxLifetime');
  const gcIntervalMs =
    options.gcInterval === undefined ? Math.min(maxLifetimeMs, MAX_GC_INTERVAL_SECONDS * 1000) : seconds('gcInterval', options.gcInterval);
  if (gcIntervalMs > 2 ** 31 - 1) fail('gcInterval', options.gcInterval, 'longer than a timer can wait');

  return {
    provider: provider as string | Provider,
    providerOptions,
    cookieName,
    maxLifetimeMs,
    absoluteLifetimeMs,
    newSessionLifetimeMs,
    maxSessionsPerUser: resolveUserCap(options.maxSessionsPerUser),
    renewAfterMs,
    renewGraceMs,
    secrets,
    cookie,
    transports,
    headerName,
    queryParam,
    saveUninitialized,
    touchAfterMs,
    gcIntervalMs,
    genid: options.genid === undefined ? defaultGenid : fn('genid', options.genid),
    onError: options.onError === undefined ? defaultOnError : fn('onError', options.onError),
    clock: options.clock === undefined ? Date.now : fn('clock', options.clock),
    compat: resolveCompat(options.compat),
  };
}

function resolveUserCap(cap: unknown): number | undefined {
  if (cap !== undefined && (!Number.isSafeInteger(cap) || (cap as number) < 1)) fail('maxSessionsPerUser', cap, 'a whole number, 1 or more');
  return cap as number | undefined;
}

function resolveCompat(compat: unknown): 'express-session' | undefined {
  if (compat !== undefined && compat !== 'express-session') fail('compat', compat, "the only mode is 'express-session'");
  return compat;
}

function resolveSecrets(secret: unknown): string[] | undefined {
  if (secret === undefined) return undefined;
  const list = Array.isArray(secret) ? secret : [secret];
  if (list.length === 0) fail('secret', secret, 'an empty list signs nothing');
  for (const each of list) {
    if (typeof each !== 'string' || each.length < MIN_SECRET_LENGTH) {
      throw new OptionError(`option secret is invalid: each secret must be a string of at least ${MIN_SECRET_LENGTH} characters`);
    }
  }
  return list as string[];
}

function resolveTransports(transports: unknown): Transport[] {
  if (!Array.isArray(transports) || transports.length === 0) fail('transports', transports, "a non-empty array of 'cookie', 'header', 'query'");
  for (const each of transports) {
    if (!TRANSPORTS.includes(each)) fail('transports', transports, `unknown transport ${describe(each)}`);
  }
  if (new Set(transports).size !== transports.length) fail('transports', transports, 'lists a transport twice');
  return [...transports];
}

function resolveCookie(cookie: unknown, cookieName: string): ResolvedOptions['cookie'] {
  if (!isPlainObject(cookie)) fail('cookie', cookie, 'must be an object');
  for (const name of Object.keys(cookie)) {
    if (!COOKIE_OPTION_NAMES.has(name)) throw new OptionError(`unknown option cookie.${name}`);
  }
  const { path = '/', domain, secure = 'auto', sameSite = 'lax', httpOnly = true, persistent = true, partitioned = false, priority } =
    cookie as CookieOptions;

  nonEmptyString('cookie.path', path, /^\/[\x21-\x3a\x3c-\x7e]*$/);
  if (domain !== undefined) nonEmptyString('cookie.domain', domain, /^\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/);
  if (secure !== true && secure !== false && secure !== 'auto') fail('cookie.secure', secure, "true, false or 'auto'");
  if (!['lax', 'strict', 'none', false].includes(sameSite)) fail('cookie.sameSite', sameSite, "'lax', 'strict', 'none' or false");
  for (const [name, value] of Object.entries({ httpOnly, persistent, partitioned })) {
    if (typeof value !== 'boolean') fail(`cookie.${name}`, value, 'must be a boolean');
  }
  if (priority !== undefined && !['low', 'medium', 'high'].includes(priority)) fail('cookie.priority', priority, "'low', 'medium' or 'high'");

  // Cookie prefixes: https://datatracker.ietf.org/doc/html/draft-ietf-httpbis-rfc6265bis#section-4.1.3
  // Browsers match the prefixes case-insensitively (and then reject a cookie that breaks their rules).
  const prefix = cookieName.toLowerCase();
  if (prefix.startsWith('__host-')) {
    if (domain !== undefined) fail('cookie.domain', domain, 'a __Host- cookie must not have a domain');
    if (path !== '/') fail('cookie.path', path, "a __Host- cookie needs path '/'");
    if (secure !== true) fail('cookie.secure', secure, 'a __Host- cookie needs secure: true');
  }
  if (prefix.startsWith('__secure-') && secure !== true) fail('cookie.secure', secure, 'a __Secure- cookie needs secure: true');
  // Browsers reject SameSite=None without Secure; 'auto' would send it over HTTP.
  if (sameSite === 'none' && secure !== true) fail('cookie.secure', secure, "sameSite 'none' needs secure: true");
  if (partitioned && secure !== true) fail('cookie.secure', secure, 'a partitioned cookie needs secure: true');

  return { path, domain, secure, sameSite, httpOnly, persistent, partitioned, priority };
}
