// Waiting helpers of the networked provider tests (redis, postgres), where a
// server is stopped, hung or restarted and the test measures how the provider copes.

/**
 * Calls `fn` until it resolves, every 100 ms, up to `timeoutMs` (then rethrows
 * its last error): for a client that reconnects, or a pool that replaces dead
 * connections, on its own schedule.
 *
 * @example const stored = await eventually(() => provider.read('before'), 15_000);
 */
export async function eventually<T>(fn: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Milliseconds `promise` takes to reject, and the error; throws (failing the test) if it resolves. */
export async function rejectionTime(promise: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const started = Date.now();
  try {
    await promise;
  } catch (error) {
    return { ms: Date.now() - started, error };
  }
  throw new Error('expected a rejection');
}
