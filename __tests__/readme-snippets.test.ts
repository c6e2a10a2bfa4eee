// Every ```ts block of README.md compiles as written, against the library's
// sources (session-manager → lib/index.ts, session-manager/testing →
// lib/testing.ts), each as a file of an app would be (so a snippet without an
// import or export is a script, as it would be there). Snippets that declare
// anything into the library or the global scope (`declare module
// 'session-manager'`, `declare global`) change the types every other snippet
// sees, so each of those is compiled in a program of its own; the others share
// one program. The README is written for an ES module app (top-level await), so
// the snippets compile as ES2022 modules.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

const ROOT = join(__dirname, '..');
const README = join(ROOT, 'README.md');

interface Snippet {
  /** 1-based line of the README where the code starts (after the fence). */
  line: number;
  firstLine: string;
  code: string;
  /** Declares into the library or the global scope: compiled in its own program. */
  isolated: boolean;
  /** The virtual file it is compiled as (inside the project, so node_modules resolve). */
  fileName: string;
}

/** The ```ts (or ```typescript) blocks of a Markdown text, in order. */
export function extractSnippets(markdown: string): Snippet[] {
  const lines = markdown.split('\n');
  const snippets: Snippet[] = [];
  let open: { lang: string; start: number; body: string[]; fence: string } | undefined;
  lines.forEach((text, index) => {
    const fence = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(text);
    if (open === undefined) {
      if (fence) open = { lang: fence[3].toLowerCase(), start: index + 2, body: [], fence: fence[2] };
      return;
    }
    if (fence && fence[2].startsWith(open.fence) && fence[3] === '') {
      if (open.lang === 'ts' || open.lang === 'typescript') {
        const code = `${open.body.join('\n')}\n`;
        snippets.push({
          line: open.start,
          firstLine: open.body.find((each) => each.trim() !== '')?.trim() ?? '(empty)',
          code,
          isolated: /\bdeclare\s+(module\s+['"]|global\b)/.test(code),
          fileName: join(ROOT, '__tests__', 'readme', `snippet-line-${open.start}.ts`),
        });
      }
      open = undefined;
      return;
    }
    open.body.push(text);
  });
  return snippets;
}

/** The project's compiler options, as an ES module app that imports the package by name would have them. */
function compilerOptions(): ts.CompilerOptions {
  const configFile = join(ROOT, 'tsconfig.json');
  const { config, error } = ts.readConfigFile(configFile, ts.sys.readFile);
  if (error) throw new Error(ts.flattenDiagnosticMessageText(error.messageText, '\n'));
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, ROOT, undefined, configFile);
  return {
    ...options,
    noEmit: true,
    module: ts.ModuleKind.ES2022,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    baseUrl: ROOT,
    paths: { 'session-manager': ['./lib/index.ts'], 'session-manager/testing': ['./lib/testing.ts'] },
  };
}

/** A compiler host that serves the snippets from memory and parses every other file once, for all programs. */
function createHost(options: ts.CompilerOptions, snippets: Snippet[]): ts.CompilerHost {
  const host = ts.createCompilerHost(options, true);
  const virtual = new Map(snippets.map((snippet) => [snippet.fileName, snippet.code]));
  const cache = new Map<string, ts.SourceFile | undefined>();
  const { getSourceFile, fileExists, readFile } = host;
  host.fileExists = (fileName) => virtual.has(fileName) || fileExists.call(host, fileName);
  host.readFile = (fileName) => virtual.get(fileName) ?? readFile.call(host, fileName);
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const code = virtual.get(fileName);
    if (code !== undefined) return ts.createSourceFile(fileName, code, languageVersion, true, ts.ScriptKind.TS);
    const key = `${fileName}\0${typeof languageVersion === 'object' ? JSON.stringify(languageVersion) : languageVersion}`;
    if (!cache.has(key)) cache.set(key, getSourceFile.call(host, fileName, languageVersion, onError, shouldCreate));
    return cache.get(key);
  };
  return host;
}

function format(diagnostics: readonly ts.Diagnostic[], snippet: Snippet): string {
  return diagnostics
    .map((diagnostic) => {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
      if (diagnostic.file === undefined || diagnostic.start === undefined) return `TS${diagnostic.code}: ${message}`;
      const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
      const source = diagnostic.file.fileName === snippet.fileName ? `README.md:${snippet.line + line}:${character + 1}` : diagnostic.file.fileName;
      return `${source} TS${diagnostic.code}: ${message}`;
    })
    .join('\n');
}

const snippets = extractSnippets(readFileSync(README, 'utf8'));
const options = compilerOptions();
const host = createHost(options, snippets);
const diagnosticsOf = new Map<Snippet, readonly ts.Diagnostic[]>();

/** The shared program and the isolated ones, built once; each snippet's own diagnostics. */
function compileAll(): void {
  const shared = snippets.filter((snippet) => !snippet.isolated);
  const groups = [shared, ...snippets.filter((snippet) => snippet.isolated).map((snippet) => [snippet])];
  let oldProgram: ts.Program | undefined;
  for (const group of groups) {
    if (group.length === 0) continue;
    const program: ts.Program = ts.createProgram({ rootNames: group.map((snippet) => snippet.fileName), options, host, oldProgram });
    oldProgram = program;
    const global = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()];
    for (const snippet of group) {
      const file = program.getSourceFile(snippet.fileName)!;
      diagnosticsOf.set(snippet, [...global, ...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)]);
    }
  }
}

beforeAll(compileAll, 60_000);

describe('README.md ```ts snippets', () => {
  it('has snippets to check', () => {
    expect(snippets.length).toBeGreaterThan(5);
  });

  it.each(snippets.map((snippet) => [`line ${snippet.line}: ${snippet.firstLine}`, snippet] as const))('compile as written: %s', (_name, snippet) => {
    const diagnostics = diagnosticsOf.get(snippet) ?? [];
    if (diagnostics.length > 0) {
      throw new Error(`The README snippet starting "${snippet.firstLine}" (README.md line ${snippet.line}) does not compile:\n${format(diagnostics, snippet)}`);
    }
  });
});

describe('the metrics recipe', () => {
  it('is in the README exactly as __tests__/recipes/metrics.ts has it (which metrics-and-debug.test.ts runs)', () => {
    const recipe = readFileSync(join(__dirname, 'recipes', 'metrics.ts'), 'utf8').replace(/^(\/\/.*\n)+/, '');
    expect(recipe).toContain("manager.on('store'");
    expect(snippets.map((snippet) => snippet.code)).toContain(recipe);
  });
});

describe('the snippet extraction', () => {
  it('finds ts blocks, skips other languages, isolates declarations', () => {
    const found = extractSnippets(
      ['# t', '```ts', "import { sessions } from 'session-manager';", '```', '```js', 'x', '```', '````ts', "declare module 'session-manager' {}", '```', '````'].join('\n'),
    );
    expect(found.map(({ line, firstLine, isolated }) => ({ line, firstLine, isolated }))).toEqual([
      { line: 3, firstLine: "import { sessions } from 'session-manager';", isolated: false },
      { line: 9, firstLine: "declare module 'session-manager' {}", isolated: true },
    ]);
  });
});
