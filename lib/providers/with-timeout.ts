import { errorMessage, ProviderError } from '../errors';

/**
 * Runs one call to a networked backend (redis, postgres) bounded in time, so a
 * hung server or a dropped packet turns into an error instead of a request
 * that never ends. Every failure comes out as a `ProviderError` of `provider`:
 * `"<operation> timed out after <timeoutMs> ms"`, or
 * `"<operation> failed: <the driver's message>"` with the driver's error as
 * `cause`. A `ProviderError` thrown by `work` passes through unchanged.
 *
 * The timer only stops the wait: the driver may still complete the call later.
 *
 * @example
 * const reply = await withTimeout('redis', 'read', 5000, () => client.sendCommand(['HGETALL', key]));
 */
export async function withTimeout<T>(provider: string, operation: string, timeoutMs: number, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProviderError(provider, `${operation} timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([work(), deadline]);
  } catch (error) {
    if (error instanceof ProviderError) throw error;
    throw new ProviderError(provider, `${operation} failed: ${errorMessage(error)}`, error);
  } finally {
    clearTimeout(timer);
  }
}
