/**
 * Group commit for a networked store: calls that arrive while earlier ones are
 * on the wire wait and then go together, as one statement. At low load a call
 * goes alone at the end of the event loop turn that made it (a `setImmediate`,
 * microseconds); under load the calls of many requests share one round trip.
 * `maxInFlight` bounds the statements a batcher has on the wire at once, so
 * the queue (and so the batch) grows exactly when the database is the
 * bottleneck.
 *
 * Items with a `key` go at most once per batch, and never while an earlier
 * item with that key is on the wire: a second item with the same key waits
 * until the first one's statement is done (an `UPDATE … FROM` that matches one
 * row twice applies only one of the two; two statements in flight on two
 * connections may land in either order). Items of one key land in the order
 * they were added.
 *
 * A batch whose statement fails with an error `alone` accepts (one item's bad
 * data, say) is sent again item by item, so one bad item never fails the
 * others: a failed statement changed nothing, so sending again is safe.
 *
 * @example
 * const reads = new Batcher(2, 500, (sids) => selectMany(sids), undefined);
 * const row = await reads.add(sid);
 */
export class Batcher<T, R> {
  #queue: Waiting<T, R>[] = [];
  #inFlight = 0;
  /** Keys of the items on the wire. */
  readonly #busy = new Set<string>();
  #scheduled = false;
  readonly #flushNow = (): void => {
    this.#scheduled = false;
    this.#flush();
  };

  /**
   * @param maxInFlight statements on the wire at once (at least 1)
   * @param maxBatch items per statement
   * @param send runs one statement for `items`; resolves one result per item, in order
   * @param key items with equal keys never share a statement; `undefined`: any may
   * @param alone whether a batch that failed with `error` is sent again item by item
   */
  constructor(
    readonly maxInFlight: number,
    readonly maxBatch: number,
    readonly send: (items: T[]) => Promise<R[]>,
    readonly key: ((item: T) => string) | undefined,
    readonly alone: (error: unknown) => boolean = () => false,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#scheduled && this.#inFlight < this.maxInFlight) {
        this.#scheduled = true;
        setImmediate(this.#flushNow);
      }
    });
  }

  #flush(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.maxInFlight) {
      const batch = this.#take();
      if (batch.length === 0) return; // every item waits for a key on the wire
      const { key } = this;
      if (key !== undefined) for (const waiting of batch) this.#busy.add(key(waiting.item));
      this.#inFlight += 1;
      let call: Promise<R[]>;
      try {
        call = this.send(batch.map((waiting) => waiting.item));
      } catch (error) {
        call = Promise.reject(error);
      }
      call.then(
        (results) => {
          for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i]);
          this.#done(batch);
        },
        (error: unknown) => {
          if (batch.length > 1 && this.alone(error)) {
            this.#oneByOne(batch).finally(() => this.#done(batch));
            return;
          }
          for (const waiting of batch) waiting.reject(error);
          this.#done(batch);
        },
      );
    }
  }

  /** Sends each item of a failed batch alone, in order, still counted as one statement in flight. */
  async #oneByOne(batch: Waiting<T, R>[]): Promise<void> {
    for (const waiting of batch) {
      try {
        waiting.resolve((await this.send([waiting.item]))[0]);
      } catch (error) {
        waiting.reject(error);
      }
    }
  }

  #done(batch: Waiting<T, R>[]): void {
    this.#inFlight -= 1;
    const { key } = this;
    if (key !== undefined) for (const waiting of batch) this.#busy.delete(key(waiting.item));
    // What queued while this statement was on the wire goes now, as one.
    this.#flush();
  }

  /** The next batch: the oldest items, at most `maxBatch`, no key twice, none whose key is on the wire. */
  #take(): Waiting<T, R>[] {
    const { key } = this;
    if (key === undefined) return this.#queue.splice(0, this.maxBatch);
    const batch: Waiting<T, R>[] = [];
    const rest: Waiting<T, R>[] = [];
    const keys = new Set<string>();
    for (const waiting of this.#queue) {
      const k = key(waiting.item);
      if (batch.length < this.maxBatch && !keys.has(k) && !this.#busy.has(k)) {
        keys.add(k);
        batch.push(waiting);
      } else rest.push(waiting);
    }
    this.#queue = rest;
    return batch;
  }
}

interface Waiting<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}
