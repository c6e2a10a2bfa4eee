import { createHash } from 'node:crypto';
import { USER_KEY, userFromJson, type StoredSession } from './provider';

/**
 * The Redis provider's storage layout and its Lua scripts.
 *
 * - `${prefix}{${sid}}`: one hash per session, with a TTL (`PEXPIREAT` its
 *   `expiresAt`). Fields: metadata under `m:` (`m:c` createdAt, `m:e`
 *   expiresAt, `m:u` the hash of its user, when bound), values under `v:`, so
 *   no user key can hit metadata (a user key `m:e` is stored as `v:m:e`).
 * - `${prefix}expiries`: a sorted set, member sid, score expiresAt, of every
 *   session (expired ones until `gc()` collects them). `count()`, `entries()`
 *   and `gc()` read it: no `SCAN`.
 * - `${prefix}user:{${userHash}}:sids`: per user, a sorted set of the ids of
 *   its sessions (score expiresAt), `userHash` the SHA-256 (base64url) of the
 *   user id, so any id is safe in a key. Its TTL is the greatest expiry of its
 *   members: it dies with its last session.
 *
 * Every write (create, update, touch, move, destroy, gc) keeps the indexes in
 * the same script as the session, so on one server they never disagree with
 * the hashes, except where Redis itself deletes a hash at its TTL (the
 * indexes then keep its id until `gc()` or a later write of that user trims
 * it). Readers treat an index as a superset anyway: every id is checked
 * against its hash before it is handed out.
 *
 * Index keys never end with `}` and session keys always do, and the prefix has
 * no braces, so an index key of one prefix is never a session key of another.
 */

/** Hash field holding `createdAt` (ms since the epoch, as decimal text). */
export const CREATED_FIELD = 'm:c';
/** Hash field holding `expiresAt` (ms since the epoch, as decimal text). */
export const EXPIRES_FIELD = 'm:e';
/** Hash field holding the {@link userHash} of the session's user, while it has one. */
export const USER_FIELD = 'm:u';
/** Prefix of the hash field of each value: field `v:<key>` holds the JSON text of `<key>`. */
export const VALUE_PREFIX = 'v:';

const USER_KEY_HEAD = 'user:{';
const USER_KEY_TAIL = '}:sids';

/** The hash of one session. */
export function sessionKey(prefix: string, sid: string): string {
  return `${prefix}{${sid}}`;
}

/** The sorted set of every session's expiry. */
export function expiriesKey(prefix: string): string {
  return `${prefix}expiries`;
}

/** The sorted set of one user's sessions. */
export function userKey(prefix: string, hash: string): string {
  return `${prefix}${USER_KEY_HEAD}${hash}${USER_KEY_TAIL}`;
}

/** SHA-256 (base64url) of a user id: what names its index key and what `m:u` holds. */
export function userHash(userId: string): string {
  return createHash('sha256').update(userId, 'utf8').digest('base64url');
}


/** A Lua script and its SHA-1, for EVALSHA (with EVAL as the fallback when the server has not cached it). */
export interface RedisScript {
  source: string;
  sha1: string;
}

const script = (source: string): RedisScript => ({ source, sha1: createHash('sha1').update(source).digest('hex') });

// Keys: the session keys and the keys JS can name (the expiries set, a user's
// set being bound) are declared in KEYS[]. The set of the user a session was
// bound to is named by the stored `m:u`, which only the script sees, so it is
// built inside Lua from ARGV[1] (the prefix); so are session keys in gc. Fine
// on one server only: on a Cluster the provider uses the one-key scripts of
// redis-cluster-scripts.ts and updates the indexes as separate commands.
// ARGV numbers are compared as Lua doubles: exact for ms timestamps.
// HSET goes field by field because `unpack()` of a large session could exceed
// Lua's C stack (~8000 values). Every HSET comes before PEXPIREAT: PEXPIREAT
// with a past deadline deletes the key, and a later HSET would bring it back
// without a TTL.

/**
 * Lua helpers shared by the writing scripts. `indexUser` adds a session to a
 * user's set, trims what Redis's own clock says has expired (those hashes are
 * gone) and sets the set's TTL to its greatest expiry.
 */
const USER_INDEX_LUA = `
local function userKey(h) return ARGV[1] .. '${USER_KEY_HEAD}' .. h .. '${USER_KEY_TAIL}' end
local function indexUser(key, sid, e)
  redis.call('ZADD', key, e, sid)
  local t = redis.call('TIME')
  redis.call('ZREMRANGEBYSCORE', key, '-inf', t[1] * 1000 + math.floor(t[2] / 1000))
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', key, top[2]) end
end
local function unindexUser(h, sid) redis.call('ZREM', userKey(h), sid) end
`;

