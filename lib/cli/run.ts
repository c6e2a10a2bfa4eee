/**
 * The operator's CLI: counts, lists, shows and ends sessions in a store, from
 * outside the app. Every command goes through the public manager (`count`,
 * `sessions`, `destroy`, `gc`); `show` and the lookups of `destroy` read one
 * session from the provider by its handle, so they never scan the store.
 */
import { existsSync, statSync } from 'node:fs';
import { errorMessage, OptionError, SessionError } from '../errors';
import { Manager, storageKey } from '../manager';
import { SESSION_ID_PATTERN } from '../options';
import type { StoredSession } from '../providers/provider';
import { CliError, EXIT, parseCommandLine, USAGE, wantsJson, type ExitCode, type Invocation } from './args';
import { Progress, type ProgressStream } from './progress';

/** Where the CLI reads and writes: the process's streams, or fakes. */
export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream & ProgressStream;
  env: NodeJS.ProcessEnv;
  /** Printed by `--version`. */
  version?: string;
}

export interface OutputStream {
  write(text: string): boolean;
  once(event: 'drain', listener: () => void): unknown;
  isTTY?: boolean;
}

/** What a command produced: the JSON document of `--json`, or text (already written when streamed). */
interface Outcome {
  json: unknown;
  text?: string;
}

/** A handle: what `storageKey` makes (SHA-256, base64url, 43 characters). */
const HANDLE_PATTERN = /^[A-Za-z0-9_-]{43}$/;
/** The GC loop must not run while the CLI works: longer than any command (seconds; a timer's maximum). */
const NO_GC_LOOP = Math.floor((2 ** 31 - 1) / 1000);
/** Destroys `purge` sends at once. */
const PURGE_BATCH = 32;
const CLOSE_TIMEOUT_MS = 5000;

/** Runs one command line; resolves the exit code (never rejects). */
export async function main(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  let invocation: Invocation;
  try {
    const parsed = parseCommandLine(argv, io.env);
    if (parsed.kind === 'help') {
      await write(io.stdout, USAGE);
      return EXIT.ok;
    }
    if (parsed.kind === 'version') {
      const version = io.version ?? 'unknown';
      await write(io.stdout, parsed.json ? `${JSON.stringify({ version })}\n` : `${version}\n`);
      return EXIT.ok;
    }
    invocation = parsed.invocation;
  } catch (error) {
    return report(io, error, wantsJson(argv), undefined, true);
  }

  const { command } = invocation;
  if (command === 'purge' && !invocation.yes) {
    return report(io, new CliError(EXIT.usage, 'purge destroys every session in the store: refused without --yes'), invocation.json, invocation);
  }

  let manager: Manager | undefined;
  try {
    checkLocation(invocation);
    manager = new Manager({
      provider: invocation.provider,
      providerOptions: providerOptionsOf(invocation),
      gcInterval: NO_GC_LOOP,
      onError: (err) => io.stderr.write(`session-manager: ${cleanMessage(err, invocation)}\n`),
    });
    await manager.ready();
    const outcome = await COMMAND_RUNNERS[command](manager, invocation, io);
    if (invocation.json) await write(io.stdout, `${JSON.stringify(outcome.json, null, 2)}\n`);
    else if (outcome.text !== undefined) await write(io.stdout, outcome.text);
    return EXIT.ok;
  } catch (error) {
    return report(io, error, invocation.json, invocation);
  } finally {
    if (manager !== undefined) await closeWithin(manager, CLOSE_TIMEOUT_MS);
  }
}

type Runner = (manager: Manager, invocation: Invocation, io: CliIo) => Promise<Outcome>;

