// Shared by the compat suites: req.session in compat mode, typed as such.
import type { CompatSession } from '../../lib/index';

/**
 * `req.session` as the express-session-like view. (This program has no
 * @types/express-session, so Express's Request types req.session as the
 * native Session; an app that keeps those types sets the TypeConfig switch.)
 */
export function es(req: { session?: unknown }): CompatSession {
  return req.session as CompatSession;
}

/** A promise and its resolver, to hold a request while another runs. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

/** The Max-Age of a Set-Cookie line, in seconds (NaN when absent). */
export const maxAgeOf = (line: string | undefined): number => Number(/Max-Age=(\d+)/i.exec(line ?? '')?.[1]);

/** Per-test timeout: nothing here should ever hang. */
export const QUICK = 10_000;
