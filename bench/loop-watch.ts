import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface LoopWatch<T> {
  value: T;
  elapsedMs: number;
  /** The worse of the two below: how long the event loop was blocked at most. */
  worstDelayMs: number;
  /** `monitorEventLoopDelay` (1 ms resolution): its max. */
  histogramMaxMs: number;
  /** The longest a 1 ms interval waited beyond its millisecond. */
  gapMaxMs: number;
}

/** Watches the event loop while `work` runs, from a 1 ms interval and `monitorEventLoopDelay`. */
export async function watchLoop<T>(work: () => Promise<T>): Promise<LoopWatch<T>> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let gapMaxMs = 0;
  const interval = setInterval(() => {
    const now = performance.now();
    gapMaxMs = Math.max(gapMaxMs, now - last - 1);
    last = now;
  }, 1);
  histogram.enable();
  await new Promise((resolve) => setTimeout(resolve, 20));
  const started = performance.now();
  last = started;
  const value = await work();
  const elapsedMs = performance.now() - started;
  await new Promise((resolve) => setTimeout(resolve, 5));
  histogram.disable();
  clearInterval(interval);
  const histogramMaxMs = histogram.max / 1e6;
  return { value, elapsedMs, worstDelayMs: Math.max(histogramMaxMs, gapMaxMs), histogramMaxMs, gapMaxMs };
}
