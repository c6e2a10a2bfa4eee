import { OptionError } from '../errors';
import { ExpiryWheel, secondOf } from './expiry-wheel';
import { ShardedMap } from './sharded-map';
import type { Provider, StoredEntry, StoredSession } from './provider';

/** Options of the memory provider. */
export interface MemoryOptions {
  /**
   * Most sessions kept at once; creating one more evicts the session that
   * expires soonest (the least recently refreshed one), so a flood of new
   * visitors cannot exhaust memory.
   * @default 100000
   */
  maxSessions?: number;
}

export const DEFAULT_MAX_SESSIONS = 100_000;

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
 * never shares objects with another request. An expiry wheel of one-second
 * buckets finds what is due, so the GC visits only due sessions, in time
 * slices, and a full store evicts the session that expires soonest — the
 * least recently refreshed — without a scan.
 *
 * @example sessions({ provider: 'memory', providerOptions: { maxSessions: 50_000 } })
 */
export class MemoryProvider implements Provider {
  readonly name = 'memory';
  readonly maxSessions: number;
  /** sid → encoded session. */
  readonly #sessions = new ShardedMap<string>();
  readonly #wheel = new ExpiryWheel();
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
    if (this.#sessions.size >= this.maxSessions) this.#evictSoonestExpiring();
    this.#sessions.set(sid, encode(expiresAt, pad(createdAt), values));
    this.#wheel.add(sid, expiresAt);
    return true;
  }

  async read(sid: string): Promise<StoredSession | undefined> {
    return this.readNow(sid);
  }

  readNow(sid: string): StoredSession | undefined {
    const encoded = this.#sessions.get(sid);
    return encoded === undefined ? undefined : decode(encoded);
  }

  async update(sid: string, changes: ReadonlyMap<string, string | undefined>, expiresAt: number, now: number): Promise<boolean> {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined || expiryOf(encoded) <= now) return false;
    const values = decodeValues(encoded);
    for (const [key, json] of changes) {
      if (json === undefined) values.delete(key);
      else values.set(key, json);
    }
    this.#sessions.set(sid, encode(expiresAt, encoded.slice(TIME_WIDTH, 2 * TIME_WIDTH), values));
    if (expiresAt < expiryOf(encoded)) this.#wheel.add(sid, expiresAt);
    return true;
  }

  async touch(sid: string, expiresAt: number, now: number): Promise<boolean> {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined) return false;
    const previousExpiry = expiryOf(encoded);
    if (previousExpiry <= now) return false;
    // Only the timestamp prefix changes; the values are copied as text.
    this.#sessions.set(sid, flat(pad(expiresAt) + encoded.slice(TIME_WIDTH)));
    if (expiresAt < previousExpiry) this.#wheel.add(sid, expiresAt);
    return true;
  }

  async destroy(sid: string): Promise<void> {
    this.#sessions.delete(sid); // its wheel entry goes stale and is dropped when taken
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
    for (const sid of this.#sessions.keys()) {
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

  /**
   * What the wheel says about `sid` filed under `second`: 'gone' (a stale entry),
   * 'due' (it still expires in that second) or 'moved' (re-filed where it now expires).
   */
  #check(sid: string, second: number): 'gone' | 'due' | 'moved' {
    const encoded = this.#sessions.get(sid);
    if (encoded === undefined) return 'gone';
    const expiresAt = expiryOf(encoded);
    if (secondOf(expiresAt) === second) return 'due';
    this.#wheel.add(sid, expiresAt);
    return 'moved';
  }

  #evictSoonestExpiring(): void {
    const filed = { second: 0 };
    for (let sid = this.#wheel.take(Infinity, filed); sid !== undefined; sid = this.#wheel.take(Infinity, filed)) {
      if (this.#check(sid, filed.second) === 'due') {
        this.#sessions.delete(sid);
        return;
      }
    }
  }

  async #sweep(now: number, onExpired?: (sid: string) => void): Promise<number> {
    const filed = { second: 0 };
    const laterThisSecond: Array<[string, number]> = [];
    let deleted = 0;
    let taken = 0;
    let sliceStart = performance.now();
    for (let sid = this.#wheel.take(secondOf(now), filed); sid !== undefined; sid = this.#wheel.take(secondOf(now), filed)) {
      if (this.#check(sid, filed.second) === 'due') {
        const expiresAt = expiryOf(this.#sessions.get(sid)!);
        if (expiresAt <= now) {
          this.#sessions.delete(sid);
          deleted++;
          onExpired?.(sid);
        } else {
          laterThisSecond.push([sid, expiresAt]); // filed again after the loop, or it would be taken again at once
        }
      }
      if (++taken % 256 === 0 && performance.now() - sliceStart > SWEEP_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
    for (const [sid, expiresAt] of laterThisSecond) this.#wheel.add(sid, expiresAt);
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

function encode(expiresAt: number, paddedCreatedAt: string, values: ReadonlyMap<string, string>): string {
  let json = '{';
  for (const [key, value] of values) {
    if (json.length > 1) json += ',';
    json += JSON.stringify(key) + ':' + JSON.stringify(value);
  }
  return flat(pad(expiresAt) + paddedCreatedAt + json + '}');
}

function decodeValues(encoded: string): Map<string, string> {
  return new Map(Object.entries(JSON.parse(encoded.slice(2 * TIME_WIDTH)) as Record<string, string>));
}

function decode(encoded: string): StoredSession {
  return {
    expiresAt: expiryOf(encoded),
    createdAt: parseInt(encoded.slice(TIME_WIDTH, 2 * TIME_WIDTH), 36),
    values: decodeValues(encoded),
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
