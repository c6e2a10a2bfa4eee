const BUCKET_MS = 1000;
const COMPACT_AFTER = 1024;

interface Bucket {
  sids: string[];
  /** Entries before this index were taken already. */
  next: number;
}

/**
 * Session ids filed by the second they expire in: the memory provider's way to
 * find what is due (or expires soonest) without looking at every session.
 *
 * Entries are never removed in place. They go stale when a session is deleted
 * or refreshed, and whoever takes an entry checks it against the session:
 * gone → drop it; expiring later → file it again where it now expires. So a
 * session is filed once per lifetime, however often it is refreshed, at the
 * cost of 8 bytes per entry. The one rule for the owner: a session must have an
 * entry at or before its current expiry second (an earlier expiry needs `add`).
 */
export class ExpiryWheel {
  readonly #buckets = new Map<number, Bucket>();
  #earliest = Infinity;

  /** Files `sid` under the second `expiresAt` falls in. */
  add(sid: string, expiresAt: number): void {
    const second = secondOf(expiresAt);
    const bucket = this.#buckets.get(second);
    if (bucket === undefined) {
      this.#buckets.set(second, { sids: [sid], next: 0 });
      if (second < this.#earliest) this.#earliest = second;
    } else bucket.sids.push(sid);
  }

  /** Takes the entry filed earliest, if it is filed at or before `latestSecond`; its second goes to `into`. */
  take(latestSecond = Infinity, into?: { second: number }): string | undefined {
    while (this.#earliest <= latestSecond) {
      const second = this.#earliest;
      const bucket = this.#buckets.get(second)!;
      if (bucket.next < bucket.sids.length) {
        if (into) into.second = second;
        const sid = bucket.sids[bucket.next++];
        // A bucket still filling up (a flood of new sessions, evicted as fast as they come)
        // must not keep the ids already taken: drop them once they are half of it.
        if (bucket.next >= COMPACT_AFTER && bucket.next * 2 >= bucket.sids.length) {
          bucket.sids = bucket.sids.slice(bucket.next);
          bucket.next = 0;
        }
        return sid;
      }
      this.#buckets.delete(second);
      this.#earliest = Infinity;
      for (const other of this.#buckets.keys()) if (other < this.#earliest) this.#earliest = other;
    }
    return undefined;
  }

  clear(): void {
    this.#buckets.clear();
    this.#earliest = Infinity;
  }
}

export function secondOf(time: number): number {
  return Math.floor(time / BUCKET_MS);
}
