import { rmSync } from 'node:fs';
import { discard, readState, STATE_FILE } from './services';

/** Stops the servers global setup started and deletes their directories; servers from *_URL are left alone. */
export default async function globalTeardown(): Promise<void> {
  const state = readState();
  await Promise.all([state.redis, state.postgres].filter((server) => server !== undefined).map(discard));
  rmSync(STATE_FILE, { force: true });
}
