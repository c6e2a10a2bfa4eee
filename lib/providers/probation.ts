/** Ids a segment takes before the next one opens. */
const SEGMENT_SIZE = 1024;
/** A segment is compacted once fewer than a quarter of its entries (and at least this many) are stale. */
const COMPACT_FROM = 16;

interface Segment {
  sids: string[];
  /** Entries before this index were taken already. */
  next: number;
  /** How many of its sessions are still probationary (entries can be stale: used or deleted since). */
  live: number;
  /** No entry expires before this (a lower bound: it is exact only after a sweep). */
  soonest: number;
}

/** What the probation queue asks its owner about a session. */
export type MemberExpiry = (sid: string, segment: number) => number | undefined;

/**
 * New sessions that have not been used since they were created, oldest first:
 * the memory provider evicts from here before it touches an established session.
 *
 * Ids go into numbered segments of about a thousand, and the owner keeps each
 * session's segment number with the session. So a session that leaves
 * probation (used, deleted) only lowers its segment's count, with no search;
 * a segment with nobody left goes at once, and one mostly stale is compacted,
 * which keeps this at most a few entries per probationary session, whatever the
 * traffic. Probationary sessions are filed nowhere else: sweeps find the due
 * ones here, segment by segment, through each segment's soonest expiry.
 *
 * The owner answers `memberExpiry(sid, segment)`: the session's expiry if it is
 * still probationary in that segment, else `undefined` (the entry is stale).
 */
export class Probation {
  /** By segment number; a Map iterates in insertion order, so the oldest first. */
  readonly #segments = new Map<number, Segment>();
  #tailNumber = 0;
  #tail: Segment = emptySegment();
  readonly #memberExpiry: MemberExpiry;

  constructor(memberExpiry: MemberExpiry) {
    this.#memberExpiry = memberExpiry;
    this.#segments.set(0, this.#tail);
  }

  /** Entries held, stale ones included: what this costs in memory (8 bytes each). */
  get held(): number {
    let held = 0;
    for (const segment of this.#segments.values()) held += segment.sids.length;
    return held;
  }

  /** Files a new session; the owner keeps the segment number returned with it. */
  add(sid: string, expiresAt: number): number {
    if (this.#tail.sids.length >= SEGMENT_SIZE) {
      this.#tail = emptySegment();
      this.#segments.set(++this.#tailNumber, this.#tail);
    }
    this.#tail.sids.push(sid);
    this.#tail.live++;
    if (expiresAt < this.#tail.soonest) this.#tail.soonest = expiresAt;
    return this.#tailNumber;
  }

  /** A session of `number` stopped being probationary (used or deleted); call it after the owner's change. */
  leave(number: number): void {
    const segment = this.#segments.get(number);
    if (segment === undefined) return;
    segment.live--;
    const pending = segment.sids.length - segment.next;
    if (segment.live <= 0) this.#drop(number, segment);
    else if (pending >= COMPACT_FROM && segment.live * 4 < pending) this.#compact(number, segment, -Infinity);
  }

  /** Takes the oldest probationary session out of the queue (the owner then deletes it), if there is one. */
  takeOldest(): string | undefined {
    for (const [number, segment] of this.#segments) {
      while (segment.next < segment.sids.length) {
        const sid = segment.sids[segment.next++];
        if (this.#memberExpiry(sid, number) === undefined) continue;
        segment.live--;
        if (segment.live <= 0) this.#drop(number, segment);
        else if (segment.next >= SEGMENT_SIZE && segment.next * 2 >= segment.sids.length) {
          // The tail segment, taken from while it fills (new visitors evicting each other).
          segment.sids = segment.sids.slice(segment.next);
          segment.next = 0;
        }
        return sid;
      }
      this.#drop(number, segment);
    }
    return undefined;
  }

  /** Numbers of the segments that may hold a session due at `now`, oldest first. */
  due(now: number): number[] {
    const numbers: number[] = [];
    for (const [number, segment] of this.#segments) if (segment.soonest <= now) numbers.push(number);
    return numbers;
  }

  /** Takes the sessions of segment `number` that are due at `now` out of the queue (the owner then deletes them). */
  takeDue(number: number, now: number): string[] {
    const segment = this.#segments.get(number);
    if (segment === undefined) return [];
    const due = this.#compact(number, segment, now);
    if (segment.live <= 0) this.#drop(number, segment);
    return due;
  }

  clear(): void {
    this.#segments.clear();
    this.#tailNumber = 0;
    this.#tail = emptySegment();
    this.#segments.set(0, this.#tail);
  }

  /** Keeps only the segment's live members not due at `dueAt`, recounting it; returns the due ones. */
  #compact(number: number, segment: Segment, dueAt: number): string[] {
    const kept: string[] = [];
    const due: string[] = [];
    let soonest = Infinity;
    for (let i = segment.next; i < segment.sids.length; i++) {
      const sid = segment.sids[i];
      const expiresAt = this.#memberExpiry(sid, number);
      if (expiresAt === undefined) continue;
      if (expiresAt <= dueAt) due.push(sid);
      else {
        kept.push(sid);
        if (expiresAt < soonest) soonest = expiresAt;
      }
    }
    segment.sids = kept;
    segment.next = 0;
    segment.live = kept.length;
    segment.soonest = soonest;
    return due;
  }

  /** Forgets an emptied segment; the tail stays, emptied, to take the next ids. */
  #drop(number: number, segment: Segment): void {
    if (segment !== this.#tail) this.#segments.delete(number);
    else Object.assign(segment, emptySegment());
  }
}

function emptySegment(): Segment {
  return { sids: [], next: 0, live: 0, soonest: Infinity };
}
