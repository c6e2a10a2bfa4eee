/**
 * Helpers for whoever writes a provider: option errors in the one format the
 * built-in providers use, and a driver loaded on first use with one error when
 * it is missing. Every error is an `OptionError`, thrown at `sessions()` /
 * `createManager()` time, so a configuration mistake fails the app at start.
 */
import { errorMessage, OptionError } from '../errors';

/**
 * An `OptionError` saying that option `option` of provider `provider` is
 * invalid: `[provider] option <option> is invalid: <value> (<why>)`. The value
 * is shown briefly (a string quoted and cut at 60 characters, an object by its
 * kind): never pass a secret (a password, a URL with credentials) as `value`.
 *
 * @example
 * if (!Number.isSafeInteger(options.poolSize)) throw optionError('mystore', 'poolSize', options.poolSize, 'a whole number');
 * // OptionError: [session-manager] [mystore] option poolSize is invalid: "ten" (a whole number)
 */
export function optionError(provider: string, option: string, value: unknown, why?: string): OptionError {
  return new OptionError(`[${provider}] option ${option} is invalid: ${shown(value)}${why ? ` (${why})` : ''}`);
}

/**
 * Throws an `OptionError` for the first option of `options` not in `allowed`
 * (`[provider] unknown option <name> (known: a, b)`), or when `options` is not
 * an object. `undefined` stands for no options. Resolves the options as a record.
 *
 * @example
 * constructor(options: Record<string, unknown> = {}) {
 *   rejectUnknownOptions('mystore', options, ['url', 'poolSize']);
 * }
 */
export function rejectUnknownOptions(provider: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new OptionError(`[${provider}] options must be an object: ${shown(options)}`);
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw new OptionError(`[${provider}] unknown option ${name} (known: ${allowed.length > 0 ? allowed.join(', ') : 'none'})`);
    }
  }
  return options as Record<string, unknown>;
}

/**
 * Loads the driver `moduleName` on first use, so an app that never builds this
 * provider never needs the driver installed. When it cannot be loaded, throws
 * an `OptionError`: `[provider] cannot load the driver <moduleName>: <hint>
 * (<the loader's first line>)`, the loader's error as `cause`.
 *
 * `load` is the `require` to resolve the driver with (default: this package's):
 * pass your own module's `require` when the driver is your package's dependency.
 *
 * @example
 * const mysql = loadDriver<typeof import('mysql2/promise')>('mystore', 'mysql2/promise', 'install mysql2, or pass option pool', require);
 */
export function loadDriver<T = unknown>(provider: string, moduleName: string, hint: string, load: (id: string) => unknown = require): T {
  try {
    return load(moduleName) as T;
  } catch (error) {
    const firstLine = errorMessage(error).split('\n')[0];
    const failure = new OptionError(`[${provider}] cannot load the driver ${moduleName}: ${hint} (${firstLine})`);
    Object.defineProperty(failure, 'cause', { value: error, configurable: true, writable: true, enumerable: false });
    throw failure;
  }
}

/** A short, safe rendering of an option value for a message. */
function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  if (value !== null && typeof value === 'object') {
    const constructorName = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    return typeof constructorName === 'string' && constructorName !== '' && constructorName !== 'Object' ? `a ${constructorName}` : 'an object';
  }
  return String(value);
}
