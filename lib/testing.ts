/**
 * session-manager/testing: for whoever writes a provider. The conformance
 * suite every built-in provider passes, for any test runner with a
 * jest-compatible `expect` (it imports none: you hand it your runner's
 * functions), and the helpers the built-in providers use for their options
 * and drivers.
 *
 * @example
 * import { providerConformance } from 'session-manager/testing';
 * providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new MyProvider(), { name: 'mystore' });
 * @packageDocumentation
 */
export {
  providerConformance,
  CONFORMANCE_GROUPS,
  type ConformanceGroup,
  type ConformanceOptions,
  type ConformanceSkip,
  type PersistentOptions,
  type ProviderUnderTest,
  type TestRunner,
  type TestFunction,
  type TestBody,
  type Assertion,
  type Matchers,
} from './testing/conformance';
export type { ChildProvider, ChildEnv } from './testing/processes';
export { optionError, rejectUnknownOptions, loadDriver } from './providers/kit';
export type { Provider, ProviderFactory, StoredSession, StoredEntry } from './providers/provider';
