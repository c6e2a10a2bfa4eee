import { OptionError } from '../errors';
import type { Provider, StoredEntry, StoredSession } from './provider';

/** Options of the memory provider. */
export interface MemoryOptions {
  /**
   * Most sessions kept at once; creating one more evicts the least recently
   * refreshed session, so a flood of new visitors cannot exhaust memory.
   * @default 100000
   */
  maxSessions?: number;
}

export const DEFAULT_MAX_SESSIONS = 100_000;

const BUCKET_MS = 1000;
/** A sweep yields to the event loop after this long, so a huge expiry never stalls requests. */
const SWEEP_SLICE_MS = 4;
const TIME_WIDTH = 9; // base-36 digits of a millisecond timestamp, enough until the year 5138

/**
 * Sessions in this process's memory: the embedded default, for one process and
 * for tests. Sessions are lost on restart; use `file` or `sqlite` to keep
 * them, `redis` or `postgres` to share them between processes.
 *
 * Each session is one flat string (expiry, creation time and the values as
 * JSON), which keeps a small session under 200 heap bytes and means a reader
 * never shares objects with another request. Expiry uses a timing wheel of
 * one-second buckets holding each session once, so the GC visits only
 * sessions that are due, in time slices, never all of them.
 *
 * @example sessions({ provider: 'memory', providerOptions: { maxSessions: 50_000 } })
 */
export class MemoryProvider implements Provider {
  readonly name = 'memory';
  readonly maxSessions: number;
  /** sid → encoded session, in order of last write (the eviction order). */
  readonly #sessions = new Map<string, string>();
  /** expiry second → sids that may expire in it (entries go stale when a session moves on). */
  readonly #wheel = new Map<number, string[]>();
  /** The latest sweep; the next one starts after it. */
  #sweeping: Promise<number> | undefined;

  constructor(options: MemoryOptions = {}) {
    const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    if (!Number.isSafeInteger(maxSessions) || maxSessions < 1) {
      throw new OptionError(`[memory] option maxSessions is invalid: ${String(options.maxSessions)}`);
    }
    this.maxSessions = maxSessions;
  }

  async create(sid: string, values: ReadonlyMap<string, string>, createdAt: number, expiresAt: number): Promise<boolean> {
    if (this.#sessions.has(sid)) return false;
    if (this.#sessions.size >= this.maxSessions) this.#evictOldest();
    this.#sessions.set(sid, encode(createdAt, expiresAt, values));
    this.#schedule(sid, expiresAt);
    return true;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    const encoded = this.#sessions.get(sid);
    return encoded === undefined ? undefined : decode(encoded);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    const stored = this.#live(sid, now);
    if (stored === undefined) return false;
    for (const [key, json] of changes) {
      if (json === undefined) stored.values.delete(key);
      else stored.values.set(key, json);
    }
    this.#rewrite(sid, stored.createdAt, expiresAt, stored.values, stored.expiresAt);
    return true;
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined) return false;
    const previousExpiry = expiryOf(encoded);
    if (previousExpiry <= now) return false;
    // Only the timestamp prefix changes; the values are copied as text.
    this.#sessions.delete(sid);
    this.#sessions.set(sid, flat(pad(expiresAt) + encoded.slice(TIME_WIDTH)));
    if (expiresAt < previousExpiry) this.#schedule(sid, expiresAt);
    return true;
  }

  async destroy(sid: string): Promise<void> {
    this.#sessions.delete(sid); // its wheel entry goes stale and is dropped when due
  }

  gc(now: number, onExpired?: (sid: string) => void): Promise<number> {
    // Sweeps run one at a time; a caller arriving mid-sweep gets its own pass after it.
    const run = (this.#sweeping ?? Promise.resolve(0)).then(() => this.#sweep(now, onExpired));
    this.#sweeping = run.catch(() => 0);
    return run;
  }

  async count(now: number): Promise<number> {
    await this.gc(now);
    return this.#sessions.size;
  }

  async *entries(now: number): AsyncIterable<StoredEntry> {
    for (const sid of [...this.#sessions.keys()]) {
      const encoded = this.#sessions.get(sid);
      if (encoded === undefined || expiryOf(encoded) <= now) continue;
      yield { sid, ...decode(encoded) };
    }
  }

  async close(): Promise<void> {
    await this.#sweeping;
    this.#sessions.clear();
    this.#wheel.clear();
  }

  #live(sid: string, now: number): StoredSession | undefined {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined || expiryOf(encoded) <= now) return undefined;
    return decode(encoded);
  }

  #rewrite(sid: string, createdAt: number, expiresAt: number, values: ReadonlyMap<string, string>, previousExpiry: number): void {
    // Delete first so the session moves to the end of the eviction order.
    this.#sessions.delete(sid);
    this.#sessions.set(sid, encode(createdAt, expiresAt, values));
    // A later expiry needs no new wheel entry: the sweep re-files a session it
    // finds still live. Only an earlier one does.
    if (expiresAt < previousExpiry) this.#schedule(sid, expiresAt);
  }

  #evictOldest(): void {
    const oldest = this.#sessions.keys().next();
    if (!oldest.done) this.#sessions.delete(oldest.value);
  }