/** How an update or move changes the session's user (ARGV "mode"). */
export const USER_KEEP = '0';
export const USER_BIND = '1';
export const USER_UNBIND = '2';

/**
 * Stores a new session unless the key exists; returns 1 when it stored it, 0 otherwise.
 * KEYS[1] session, KEYS[2] expiries, KEYS[3] the user's set (only when bound);
 * ARGV: prefix, sid, createdAt, expiresAt, userHash (or ''), field, value, field, value…
 */
export const CREATE_SCRIPT = script(`${USER_INDEX_LUA}
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], '${CREATED_FIELD}', ARGV[3], '${EXPIRES_FIELD}', ARGV[4])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if KEYS[3] then
  redis.call('HSET', KEYS[1], '${USER_FIELD}', ARGV[5])
  indexUser(KEYS[3], ARGV[2], ARGV[4])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
return 1`);

/**
 * Applies per-field changes and the new expiry if the session is live at `now`;
 * returns 1 when it did, 0 otherwise. Also serves touch (keep, n = 0, nothing
 * to delete). Most writes keep the expiry (it slides on the `touchAfter`
 * schedule): then the TTL and the indexes are left as they are.
 * KEYS[1] session, KEYS[2] expiries, KEYS[3] the new user's set (mode bind only);
 * ARGV: prefix, sid, now, expiresAt, mode, userHash (or ''), n, n field/value pairs to set, then fields to delete.
 */
export const UPDATE_SCRIPT = script(`${USER_INDEX_LUA}
local e = redis.call('HGET', KEYS[1], '${EXPIRES_FIELD}')
if not e or tonumber(e) <= tonumber(ARGV[3]) then return 0 end
local last = 7 + 2 * tonumber(ARGV[7])
for i = 8, last, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = last + 1, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
local moved = e ~= ARGV[4]
if moved then redis.call('HSET', KEYS[1], '${EXPIRES_FIELD}', ARGV[4]) end
local old = redis.call('HGET', KEYS[1], '${USER_FIELD}')
if ARGV[5] == '${USER_BIND}' then
  if old and old ~= ARGV[6] then unindexUser(old, ARGV[2]) end
  redis.call('HSET', KEYS[1], '${USER_FIELD}', ARGV[6])
  indexUser(KEYS[3], ARGV[2], ARGV[4])
elseif old and ARGV[5] == '${USER_UNBIND}' then
  unindexUser(old, ARGV[2])
  redis.call('HDEL', KEYS[1], '${USER_FIELD}')
elseif old and moved then
  indexUser(userKey(old), ARGV[2], ARGV[4])
end
if moved then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
end
return 1`);

/** What MOVE_SCRIPT returns when `from` is missing or expired at `now`. */
export const MOVE_FROM_GONE = 0;
/** What MOVE_SCRIPT returns when `to` already exists. */
export const MOVE_TO_TAKEN = -1;

/**
 * Replaces session `from` by `to` (Provider.move): only if `from` is live at
 * `now` and `to` does not exist. RENAME carries `from`'s hash over as stored
 * right now and deletes `from` in the same step; the changes, the new metadata,
 * the indexes and the TTL are then applied to `to`. Returns `to`'s hash (flat
 * field/value list, read before PEXPIREAT, which deletes a key whose deadline
 * has passed), or MOVE_FROM_GONE / MOVE_TO_TAKEN, changing nothing.
 * KEYS[1] from, KEYS[2] to, KEYS[3] expiries, KEYS[4] the new user's set (mode bind only);
 * ARGV: prefix, from sid, to sid, now, createdAt, expiresAt, mode, userHash (or ''),
 * n, n field/value pairs to set, then fields to delete.
 */
export const MOVE_SCRIPT = script(`${USER_INDEX_LUA}
local e = redis.call('HGET', KEYS[1], '${EXPIRES_FIELD}')
if not e or tonumber(e) <= tonumber(ARGV[4]) then return ${MOVE_FROM_GONE} end
if redis.call('EXISTS', KEYS[2]) == 1 then return ${MOVE_TO_TAKEN} end
redis.call('RENAME', KEYS[1], KEYS[2])
local last = 9 + 2 * tonumber(ARGV[9])
for i = 10, last, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
for i = last + 1, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[2], '${CREATED_FIELD}', ARGV[5], '${EXPIRES_FIELD}', ARGV[6])
local old = redis.call('HGET', KEYS[2], '${USER_FIELD}')
if old then unindexUser(old, ARGV[2]) end
if ARGV[7] == '${USER_BIND}' then
  redis.call('HSET', KEYS[2], '${USER_FIELD}', ARGV[8])
  indexUser(KEYS[4], ARGV[3], ARGV[6])
elseif old and ARGV[7] == '${USER_UNBIND}' then
  redis.call('HDEL', KEYS[2], '${USER_FIELD}')
elseif old then
  indexUser(userKey(old), ARGV[3], ARGV[6])
end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[3])
local stored = redis.call('HGETALL', KEYS[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[6])
return stored`);

