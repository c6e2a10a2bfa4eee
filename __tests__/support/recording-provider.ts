import { MemoryProvider } from '../../lib/providers/memory';
import type { Provider, StoredEntry, StoredSession } from '../../lib/providers/provider';

export type ProviderMethod = 'create' | 'read' | 'update' | 'touch' | 'destroy' | 'gc' | 'count' | 'entries' | 'close';

/**
 * A real memory provider that records every call, and can be told to fail a
 * method (a store outage is a fault the memory provider cannot produce for
 * real; Redis and PostgreSQL outages are tested for real in their suites).
 */
export class RecordingProvider implements Provider {
  readonly name = 'recording';
  readonly inner = new MemoryProvider();
  readonly calls: Array<{ method: ProviderMethod; sid?: string }> = [];
  readonly failing = new Set<ProviderMethod>();
  /** Holds the next call of a method until released, to stage races. */
  readonly gates = new Map<ProviderMethod, Promise<void>>();

  methods(): ProviderMethod[] {
    return this.calls.map((call) => call.method);
  }

  writes(): ProviderMethod[] {
    return this.methods().filter((method) => method !== 'read' && method !== 'count' && method !== 'entries');
  }

  reset(): void {
    this.calls.length = 0;
  }

  async #enter(method: ProviderMethod, sid?: string): Promise<void> {
    this.calls.push({ method, sid });
    const gate = this.gates.get(method);
    if (gate) {
      this.gates.delete(method);
      await gate;
    }
    if (this.failing.has(method)) throw new Error(`${method}: connection refused (injected)`);
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    await this.#enter('create', sid);
    return this.inner.create(sid, values, createdAt, expiresAt);
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    await this.#enter('read', sid);
    return this.inner.read(sid);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    await this.#enter('update', sid);
    return this.inner.update(sid, changes, expiresAt, now);
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    await this.#enter('touch', sid);
    return this.inner.touch(sid, expiresAt, now);
  }

  async destroy(sid: string): Promise<void> {
    await this.#enter('destroy', sid);
    return this.inner.destroy(sid);
  }

  async gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    await this.#enter('gc');
    return this.inner.gc(now, onExpired);
  }

  async count(now: number): Promise<number> {
    await this.#enter('count');
    return this.inner.count(now);
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    await this.#enter('entries');
    yield* this.inner.entries(now);
  }

  async close(): Promise<void> {
    await this.#enter('close');
    return this.inner.close();
  }
}

/** A gate: `gate.open()` releases whoever awaits `gate.promise`. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