const COMMAND_RUNNERS: Record<Invocation['command'], Runner> = {
  async count(manager) {
    const count = await manager.count();
    return { json: { count }, text: `${count}\n` };
  },

  async list(manager, invocation, io) {
    const { limit, json } = invocation;
    // Rows go out as they come; a bar would tangle with them on one terminal.
    const progress = newProgress(io, invocation, 'list', limit, !json && io.stdout.isTTY === true);
    const rows: ListRow[] = [];
    let shown = 0;
    let truncated = false;
    if (!json) await write(io.stdout, `${'HANDLE'.padEnd(43)}  ${'CREATED'.padEnd(24)}  ${'EXPIRES'.padEnd(24)}  KEYS\n`);
    const listing = invocation.user === undefined ? manager.sessions() : await manager.listByUser(invocation.user);
    for await (const session of listing) {
      if (limit !== undefined && shown >= limit) {
        truncated = true;
        break;
      }
      shown += 1;
      const row: ListRow = {
        handle: session.handle,
        createdAt: session.createdAt.toISOString(),
        expiresAt: session.expiresAt.toISOString(),
        keys: Object.keys(session.data),
      };
      if (json) rows.push(row);
      else await write(io.stdout, `${row.handle.padEnd(43)}  ${row.createdAt.padEnd(24)}  ${row.expiresAt.padEnd(24)}  ${row.keys.join(',') || '-'}\n`);
      progress.tick();
    }
    progress.finish();
    const summary = `${shown} session${shown === 1 ? '' : 's'}${truncated ? ` (stopped at --limit ${limit})` : ''}\n`;
    return { json: { sessions: rows, truncated }, text: summary };
  },

  async 'destroy-user'(manager, invocation) {
    const ended = await manager.destroyByUser(invocation.args[0]);
    return { json: { destroyed: ended }, text: `${ended} session${ended === 1 ? '' : 's'} ended\n` };
  },

  async show(manager, invocation) {
    const { key, stored } = await find(manager, invocation.args[0]);
    const data = dataOf(stored);
    return {
      json: { handle: key, createdAt: new Date(stored.createdAt).toISOString(), expiresAt: new Date(stored.expiresAt).toISOString(), data },
      text: `${JSON.stringify(data, null, 2)}\n`,
    };
  },

  async destroy(manager, invocation) {
    const { key } = await find(manager, invocation.args[0]);
    await manager.destroy(key);
    return { json: { destroyed: key }, text: `destroyed ${key}\n` };
  },

  async gc(manager, invocation, io) {
    const progress = newProgress(io, invocation, 'gc', undefined);
    const onExpired = (): void => progress.tick();
    manager.on('expired', onExpired);
    try {
      const removed = await manager.gc();
      progress.finish();
      const note = manager.provider.name === 'redis' ? ' (Redis deletes expired sessions by itself)' : '';
      return { json: { removed }, text: `removed ${removed} expired session${removed === 1 ? '' : 's'}${note}\n` };
    } finally {
      manager.off('expired', onExpired);
    }
  },

  async purge(manager, invocation, io) {
    const total = await manager.count();
    const progress = newProgress(io, invocation, 'purge', total);
    let batch: string[] = [];
    const flush = async (): Promise<void> => {
      const handles = batch;
      batch = [];
      await Promise.all(handles.map((handle) => manager.destroyKey(handle)));
      progress.tick(handles.length);
    };
    // Keyset pages and SCAN both tolerate deletes behind the cursor: one pass meets every session that was there at the start.
    for await (const session of manager.sessions()) {
      batch.push(session.handle);
      if (batch.length >= PURGE_BATCH) await flush();
    }
    await flush();
    progress.finish();
    const destroyed = progress.done;
    const expired = await manager.gc(); // what was past its expiry goes too
    const text = `destroyed ${destroyed} session${destroyed === 1 ? '' : 's'}${expired > 0 ? `, removed ${expired} expired` : ''}\n`;
    return { json: { destroyed, expiredRemoved: expired }, text };
  },
};

interface ListRow {
  handle: string;
  createdAt: string;
  expiresAt: string;
  keys: string[];
}

function newProgress(io: CliIo, invocation: Invocation, label: string, total: number | undefined, silent = false): Progress {
  return new Progress(io.stderr, label, total, { every: invocation.progressEvery, enabled: !invocation.quiet && !silent });
}

/**
 * The live session `handleOrId` names: a handle first (what `list` shows),
 * then a raw id (hashed as the manager stores it), as `manager.destroy()` does.
 * @throws CliError (not found) when there is none.
 */