/**
 * Deletes a session and its index entries (whatever the key holds, as `DEL` would).
 * KEYS[1] session, KEYS[2] expiries; ARGV: prefix, sid.
 */
export const DESTROY_SCRIPT = script(`${USER_INDEX_LUA}
local old = redis.pcall('HGET', KEYS[1], '${USER_FIELD}')
if type(old) == 'string' then unindexUser(old, ARGV[2]) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1`);

/**
 * One batch of gc: the ids in expiries due at `now` (at most `batch`), each
 * removed from the indexes with its hash (which Redis has usually deleted
 * already). Returns { how many it looked at, the ids it collected… }. An id
 * whose hash says it lives on (an index that lagged) gets its score fixed
 * instead; a key that is not a session is dropped from the index, neither
 * deleted nor reported.
 * KEYS[1] expiries; ARGV: prefix, now, batch.
 */
export const GC_SCRIPT = script(`${USER_INDEX_LUA}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = { #due }
for _, sid in ipairs(due) do
  local key = ARGV[1] .. '{' .. sid .. '}'
  local e = redis.pcall('HGET', key, '${EXPIRES_FIELD}')
  if type(e) == 'table' or (e and not tonumber(e)) then
    redis.call('ZREM', KEYS[1], sid)
  elseif e and tonumber(e) > tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], e, sid)
  else
    if e then
      local u = redis.call('HGET', key, '${USER_FIELD}')
      if u then unindexUser(u, sid) end
      redis.call('DEL', key)
    end
    redis.call('ZREM', KEYS[1], sid)
    out[#out + 1] = sid
  end
end
return out`);

/**
 * One page of entries(): up to `count` members of expiries with their scores,
 * in (score, id) order, after the cursor (`lastScore`, `lastId`), or from the
 * first one due after `now` when there is no cursor yet (lastScore ''). A
 * cursor, not an offset: a session removed meanwhile shifts nothing. Ids of
 * equal score are in byte order (Redis compares them with memcmp); Lua's own
 * string comparison follows the server's locale, hence `leq`.
 * KEYS[1] expiries; ARGV: now, lastScore, lastId, count. Read-only.
 */
export const ENTRIES_PAGE_SCRIPT = script(`
local function leq(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end
local start
if ARGV[2] == '' then
  start = redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])
else
  start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[2])
  local stop = redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[2])
  while start < stop do
    local mid = math.floor((start + stop) / 2)
    if leq(redis.call('ZRANGE', KEYS[1], mid, mid)[1], ARGV[3]) then start = mid + 1 else stop = mid end
  end
end
return redis.call('ZRANGE', KEYS[1], start, start + tonumber(ARGV[4]) - 1, 'WITHSCORES')`);

/**
 * Drops from a user's set the ids whose hash is gone or no longer names this
 * user, checked again here so a session bound meanwhile stays. Returns how many it dropped.
 * KEYS[1] the user's set, KEYS[2…] the sessions; ARGV: userHash, the sessions' ids.
 */
export const PRUNE_USER_SCRIPT = script(`
local dropped = 0
for i = 2, #KEYS do
  if redis.pcall('HGET', KEYS[i], '${USER_FIELD}') ~= ARGV[1] then
    dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return dropped`);

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
 * What `changes` do to the session's user: the ARGV mode and hash, and the
 * user's set to declare in KEYS (bind only). A user key set to anything but a
 * JSON string unbinds: such a session is listed under no user.
 */
export function userChange(prefix: string, changes: ReadonlyMap<string, string | undefined>): { mode: string; hash: string; keys: string[] } {
  if (!changes.has(USER_KEY)) return { mode: USER_KEEP, hash: '', keys: [] };
  const user = userFromJson(changes.get(USER_KEY));
  if (user === undefined) return { mode: USER_UNBIND, hash: '', keys: [] };
  const hash = userHash(user);
  return { mode: USER_BIND, hash, keys: [userKey(prefix, hash)] };
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
