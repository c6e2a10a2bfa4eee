// Child process of runTwoProcessUpdates() (processes.ts). Run as
//   node hammer.js <provider spec JSON> <sid> <keyPrefix> <count> <inFlight>
// Builds the provider (loading spec.module first), reads the session once
// (connecting, creating its table), prints "ready", then waits for a line on
// stdin, so every child starts together. Then it sets `count` distinct keys
// `<keyPrefix><i>` = JSON of i on session `sid`, `inFlight` updates at a time,
// so in-process queues and cross-process locking are both exercised.
import { buildProvider, runChild, startSignal } from './child';

const TEN_MINUTES_MS = 600_000;

runChild(async () => {
  const [spec, sid, prefix, countText, inFlightText] = process.argv.slice(2);
  const count = Number(countText);
  const provider = await buildProvider(spec);
  await provider.read(sid); // connect before the start line, so both children update at once
  process.stdout.write('ready\n');
  await startSignal();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const now = Date.now();
      const ok = await provider.update(sid, new Map([[`${prefix}${i}`, JSON.stringify(i)]]), now + TEN_MINUTES_MS, now);
      if (!ok) throw new Error(`update of ${prefix}${i} answered false`);
    }
  };
  await Promise.all(Array.from({ length: Number(inFlightText) }, worker));
  await provider.close();
});
