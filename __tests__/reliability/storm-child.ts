// Child process of faults.test.ts, killed with SIGKILL in the middle of its work:
//   node -r ts-node/register/transpile-only storm-child.ts <file|sqlite> <path> <sessions> <seconds>
// Updates `sessions` sessions in parallel, one update in flight per session,
// each writing version n of a self-checking value (a payload of n-dependent
// length plus its checksum). After an update resolves it prints "<session> <n>"
// (stdout is a pipe: synchronous on Linux, so a printed ack is never lost by
// the kill). The parent then checks every stored version is the last acked
// one or the one in flight, never torn.
import { createHash } from 'node:crypto';
import { FileProvider } from '../../lib/providers/file';
import type { Provider } from '../../lib/providers/provider';
import { SqliteProvider } from '../../lib/providers/sqlite';

export function versionValue(sessionIndex: number, version: number): string {
  const payload = `${sessionIndex}:${version}:`.padEnd(2_000 + ((version * 7919) % 30_000), String.fromCharCode(97 + (version % 26)));
  return JSON.stringify({ version, payload, sha: createHash('sha256').update(payload).digest('hex') });
}

/** The version a stored value holds, or throws when it is not a whole, consistent value. */
export function checkValue(json: string): number {
  const value = JSON.parse(json) as { version: number; payload: string; sha: string };
  if (createHash('sha256').update(value.payload).digest('hex') !== value.sha) throw new Error(`torn value at version ${value.version}`);
  return value.version;
}

export const stormSid = (i: number): string => `storm_session_${String(i).padStart(4, '0')}`;

async function main(): Promise<void> {
  const [kind, path, sessionsText, secondsText] = process.argv.slice(2);
  const sessions = Number(sessionsText);
  const provider: Provider = kind === 'file' ? new FileProvider({ dir: path, lockStaleMs: 300 }) : new SqliteProvider({ path });
  const deadline = Date.now() + Number(secondsText) * 1000;
  const now = Date.now();
  const versions: number[] = [];
  for (let s = 0; s < sessions; s++) {
    const stored = await provider.read(stormSid(s));
    if (stored === undefined) {
      await provider.create(stormSid(s), new Map([['v', versionValue(s, 0)]]), now, now + 3_600_000);
      versions[s] = 0;
    } else versions[s] = checkValue(stored.values.get('v')!);
    process.stdout.write(`${s} ${versions[s]}\n`);
  }
  process.stdout.write('storming\n');
  await Promise.all(
    Array.from({ length: sessions }, async (_, s) => {
      while (Date.now() < deadline) {
        const next = versions[s] + 1;
        const at = Date.now();
        const ok = await provider.update(stormSid(s), new Map([['v', versionValue(s, next)], [`k${next % 50}`, String(next)]]), at + 3_600_000, at);
        if (!ok) throw new Error(`update ${s}@${next} answered false`);
        versions[s] = next;
        process.stdout.write(`${s} ${next}\n`);
        // sqlite is synchronous: yield so the other sessions' loops (and the kill) interleave
        await new Promise((resolve) => setImmediate(resolve));
      }
    }),
  );
  await provider.close();
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
