// Child process of __tests__/providers/file.test.ts. Run as
//   node -r ts-node/register/transpile-only file-hammer.ts <dir> <sid> <keyPrefix> <count>
// Prints "ready", waits for a line on stdin (so both children start together),
// then sets `count` distinct keys on one session, four updates in flight at a
// time, so the in-process queue and the cross-process lock file both work.
import { once } from 'node:events';
import { FileProvider } from '../../lib/providers/file';

async function main(): Promise<void> {
  const [dir, sid, prefix, countText] = process.argv.slice(2);
  const count = Number(countText);
  const provider = new FileProvider({ dir });
  process.stdout.write('ready\n');
  await once(process.stdin, 'data');
  process.stdin.pause();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const now = Date.now();
      const ok = await provider.update(sid, new Map([[`${prefix}${i}`, JSON.stringify(i)]]), now + 600_000, now);
      if (!ok) throw new Error(`update of ${prefix}${i} answered false`);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  await provider.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
