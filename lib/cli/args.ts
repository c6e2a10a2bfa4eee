/**
 * Command line of the operator's CLI: what the operator asked for, checked
 * before any store is touched. Mistakes become a {@link CliError} with exit
 * code 2 (usage).
 */
import { parseArgs } from 'node:util';

/** Exit codes: part of the CLI's contract, for scripts. */
export const EXIT = {
  ok: 0,
  store: 1,
  usage: 2,
  notSupported: 3,
  notFound: 4,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports and exits with: its exit code says what kind. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const COMMANDS = ['count', 'list', 'show', 'destroy', 'destroy-user', 'gc', 'purge'] as const;
export type Command = (typeof COMMANDS)[number];

/** Providers the CLI can open from flags. `memory` lives inside the app's process: nothing to reach. */
export const CLI_PROVIDERS = ['file', 'sqlite', 'redis', 'postgres'] as const;
export type CliProvider = (typeof CLI_PROVIDERS)[number];

/** Store flags → the provider option each sets, and the providers it applies to. */
const STORE_FLAGS = {
  dir: { option: 'dir', providers: ['file'] },
  path: { option: 'path', providers: ['sqlite'] },
  url: { option: 'url', providers: ['redis'] },
  cluster: { option: 'cluster', providers: ['redis'] },
  prefix: { option: 'prefix', providers: ['redis'] },
  'connection-string': { option: 'connectionString', providers: ['postgres'] },
  table: { option: 'table', providers: ['sqlite', 'postgres'] },
} as const satisfies Record<string, { option: string; providers: readonly CliProvider[] }>;
type StoreFlag = keyof typeof STORE_FLAGS;

/** Where a provider takes its location from when no flag gives it. */
const FROM_ENV: Partial<Record<CliProvider, { variable: string; option: string }>> = {
  redis: { variable: 'REDIS_URL', option: 'url' },
  postgres: { variable: 'DATABASE_URL', option: 'connectionString' },
};

/** The flag that names a provider's store: required, from the flag or the environment. */
const LOCATION_FLAG: Record<CliProvider, StoreFlag> = { file: 'dir', sqlite: 'path', redis: 'url', postgres: 'connection-string' };

export const DEFAULT_PROGRESS_EVERY = 1000;

export interface Invocation {
  command: Command;
  /** Positional arguments after the command. */
  args: string[];
  provider: CliProvider;
  providerOptions: Record<string, string>;
  /** Where the store's location came from, for messages: `--url`, `$REDIS_URL`… (never the value: it may hold a password). */
  source: string;
  json: boolean;
  limit: number | undefined;
  yes: boolean;
  user: string | undefined;
  quiet: boolean;
  progressEvery: number;
}

export type Parsed = { kind: 'help'; json: boolean } | { kind: 'version'; json: boolean } | { kind: 'run'; invocation: Invocation };

export const USAGE = `Usage: session-manager <command> [options]

Commands:
  count                     live sessions (the online-users count)
  list [--limit N]          live sessions: handle, created, expires, data keys
  show HANDLE               one session's data, as JSON
  destroy HANDLE            end one session (its handle, or a raw session id)
  gc                        delete expired sessions now
  purge --yes               destroy every session (refused without --yes)
  list --user ID            the sessions of one user (req.session.bindUser)
  destroy-user ID           end every session of one user ("log out everywhere")

Store (the provider is guessed from the flags given, else from REDIS_URL / DATABASE_URL):
  --provider NAME           file | sqlite | redis | postgres
  --dir DIR                 file: the sessions folder (must exist)
  --path FILE               sqlite: the database file (must exist)
  --url URL                 redis: redis[s]://[[user][:password]@]host[:port][/db]  (default: $REDIS_URL)
  --cluster URL[,URL...]    redis: a Redis Cluster's root nodes, in place of --url
  --prefix PREFIX           redis: key prefix (default "sess:")
  --connection-string URL   postgres: postgres://user:password@host:port/db  (default: $DATABASE_URL)
  --table NAME              sqlite, postgres: the sessions table (default "sessions")

Output:
  --json                    one JSON document on stdout (errors too: {"error": {...}})
  --progress-every N        when stderr is not a terminal, a progress line every N sessions (default ${DEFAULT_PROGRESS_EVERY})
  --quiet                   no progress output
  -h, --help                this text
  --version                 the package version

Exit codes: 0 ok, 1 store error, 2 usage error, 3 not supported, 4 not found.
`;

const OPTIONS = {
  provider: { type: 'string' },
  dir: { type: 'string' },
  path: { type: 'string' },
  url: { type: 'string' },
  cluster: { type: 'string' },
  prefix: { type: 'string' },
  'connection-string': { type: 'string' },
  table: { type: 'string' },
  json: { type: 'boolean' },
  limit: { type: 'string' },
  yes: { type: 'boolean' },
  user: { type: 'string' },
  quiet: { type: 'boolean' },
  'progress-every': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

/** Positional arguments each command takes. */
const POSITIONALS: Record<Command, string[]> = {
  count: [],
  list: [],
  show: ['HANDLE'],
  destroy: ['HANDLE'],
  'destroy-user': ['ID'],
  gc: [],
  purge: [],
};

/** Flags that only mean something to one command. */
const COMMAND_FLAGS: Record<string, Command> = { limit: 'list', user: 'list', yes: 'purge' };

function usage(message: string): CliError {
  return new CliError(EXIT.usage, message);
}

/** Whether `--json` was asked for, read loosely: for reporting an error of the command line itself. */
export function wantsJson(argv: readonly string[]): boolean {
  return argv.includes('--json');
}

/** Parses and checks the command line. `env` supplies REDIS_URL / DATABASE_URL. */
/**
 * Handles and ids are base64url, so one may start with "-" (`-nFMFv…`), which
 * an option parser takes for a flag: the argument of show/destroy/destroy-user
 * is marked as positional. (`--` before it works too.)
 */
function protectIds(argv: readonly string[]): string[] {
  const args = [...argv];
  const at = args.findIndex((arg) => arg === 'show' || arg === 'destroy' || arg === 'destroy-user');
  const next = args[at + 1];
  if (at === -1 || next === undefined || !/^-[A-Za-z0-9_-]{15,}$/.test(next) || next.startsWith('--')) return args;
  return [...args.slice(0, at + 1), ...args.slice(at + 2), '--', next];
}

export function parseCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv): Parsed {
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: protectIds(argv), options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    // parseArgs' messages name the flag ("Unknown option '--foo'"); keep only the first sentence.
    throw usage(String((error as Error).message).split('. ')[0].replace(/\.$/, ''));
  }
  const { values, positionals } = parsed;
  const json = values.json === true;
  if (values.help === true) return { kind: 'help', json };
  if (values.version === true) return { kind: 'version', json };

  const [name, ...args] = positionals;
  if (name === undefined) throw usage('no command given');
  if (!(COMMANDS as readonly string[]).includes(name)) throw usage(`unknown command "${name}"`);
  const command = name as Command;

  for (const [flag, owner] of Object.entries(COMMAND_FLAGS)) {
    if (values[flag] !== undefined && owner !== command) throw usage(`--${flag} applies to "${owner}" only`);
  }
  const expected = POSITIONALS[command];
  if (args.length < expected.length) throw usage(`${command}: missing ${expected[args.length]}`);
  if (args.length > expected.length) throw usage(`${command}: unexpected argument "${args[expected.length]}"`);
  if (expected.length > 0 && args[0] === '') throw usage(`${command}: ${expected[0]} is empty`);
  if (values.user === '') throw usage('list: --user is empty');

  const store = chooseStore(values, env);
  const invocation: Invocation = {
    command,
    args,
    provider: store?.provider ?? 'file',
    providerOptions: store?.options ?? {},
    source: store?.source ?? '',
    json,
    limit: values.limit === undefined ? undefined : positiveInteger('--limit', values.limit as string),
    yes: values.yes === true,
    user: values.user as string | undefined,
    quiet: values.quiet === true,
    progressEvery: values['progress-every'] === undefined ? DEFAULT_PROGRESS_EVERY : positiveInteger('--progress-every', values['progress-every'] as string),
  };
  return { kind: 'run', invocation };
}

