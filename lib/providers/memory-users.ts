const SHARDS = 16;

/**
 * The memory provider's sessions-by-user index: user id → the ids of the
 * sessions bound to it. A user with one session costs one Map entry holding
 * the id itself; a Set is made only from the second session on. Sessions not
 * bound to a user cost nothing here.
 *
 * Split over 16 Maps, like the sessions (see `ShardedMap`), so that no single
 * rehash of a million users blocks the event loop. User ids are not random
 * like session ids, so the shard comes from a hash of the whole id.
 */
export class UserIndex {
  readonly #shards: Array<Map<string, string | Set<string>>> = Array.from({ length: SHARDS }, () => new Map());
  /** Sessions indexed, so the provider can skip looking up users when there are none. */
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(user: string, sid: string): void {
    const shard = this.#shard(user);
    const held = shard.get(user);
    if (held === undefined) shard.set(user, sid);
    else if (typeof held === 'string') {
      if (held === sid) return;
      shard.set(user, new Set([held, sid]));
    } else {
      if (held.has(sid)) return;
      held.add(sid);
    }
    this.#size++;
  }

  delete(user: string, sid: string): void {
    const shard = this.#shard(user);
    const held = shard.get(user);
    if (held === undefined) return;
    if (typeof held === 'string') {
      if (held !== sid) return;
      shard.delete(user);
    } else {
      if (!held.delete(sid)) return;
      if (held.size === 1) shard.set(user, held.values().next().value as string);
    }
    this.#size--;
  }

  /** The ids filed under `user` (a copy: the caller may delete while walking it). */
  sids(user: string): string[] {
    const held = this.#shard(user).get(user);
    if (held === undefined) return [];
    return typeof held === 'string' ? [held] : [...held];
  }

  clear(): void {
    for (const shard of this.#shards) shard.clear();
    this.#size = 0;
  }

  #shard(user: string): Map<string, string | Set<string>> {
    let hash = user.length;
    for (let i = 0; i < user.length; i++) hash = (hash * 31 + user.charCodeAt(i)) | 0;
    hash ^= hash >>> 16;
    return this.#shards[hash & (SHARDS - 1)];
  }
}


