import { createHash } from 'node:crypto';
import type { StoredSession } from './provider';

/**
 * The Redis provider's storage layout and its Lua scripts. One hash per
 * session; its fields keep metadata under `m:` and values under `v:`, so no
 * user key can hit metadata (a user key `m:e` is stored as `v:m:e`).
 */

/** Hash field holding `createdAt` (ms since the epoch, as decimal text). */
export const CREATED_FIELD = 'm:c';
/** Hash field holding `expiresAt` (ms since the epoch, as decimal text). */
export const EXPIRES_FIELD = 'm:e';
/** Prefix of the hash field of each value: field `v:<key>` holds the JSON text of `<key>`. */
export const VALUE_PREFIX = 'v:';

/** A Lua script and its SHA-1, for EVALSHA (with EVAL as the fallback when the server has not cached it). */
export interface RedisScript {
  source: string;
  sha1: string;
}

const script = (source: string): RedisScript => ({ source, sha1: createHash('sha1').update(source).digest('hex') });

// Every key a script touches is declared in KEYS[], never built inside Lua, so
// the server (and a Cluster, one day) knows what it touches. create/update
// touch one key; move touches two, whose hash tags differ, so on a Cluster it
// would fail with CROSSSLOT (Cluster clients are refused for now).
// ARGV numbers are compared as Lua doubles: exact for ms timestamps.
// HSET goes field by field because `unpack()` of a large session could exceed
// Lua's C stack (~8000 values).

/**
 * Stores a new session unless the key exists; returns 1 when it stored it, 0 otherwise.
 * KEYS[1] session; ARGV: createdAt, expiresAt, field, value, field, value…
 */
export const CREATE_SCRIPT = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '${CREATED_FIELD}', ARGV[1], '${EXPIRES_FIELD}', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1`);

/**
 * Applies per-field changes and the new expiry if the session is live at `now`;
 * returns 1 when it did, 0 otherwise. Also serves touch (n = 0, nothing to delete).
 * KEYS[1] session; ARGV: now, expiresAt, n, n field/value pairs to set, then fields to delete.
 */
export const UPDATE_SCRIPT = script(`
local e = redis.call('HGET', KEYS[1], '${EXPIRES_FIELD}')
if not e or tonumber(e) <= tonumber(ARGV[1]) then return 0 end
local last = 3 + 2 * tonumber(ARGV[3])
for i = 4, last, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = last + 1, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[1], '${EXPIRES_FIELD}', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1`);

/** What MOVE_SCRIPT returns when `from` is missing or expired at `now`. */
export const MOVE_FROM_GONE = 0;
/** What MOVE_SCRIPT returns when `to` already exists. */
export const MOVE_TO_TAKEN = -1;

/**
 * Replaces session `from` by `to` (Provider.move): only if `from` is live at
 * `now` and `to` does not exist. RENAME carries `from`'s hash over as stored
 * right now and deletes `from` in the same step; the changes, the new metadata
 * and the TTL are then applied to `to`. Returns `to`'s hash (flat
 * field/value list, read before PEXPIREAT, which deletes a key whose deadline
 * has passed), or MOVE_FROM_GONE / MOVE_TO_TAKEN, changing nothing.
 * KEYS[1] from, KEYS[2] to; ARGV: now, createdAt, expiresAt, n, n field/value
 * pairs to set, then fields to delete.
 */
export const MOVE_SCRIPT = script(`
local e = redis.call('HGET', KEYS[1], '${EXPIRES_FIELD}')
if not e or tonumber(e) <= tonumber(ARGV[1]) then return ${MOVE_FROM_GONE} end
if redis.call('EXISTS', KEYS[2]) == 1 then return ${MOVE_TO_TAKEN} end
redis.call('RENAME', KEYS[1], KEYS[2])
local last = 4 + 2 * tonumber(ARGV[4])
for i = 5, last, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
for i = last + 1, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[2], '${CREATED_FIELD}', ARGV[2], '${EXPIRES_FIELD}', ARGV[3])
local stored = redis.call('HGETALL', KEYS[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
return stored`);

/** Splits changes into the `n, n field/value pairs, fields to delete` tail of UPDATE_SCRIPT's and MOVE_SCRIPT's ARGV. */
export function changeArgs(changes: ReadonlyMap<string, string | undefined>): string[] {
  const sets: string[] = [];
  const deletes: string[] = [];
  for (const [key, json] of changes) {
    if (json === undefined) deletes.push(VALUE_PREFIX + key);
    else sets.push(VALUE_PREFIX + key, json);
  }
  return [String(sets.length / 2), ...sets, ...deletes];
}

/**
 * A session hash's fields → the session, or `undefined` when they are not a
 * session of this layout (no metadata, or metadata that is not a timestamp).
 */
export function decodeSession(fields: Iterable<readonly [string, string]>): StoredSession | undefined {
  const values = new Map<string, string>();
  let createdAt: number | undefined;
  let expiresAt: number | undefined;
  for (const [field, value] of fields) {
    if (field.startsWith(VALUE_PREFIX)) values.set(field.slice(VALUE_PREFIX.length), value);
    else if (field === CREATED_FIELD) createdAt = timestamp(value);
    else if (field === EXPIRES_FIELD) expiresAt = timestamp(value);
  }
  return createdAt !== undefined && expiresAt !== undefined ? { values, createdAt, expiresAt } : undefined;
}

/** The decimal text of a number (as `String(ms)` wrote it) → that number, or `undefined` for anything else. */
export function timestamp(text: string): number | undefined {
  // Not Number() alone: it reads '' and ' ' as 0 and accepts hex.
  return /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(text) ? Number(text) : undefined;
}
