import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

// What `npm publish` would ship: built, packed for real, unpacked into a
// node_modules of its own and loaded from there by plain Node processes.

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

interface PackedFile {
  path: string;
}

let files: string[];
let dir: string;
let installed: string;

beforeAll(async () => {
  await run(npm, ['run', 'build'], { cwd: ROOT, timeout: 120_000 });
  const { stdout } = await run(npm, ['pack', '--dry-run', '--json'], { cwd: ROOT, timeout: 60_000 });
  files = (JSON.parse(stdout) as Array<{ files: PackedFile[] }>)[0].files.map((file) => file.path);

  dir = mkdtempSync(join(tmpdir(), 'sm-package-'));
  const packed = await run(npm, ['pack', '--json', '--pack-destination', dir], { cwd: ROOT, timeout: 60_000 });
  const tarball = join(dir, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0].filename);
  installed = join(dir, 'node_modules', 'session-manager');
  mkdirSync(installed, { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  // The runtime dependencies, as an install would provide them.
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const name of Object.keys(pkg.dependencies)) symlinkSync(join(ROOT, 'node_modules', name), join(dir, 'node_modules', name), 'dir');
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('ships no tests, benchmarks, demo app, sources or source maps', () => {
    for (const unwanted of ['__tests__/', 'bench/', 'demo-app/', 'lib/', 'scripts/', 'docs/']) {
      expect(files.filter((path) => path.startsWith(unwanted))).toEqual([]);
    }
    expect(files.filter((path) => path.endsWith('.map') || (path.endsWith('.ts') && !path.endsWith('.d.ts')))).toEqual([]);
  });

  it('ships the build, its types, the ESM wrapper, the CLI, LICENSE, README and package.json', () => {
    expect(files).toEqual(expect.arrayContaining(['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/cli.js', 'LICENSE', 'README.md', 'package.json']));
  });

  it('declares the bin, the license and where the project lives', () => {
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(pkg.bin).toEqual({ 'session-manager': 'dist/cli.js' });
    expect(existsSync(join(installed, 'dist', 'cli.js'))).toBe(true);
    expect(pkg.license).toBe('MIT');
    expect(readFileSync(join(installed, 'LICENSE'), 'utf8')).toContain('Copyright (c) 2026 session-manager contributors');
    expect(pkg.repository).toEqual({ type: 'git', url: 'git+https://github.com/session-manager/session-manager.git' });
    expect(pkg.homepage).toBe('https://github.com/session-manager/session-manager#readme');
    expect(pkg.bugs).toEqual({ url: 'https://github.com/session-manager/session-manager/issues' });
  });

  it('require() and import() of the installed package both expose sessions and createManager', async () => {
    const probe = 'JSON.stringify({ sessions: typeof m.sessions, createManager: typeof m.createManager })';
    const expected = { sessions: 'function', createManager: 'function' };
    const cjs = await run(process.execPath, ['-e', `const m = require('session-manager'); console.log(${probe})`], { cwd: dir });
    expect(JSON.parse(cjs.stdout)).toEqual(expected);
    const esm = await run(process.execPath, ['--input-type=module', '-e', `const m = await import('session-manager'); console.log(${probe})`], { cwd: dir });
    expect(JSON.parse(esm.stdout)).toEqual(expected);
    const byPath = await run(process.execPath, ['-e', `const m = require(${JSON.stringify(join(installed, 'dist', 'index.js'))}); console.log(${probe})`]);
    expect(JSON.parse(byPath.stdout)).toEqual(expected);
  });

  it('the CLI starts with a node shebang and runs from the package', async () => {
    const cli = join(installed, 'dist', 'cli.js');
    expect(readFileSync(cli, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    const store = mkdtempSync(join(dir, 'store-'));
    const { stdout } = await run(process.execPath, [cli, 'count', '--dir', store, '--json'], { cwd: dir });
    expect(JSON.parse(stdout)).toEqual({ count: 0 });
    const version = await run(process.execPath, [cli, '--version'], { cwd: dir });
    expect(version.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  });
});
