// Child process of runMoveRace() (processes.ts). Run as
//   node move-race.js <provider spec JSON> <sids JSON> <role>
// Builds the provider, prints "ready", waits for a line on stdin, then for each
// session `s` of the list either moves it to `${s}_to` (role "move", adding key
// "moved") or updates it (role "update": deletes "sudo", sets "u"), 4 at a
// time. Prints the results as one JSON line: per session, what move/update resolved.
import { buildProvider, runChild, startSignal } from './child';

const TEN_MINUTES_MS = 600_000;

runChild(async () => {
  const [spec, sidsJson, role] = process.argv.slice(2);
  const provider = await buildProvider(spec);
  const sids = JSON.parse(sidsJson) as string[];
  if (role === 'move' && typeof provider.move !== 'function') throw new Error(`the ${provider.name} provider has no move()`);
  await provider.read(sids[0]); // connect before the start line
  process.stdout.write('ready\n');
  await startSignal();
  const results: unknown[] = new Array(sids.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < sids.length) {
      const i = next++;
      const now = Date.now();
      if (role === 'move') {
        const moved = await provider.move!(sids[i], `${sids[i]}_to`, new Map([['moved', '1']]), now, now + TEN_MINUTES_MS, now);
        results[i] = moved instanceof Map ? 'moved' : moved === false ? 'taken' : 'gone';
      } else {
        results[i] = await provider.update(sids[i], new Map([['sudo', undefined], ['u', '1']]), now + TEN_MINUTES_MS, now);
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  await provider.close();
  process.stdout.write(`${JSON.stringify(results)}\n`);
});
