// The published types (declarations built from lib/) compile in consumer apps
// with skipLibCheck: false: a native app, and one with @types/express-session
// installed next to session-manager (its one-line switch set).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc');
const CONSUMERS = join(__dirname, 'types', 'coexist');

let declarations: string;

beforeAll(() => {
  declarations = mkdtempSync(join(tmpdir(), 'sm-types-'));
  execFileSync(TSC, ['-p', join(ROOT, 'tsconfig.build.json'), '--emitDeclarationOnly', '--outDir', declarations, '--sourceMap', 'false']);
}, 60_000);

afterAll(() => rmSync(declarations, { recursive: true, force: true }));

function compile(file: string): string {
  const config = join(declarations, `tsconfig.${file}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      compilerOptions: {
        strict: true,
        skipLibCheck: false,
        noEmit: true,
        module: 'commonjs',
        target: 'ES2022',
        moduleResolution: 'node',
        esModuleInterop: true,
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')],
        baseUrl: CONSUMERS,
        paths: { 'session-manager': [join(declarations, 'index.d.ts')], '*': [join(ROOT, 'node_modules', '*'), join(ROOT, 'node_modules', '@types', '*')] },
      },
      files: [join(CONSUMERS, file)],
    }),
  );
  try {
    execFileSync(TSC, ['-p', config], { encoding: 'utf8' });
    return '';
  } catch (err) {
    return String((err as { stdout?: string }).stdout);
  }
}

describe('published types', () => {
  it('compile in a plain session-manager app', () => {
    expect(compile('native.ts')).toBe('');
  }, 60_000);

  it('coexist with @types/express-session', () => {
    expect(compile('app.ts')).toBe('');
  }, 60_000);

  it('compile where no driver (nor its types) is installed: a consumer outside any node_modules, skipLibCheck false', () => {
    // Only Node's own types are reachable from here: a declaration that imports redis, pg, ioredis or better-sqlite3 fails.
    const typeRoot = join(declarations, 'types');
    mkdirSync(typeRoot, { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(typeRoot, 'node'), 'dir');
    writeFileSync(
      join(declarations, 'consumer.ts'),
      [
        "import { createServer } from 'node:http';",
        "import { sessions, RedisProvider, PostgresProvider, SqliteProvider, type SessionRequest } from './index';",
        'const middleware = sessions();',
        "createServer((req, res) => middleware(req, res, () => res.end(String((req as SessionRequest).session.get('n')))));",
        'export const kinds = [RedisProvider, PostgresProvider, SqliteProvider];',
      ].join('\n'),
    );
    const config = join(declarations, 'tsconfig.nodrivers.json');
    writeFileSync(
      config,
      JSON.stringify({
        compilerOptions: { strict: true, skipLibCheck: false, noEmit: true, module: 'commonjs', target: 'ES2022', moduleResolution: 'node', types: ['node'], typeRoots: [typeRoot] },
        files: [join(declarations, 'consumer.ts')],
      }),
    );
    let output = '';
    try {
      execFileSync(TSC, ['-p', config], { encoding: 'utf8' });
    } catch (err) {
      output = String((err as { stdout?: string }).stdout);
    }
    expect(output).toBe('');
  }, 60_000);

  it('clash with @types/express-session without the switch (so the switch is what makes them coexist)', () => {
    expect(compile('clash.ts')).toMatch(/TS2430|TS2717|TS2320/);
  }, 60_000);
});
