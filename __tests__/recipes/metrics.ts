// The metrics recipe of the README, verbatim: store latency as a histogram,
// session lifecycle as counters (prom-client).
import { Counter, Histogram, type Registry } from 'prom-client';
import type { Manager, StoreEvent } from 'session-manager';

export function instrument(manager: Manager, registry: Registry): void {
  const latency = new Histogram({
    name: 'session_store_seconds',
    help: 'Session store calls by operation',
    labelNames: ['operation', 'ok'],
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5],
    registers: [registry],
  });
  manager.on('store', (event: StoreEvent) => latency.observe({ operation: event.operation, ok: String(event.ok) }, event.durationMs / 1000));
  for (const name of ['created', 'regenerated', 'destroyed', 'expired', 'evicted', 'unknownId'] as const) {
    const counter = new Counter({ name: `sessions_${name}_total`, help: `Sessions ${name}`, registers: [registry] });
    manager.on(name, () => counter.inc());
  }
}
