const SHARDS = 16;

/**
 * A Map of string keys split over 16 Maps. V8 rehashes a whole Map when it
 * grows past a power of two or shrinks below a quarter full, in one call: for a
 * million sessions that single call blocks the event loop for 15–20 ms. Split,
 * each rehash covers a sixteenth. Keys are spread by their last two characters,
 * which are random in the ids we issue.
 */
export class ShardedMap<V> {
  readonly #shards: Array<Map<string, V>> = Array.from({ length: SHARDS }, () => new Map());

  #shard(key: string): Map<string, V> {
    const length = key.length;
    return this.#shards[(key.charCodeAt(length - 1) * 31 + key.charCodeAt(length - 2)) & (SHARDS - 1)];
  }

  get size(): number {
    let size = 0;
    for (const shard of this.#shards) size += shard.size;
    return size;
  }

  get(key: string): V | undefined {
    return this.#shard(key).get(key);
  }

  has(key: string): boolean {
    return this.#shard(key).has(key);
  }

  set(key: string, value: V): void {
    this.#shard(key).set(key, value);
  }

  delete(key: string): boolean {
    return this.#shard(key).delete(key);
  }

  clear(): void {
    for (const shard of this.#shards) shard.clear();
  }

  /** Every key, one shard's snapshot at a time (safe to delete while iterating). */
  *keys(): IterableIterator<string> {
    for (const shard of this.#shards) yield* [...shard.keys()];
  }
}
