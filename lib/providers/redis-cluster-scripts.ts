import { CREATED_FIELD, EXPIRES_FIELD, USER_BIND, USER_FIELD, USER_UNBIND, type RedisScript } from './redis-scripts';
import { createHash } from 'node:crypto';

/**
 * The Redis Cluster layout: what differs from the single-server one
 * (redis-scripts.ts). On a Cluster a script may only touch keys of one hash
 * slot, so every script here touches one key:
 *
 * - the session hash `${prefix}{${sid}}` (same key and fields as on one
 *   server): everything that must change atomically with a session is in
 *   it, its user included (`m:u`);
 * - `${prefix}expiries:{${n}}:sids`, n in 0…{@link EXPIRY_SHARDS}-1: the
 *   expiry index, sharded by {@link expiryShard} of the sid, so it spreads
 *   over the masters and no shard holds everything;
 * - `${prefix}user:{${userHash}}:sids`: a user's sessions (same key as on one server).
 *
 * The indexes are updated by separate commands around the session's script,
 * so they converge rather than change atomically with it: an entry is added
 * before a session can be found under it (a user's set, when binding) or
 * after the session exists (expiries), and removed after. Readers check every
 * entry against its hash and never hand out a session that is gone.
 */

/** Shards of the expiry index. Fixed: changing it would strand the ids of the old shards. */
export const EXPIRY_SHARDS = 16;

/** The expiry-index shard of a session: FNV-1a (32 bits) of its id, modulo {@link EXPIRY_SHARDS}. */
export function expiryShard(sid: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < sid.length; i++) {
    hash ^= sid.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % EXPIRY_SHARDS;
}

/** The key of shard `n` of the expiry index. Ends with `s`, never `}`: never a session key of any prefix. */
export function expiryShardKey(prefix: string, n: number): string {
  return `${prefix}expiries:{${n}}:sids`;
}

const script = (source: string): RedisScript => ({ source, sha1: createHash('sha1').update(source).digest('hex') });

/**
 * Stores a hash unless the key exists (create, the new id of a move, and
 * putting back the old one when a move fails half-way). Returns 1 when it
 * stored it, 0 otherwise. HSET before PEXPIREAT (see redis-scripts.ts).
 * KEYS[1] session; ARGV: expiresAt, field, value, field, value…
 */
export const PUT_SCRIPT = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1`);

/**
 * update/touch of one session, alone: applies the changes, the new expiry and
 * the user change if the session is live at `now`. Returns 0 when it is not,
 * else { 1, the user hash it held before (or '') }: the caller then moves
 * the index entries.
 * KEYS[1] session; ARGV: now, expiresAt, mode, userHash (or ''), n, n field/value pairs, fields to delete.
 */
export const UPDATE_ONE_SCRIPT = script(`
local e = redis.call('HGET', KEYS[1], '${EXPIRES_FIELD}')
if not e or tonumber(e) <= tonumber(ARGV[1]) then return 0 end
local last = 5 + 2 * tonumber(ARGV[5])
for i = 6, last, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = last + 1, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[1], '${EXPIRES_FIELD}', ARGV[2])
local old = redis.call('HGET', KEYS[1], '${USER_FIELD}') or ''
if ARGV[3] == '${USER_BIND}' then
  redis.call('HSET', KEYS[1], '${USER_FIELD}', ARGV[4])
elseif ARGV[3] == '${USER_UNBIND}' then
  redis.call('HDEL', KEYS[1], '${USER_FIELD}')
end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return { 1, old }`);

/**
 * The first step of a move on a Cluster: takes session `from` if it is live
 * at `now` (returns its hash as a flat field/value list and deletes it, in
 * one step, so an update either lands before and is carried, or finds
 * nothing and is not acknowledged); returns 0 otherwise.
 * KEYS[1] session; ARGV: now.
 */
export const TAKE_SCRIPT = script(`
local e = redis.call('HGET', KEYS[1], '${EXPIRES_FIELD}')
if not e or tonumber(e) <= tonumber(ARGV[1]) then return 0 end
local stored = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return stored`);

/**
 * Deletes a session (whatever the key holds, as DEL would); returns the user
 * hash it held (or ''), whose set the caller then updates.
 * KEYS[1] session.
 */
export const DESTROY_ONE_SCRIPT = script(`
local old = redis.pcall('HGET', KEYS[1], '${USER_FIELD}')
redis.call('DEL', KEYS[1])
if type(old) == 'string' then return old end
return ''`);

/**
 * gc of one session found due in an expiry shard: { 'g' } when the hash is
 * gone (Redis deleted it at its TTL), { 'l', expiresAt } when it lives on
 * (the shard lagged), { 'x' } when the key is not a session (dropped from
 * the index, neither deleted nor reported), else deletes it and returns
 * { 'd', its user hash or '' }.
 * KEYS[1] session; ARGV: now.
 */
export const GC_ONE_SCRIPT = script(`
local e = redis.pcall('HGET', KEYS[1], '${EXPIRES_FIELD}')
if type(e) == 'table' or (e and not tonumber(e)) then return { 'x' } end
if not e then return { 'g' } end
if tonumber(e) > tonumber(ARGV[1]) then return { 'l', e } end
local u = redis.call('HGET', KEYS[1], '${USER_FIELD}') or ''
redis.call('DEL', KEYS[1])
return { 'd', u }`);

/**
 * Removes from an expiry shard the given ids whose score is still due at
 * `now` (an id a write moved ahead meanwhile stays). Returns the ids it
 * removed: with several processes collecting, each id is removed, and so
 * reported, once.
 * KEYS[1] shard; ARGV: now, ids…
 */
export const DROP_DUE_SCRIPT = script(`
local out = {}
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    out[#out + 1] = ARGV[i]
  end
end
return out`);

/**
 * Adds (or raises: GT, so a late write never lowers it) a session in a
 * user's set, trims the ids whose score has passed on the server's clock,
 * and sets the set's TTL to its greatest score: it dies with its last session.
 * KEYS[1] the user's set; ARGV: sid, expiresAt.
 */
export const INDEX_USER_SCRIPT = script(`
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local t = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t[1] * 1000 + math.floor(t[2] / 1000))
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1`);

/** The metadata fields a stored hash starts with. */
export function metaFields(createdAt: number, expiresAt: number): [string, string][] {
  return [
    [CREATED_FIELD, String(createdAt)],
    [EXPIRES_FIELD, String(expiresAt)],
  ];
}