function positiveInteger(flag: string, text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1) throw usage(`${flag} must be a positive integer, got "${text}"`);
  return value;
}

/** The provider and its options: `--provider`, else guessed from the store flags, else from the environment. */
function chooseStore(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): { provider: CliProvider; options: Record<string, string>; source: string } {
  const given = (Object.keys(STORE_FLAGS) as StoreFlag[]).filter((flag) => values[flag] !== undefined);
  for (const flag of given) if (values[flag] === '') throw usage(`--${flag} is empty`);

  let provider: CliProvider;
  if (values.provider !== undefined) {
    const name = values.provider as string;
    if (name === 'memory') throw usage('the memory provider lives inside the app\'s process: the CLI cannot reach it (use file, sqlite, redis or postgres)');
    if (!(CLI_PROVIDERS as readonly string[]).includes(name)) throw usage(`unknown provider "${name}" (the CLI opens ${CLI_PROVIDERS.join(', ')})`);
    provider = name as CliProvider;
  } else {
    provider = guessProvider(given, env);
  }

  const options: Record<string, string> = {};
  for (const flag of given) {
    const { option, providers } = STORE_FLAGS[flag];
    if (!(providers as readonly string[]).includes(provider)) throw usage(`--${flag} does not apply to provider ${provider} (it is for ${providers.join(', ')})`);
    options[option] = values[flag] as string;
  }
  const location = LOCATION_FLAG[provider];
  let source = `--${location}`;
  if (values.cluster !== undefined) {
    if (values.url !== undefined) throw usage('give --url or --cluster, not both');
    source = '--cluster';
  } else if (values[location] === undefined) {
    const fallback = FROM_ENV[provider];
    const fromEnv = fallback === undefined ? undefined : env[fallback.variable];
    if (fallback === undefined || fromEnv === undefined || fromEnv === '') {
      throw usage(`provider ${provider} needs --${location}${fallback ? ` (or ${fallback.variable} in the environment)` : ''}`);
    }
    options[fallback.option] = fromEnv;
    source = `$${fallback.variable}`;
  }
  return { provider, options, source };
}

function guessProvider(given: StoreFlag[], env: NodeJS.ProcessEnv): CliProvider {
  const candidates = new Set<CliProvider>();
  for (const flag of given) {
    const { providers } = STORE_FLAGS[flag];
    if (providers.length === 1) candidates.add(providers[0]);
  }
  if (candidates.size > 1) throw usage(`the flags name several providers (${[...candidates].join(', ')}): pick one with --provider`);
  if (candidates.size === 1) return [...candidates][0];
  const fromEnv = (Object.keys(FROM_ENV) as CliProvider[]).filter((name) => env[FROM_ENV[name]!.variable]);
  if (fromEnv.length === 1) return fromEnv[0];
  if (fromEnv.length > 1) throw usage('both REDIS_URL and DATABASE_URL are set: pick one with --provider');
  throw usage('no store given: use --provider with --dir, --path, --url or --connection-string (or set REDIS_URL / DATABASE_URL)');
}
