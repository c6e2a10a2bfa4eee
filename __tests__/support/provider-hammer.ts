// Child process of __tests__/support/provider-processes.ts. Run as
//   node -r ts-node/register/transpile-only provider-hammer.ts <provider> <providerOptions JSON> <sid> <keyPrefix> <count> <inFlight>
// Builds the named provider (as `sessions({ provider, providerOptions })` would), reads the
// session once (connecting, creating its table), prints "ready", then waits for a line on
// stdin, so every child starts together. Then it sets `count` distinct keys
// `<keyPrefix><i>` = JSON of i on session `sid`, `inFlight` updates at a time, so in-process
// queues and cross-process locking (lock file, write lock, row lock, Lua script) both work.
import { once } from 'node:events';
import { resolveProvider } from '../../lib/providers/registry';

const TEN_MINUTES_MS = 600_000;

async function main(): Promise<void> {
  const [name, optionsJson, sid, prefix, countText, inFlightText] = process.argv.slice(2);
  const count = Number(countText);
  const provider = resolveProvider(name, JSON.parse(optionsJson) as Record<string, unknown>);
  await provider.read(sid); // connect before the start line, so both children update at once
  process.stdout.write('ready\n');
  await once(process.stdin, 'data');
  process.stdin.pause();
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
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