async function find(manager: Manager, handleOrId: string): Promise<{ key: string; stored: StoredSession }> {
  const keys: string[] = [];
  if (HANDLE_PATTERN.test(handleOrId)) keys.push(handleOrId);
  if (SESSION_ID_PATTERN.test(handleOrId)) keys.push(storageKey(handleOrId));
  const now = Date.now();
  for (const key of keys) {
    const stored = await manager.provider.read(key);
    if (stored !== undefined && stored.expiresAt > now) return { key, stored };
  }
  // The argument is not repeated: it may be a raw session id.
  throw new CliError(EXIT.notFound, keys.length === 0 ? 'not a session handle nor a session id' : 'no live session with that handle or id');
}

/** A stored session's values as the app sees them (the manager's own keys left out). */
function dataOf(stored: StoredSession): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [key, json] of stored.values) {
    if (key.startsWith('\u0000')) continue; // lifetime, user: the manager's, not the app's
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      value = json; // not JSON: shown as stored
    }
    // defineProperty: a key named __proto__ stays a key.
    Object.defineProperty(data, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return data;
}

/** A folder or database file named by a flag must exist: a typo must not create an empty store and report zero sessions. */
function checkLocation(invocation: Invocation): void {
  const { provider, providerOptions } = invocation;
  if (provider === 'file') {
    const { dir } = providerOptions;
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CliError(EXIT.store, `file store: no such folder ${JSON.stringify(dir)}`);
  } else if (provider === 'sqlite') {
    const { path } = providerOptions;
    if (!existsSync(path) || !statSync(path).isFile()) throw new CliError(EXIT.store, `sqlite store: no such database file ${JSON.stringify(path)}`);
  }
}

async function closeWithin(manager: Manager, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  await Promise.race([manager.close().catch(() => undefined), timeout]);
  clearTimeout(timer);
}

const KINDS: Record<ExitCode, string> = { 0: 'ok', 1: 'store', 2: 'usage', 3: 'not-supported', 4: 'not-found' };

/** Writes the error (stderr; with `--json` also `{"error": …}` on stdout) and answers its exit code. */
async function report(io: CliIo, error: unknown, json: boolean, invocation: Invocation | undefined, showUsage = false): Promise<ExitCode> {
  let exitCode: ExitCode;
  let message: string;
  if (error instanceof CliError) {
    exitCode = error.exitCode;
    message = error.message;
  } else if (error instanceof OptionError) {
    exitCode = EXIT.usage;
    message = `${where(invocation)}${cleanMessage(error, invocation)}`;
  } else if (error instanceof SessionError && error.status === 501) {
    exitCode = EXIT.notSupported; // the provider cannot do it (no user index, say)
    message = `${where(invocation)}${cleanMessage(error, invocation)}`;
  } else {
    exitCode = EXIT.store;
    message = `${where(invocation)}${cleanMessage(error, invocation)}`;
  }
  await write(io.stderr, `session-manager: ${message}\n${showUsage ? `\n${USAGE}` : ''}`);
  if (json) await write(io.stdout, `${JSON.stringify({ error: { kind: KINDS[exitCode], exitCode, message } }, null, 2)}\n`);
  return exitCode;
}

function where(invocation: Invocation | undefined): string {
  return invocation === undefined || invocation.source === '' ? '' : `${invocation.provider} store (${invocation.source}): `;
}

/** An error's message without the package and provider tags the CLI already shows. */
function cleanMessage(error: unknown, invocation: Invocation | undefined): string {
  let message = errorMessage(error).replace(/^\[session-manager\] /, '');
  if (invocation !== undefined) message = message.replace(`[${invocation.provider}] `, '');
  return message;
}

/** Writes and waits for the stream to take more (a large `list` into a slow pipe). */
function write(stream: OutputStream, text: string): Promise<void> {
  if (stream.write(text)) return Promise.resolve();
  return new Promise((resolve) => stream.once('drain', () => resolve()));
}

/** The provider's options from the flags: `--cluster a,b` becomes the Redis provider's `cluster.rootNodes`. */
function providerOptionsOf({ providerOptions }: Invocation): Record<string, unknown> {
  const { cluster, ...rest } = providerOptions;
  if (cluster === undefined) return rest;
  return { ...rest, cluster: { rootNodes: cluster.split(',').filter((url) => url !== '').map((url) => ({ url: url.trim() })) } };
}
