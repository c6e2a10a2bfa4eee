const BUCKET_MS = 1000;
const COMPACT_AFTER = 1024;

interface Bucket {
  sids: string[];
  /** Entries before this index were taken already. */
  next: number;
}

/**
 * Session ids filed by the second they expire in: the memory provider's way to
 * find what is due (or expires soonest) without looking at every session. The
 * seconds that have a bucket sit in a binary min-heap, so filing into a new
 * second and moving on from an emptied one cost O(log buckets), however many
 * seconds a long lifetime spreads sessions over.
 *
 * Entries are never removed in place. They go stale when a session is deleted
 * or refreshed, and whoever takes an entry checks it against the session:
 * gone → drop it; expiring later → file it again where it now expires. So a
 * session is filed once per lifetime, however often it is refreshed, at the
 * cost of 8 bytes per entry. The one rule for the owner: a session must have an
 * entry at or before its current expiry second (an earlier expiry needs `add`).
 */
export class ExpiryHeap {
  readonly #buckets = new Map<number, Bucket>();
  /** The seconds of `#buckets`, as a binary min-heap: the earliest at index 0. */
  readonly #seconds: number[] = [];

  /** Files `sid` under the second `expiresAt` falls in. */
  add(sid: string, expiresAt: number): void {
    const second = secondOf(expiresAt);
    const bucket = this.#buckets.get(second);
    if (bucket !== undefined) {
      bucket.sids.push(sid);
      return;
    }
    this.#buckets.set(second, { sids: [sid], next: 0 });
    this.#push(second);
  }

  /** Takes the entry filed earliest, if it is filed at or before `latestSecond`; its second goes to `into`. */
  take(latestSecond = Infinity, into?: { second: number }): string | undefined {
    while (this.#seconds.length > 0 && this.#seconds[0] <= latestSecond) {
      const second = this.#seconds[0];
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
      this.#popEarliest();
    }
    return undefined;
  }

  clear(): void {
    this.#buckets.clear();
    this.#seconds.length = 0;
  }

  #push(second: number): void {
    const heap = this.#seconds;
    let index = heap.length;
    heap.push(second);
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (heap[parent] <= second) break;
      heap[index] = heap[parent];
      index = parent;
    }
    heap[index] = second;
  }

  #popEarliest(): void {
    const heap = this.#seconds;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let index = 0;
    for (;;) {
      let child = 2 * index + 1;
      if (child >= heap.length) break;
      if (child + 1 < heap.length && heap[child + 1] < heap[child]) child++;
      if (heap[child] >= last) break;
      heap[index] = heap[child];
      index = child;
    }
    heap[index] = last;
  }
}

export function secondOf(time: number): number {
  return Math.floor(time / BUCKET_MS);
}