  #schedule(sid: string, expiresAt: number): void {
    const second = Math.floor(expiresAt / BUCKET_MS);
    const bucket = this.#wheel.get(second);
    if (bucket === undefined) this.#wheel.set(second, [sid]);
    else bucket.push(sid);
  }

  async #sweep(now: number, onExpired?: (sid: string) => void): Promise<number> {
    const currentSecond = Math.floor(now / BUCKET_MS);
    const due = [...this.#wheel.keys()].filter((second) => second <= currentSecond).sort((a, b) => a - b);
    let deleted = 0;
    let sliceStart = performance.now();
    for (const second of due) {
      const sids = this.#wheel.get(second)!;
      this.#wheel.delete(second);
      for (let i = 0; i < sids.length; i++) {
        const sid = sids[i];
        const encoded = this.#sessions.get(sid);
        if (encoded !== undefined) {
          const expiresAt = expiryOf(encoded);
          if (expiresAt <= now) {
            this.#sessions.delete(sid);
            deleted++;
            onExpired?.(sid);
          } else {
            this.#schedule(sid, expiresAt); // refreshed since it was filed, or due later this second
          }
        }
        if ((i & 1023) === 1023 && performance.now() - sliceStart > SWEEP_SLICE_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
      }
    }
    return deleted;
  }
}

// Encoded session: expiresAt and createdAt as fixed-width base-36, then the
// values as a JSON object of key → JSON text.

function pad(time: number): string {
  return time.toString(36).padStart(TIME_WIDTH, '0');
}

function expiryOf(encoded: string): number {
  return parseInt(encoded.slice(0, TIME_WIDTH), 36);
}

function encode(createdAt: number, expiresAt: number, values: ReadonlyMap<string, string>): string {
  let json = '{';
  for (const [key, value] of values) {
    if (json.length > 1) json += ',';
    json += JSON.stringify(key) + ':' + JSON.stringify(value);
  }
  return flat(pad(expiresAt) + pad(createdAt) + json + '}');
}

function decode(encoded: string): StoredSession {
  const object = JSON.parse(encoded.slice(2 * TIME_WIDTH)) as Record<string, string>;
  return {
    expiresAt: expiryOf(encoded),
    createdAt: parseInt(encoded.slice(TIME_WIDTH, 2 * TIME_WIDTH), 36),
    values: new Map(Object.entries(object)),
  };
}

/**
 * Concatenation builds a rope (cons string) that costs about twice the text;
 * reading one character flattens it, and the GC then drops the rope nodes.
 */
function flat(text: string): string {
  text.charCodeAt(0);
  return text;
}
