// What the child processes of the conformance suite share: building the
// provider under test from the spec the parent passes (see processes.ts).
import { pathToFileURL } from 'node:url';
import type { Provider } from '../providers/provider';
import { resolveProvider } from '../providers/registry';
import type { ChildProvider } from './processes';

// A real `import()`, which TypeScript would otherwise compile to `require()`: for a module that is ES only.
const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

/** Loads `spec.module` first (it registers the provider), then builds the provider as `sessions()` would. */
export async function buildProvider(specJson: string): Promise<Provider> {
  const spec = JSON.parse(specJson) as ChildProvider;
  if (spec.module !== undefined) {
    try {
      require(spec.module);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_REQUIRE_ESM') throw error;
      await importModule(pathToFileURL(spec.module).href);
    }
  }
  return resolveProvider(spec.name, spec.options);
}

/** Runs `main`, exiting with 1 and the error on stderr if it fails. */
export function runChild(main: () => Promise<void>): void {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}

/** Waits for the parent's start line, so every child starts at once. */
export function startSignal(): Promise<void> {
  return new Promise((resolve) =>
    process.stdin.once('data', () => {
      process.stdin.pause();
      resolve();
    }),
  );
}
