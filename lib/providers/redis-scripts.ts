import { createHash } from 'node:crypto';

/**
 * The Redis provider's storage layout and its two Lua scripts. One hash per
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

// Each script touches one key, so it runs atomically and stays on one Cluster
// slot. ARGV numbers are compared as Lua doubles: exact for ms timestamps.
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
