#!/usr/bin/env node
/**
 * `npx session-manager <command>`: the operator's CLI (see `session-manager --help`
 * and the README's "Operator's CLI"). The logic is in ./cli/run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from './cli/run';

function packageVersion(): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

// `session-manager list | head`: a reader that stops early is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

void main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env, version: packageVersion() }).then((code) => {
  // Exit once stdout has taken everything: a driver's reconnect timer must not keep the process alive.
  process.stdout.write('', () => process.exit(code));
});
