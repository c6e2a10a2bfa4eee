// The conformance suite is public now: `session-manager/testing` (lib/testing.ts).
// A test calls it as a third party would:
//   providerConformance({ describe, it, expect, beforeEach, afterEach }, () => new MyProvider(), { name, skip });
// This adapter keeps the former call shape for tests not yet moved over.
import type { Provider } from '../../lib/providers/provider';
import { providerConformance, type ConformanceOptions } from '../../lib/testing';

/** @deprecated Call `providerConformance` from `lib/testing` with Jest's functions. */
export function runProviderConformance(name: string, options: ConformanceOptions & { create: () => Promise<Provider> | Provider }): void {
  const { create, ...rest } = options;
  providerConformance({ describe, it, expect, beforeEach, afterEach }, create, { name, ...rest });
}
