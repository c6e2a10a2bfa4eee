import { errorMessage } from '../errors';
import type { StoredSession } from './provider';
import { decodeSession, MOVE_FROM_GONE, MOVE_TO_TAKEN, timestamp } from './redis-scripts';

/**
 * The Redis provider's reply parsers and error redaction, shared by the
 * single-server and the Cluster layouts.
 */

// ---- Replies -------------------------------------------------------------
// Drivers differ in what a raw command resolves: node-redis 6 (RESP3 by default)
// answers HGETALL with an object, node-redis 5 and ioredis with a flat array,
// a client with a type mapping with a Map or Buffers. The parsers accept those
// shapes and throw UnexpectedReply for anything else. Their messages name the
// shape only, never the content (it holds session data).

/** A reply the provider does not understand. */
export class UnexpectedReply extends Error {}

/** An UnexpectedReply for a reply of the wrong shape, the likely cause: a client that maps replies its own way. */
export function wrongShape(expected: string, reply: unknown): UnexpectedReply {
  return new UnexpectedReply(`expected ${expected}, got ${shape(reply)} (does the client map replies differently?)`);
}

function shape(reply: unknown): string {
  if (reply === null) return 'null';
  if (Array.isArray(reply)) return `an array of ${reply.length}`;
  return typeof reply === 'object' ? `a ${reply.constructor?.name ?? 'null-prototype object'}` : `a ${typeof reply}`;
}

/** A bulk string: a string, or a Buffer when the client maps strings to Buffers. */
export function text(reply: unknown): string {
  if (typeof reply === 'string') return reply;
  // Not `instanceof`: a Buffer of another realm (vm contexts, jest) fails that test.
  if (ArrayBuffer.isView(reply)) return Buffer.from(reply.buffer, reply.byteOffset, reply.byteLength).toString('utf8');
  throw wrongShape('a string reply', reply);
}

export function integer(reply: unknown): number {
  let value: number | undefined;
  if (typeof reply === 'number' || typeof reply === 'bigint') value = Number(reply);
  else if (typeof reply === 'string' || ArrayBuffer.isView(reply)) value = timestamp(text(reply));
  if (value === undefined || !Number.isSafeInteger(value)) throw wrongShape('an integer reply', reply);
  return value;
}

/** The 0/1 answer of CREATE_SCRIPT and UPDATE_SCRIPT. */
export function flag(reply: unknown): 0 | 1 {
  const value = integer(reply);
  if (value !== 0 && value !== 1) throw new UnexpectedReply('expected 0 or 1 from the script');
  return value;
}

/** A hash (HGETALL): a flat [field, value, …] array (RESP2), or an object or Map (RESP3). */
export function hashFields(reply: unknown): [string, string][] {
  const fields: [string, string][] = [];
  if (Array.isArray(reply)) {
    if (reply.length % 2 !== 0) throw wrongShape('field/value pairs', reply);
    for (let i = 0; i < reply.length; i += 2) fields.push([text(reply[i]), text(reply[i + 1])]);
  } else if (Object.prototype.toString.call(reply) === '[object Map]') {
    for (const [field, value] of reply as Map<unknown, unknown>) fields.push([text(field), text(value)]);
  } else if (isPlainObject(reply)) {
    for (const [field, value] of Object.entries(reply)) fields.push([field, text(value)]);
  } else {
    throw wrongShape('a hash', reply);
  }
  return fields;
}

/** `{}` or `Object.create(null)`, of any realm: not a Map, Buffer or class instance. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === null || Object.getPrototypeOf(proto) === null;
}

/** HGETALL of a session key: undefined when the key does not exist (or expired). */
export function sessionReply(reply: unknown): StoredSession | undefined {
  const fields = hashFields(reply);
  if (fields.length === 0) return undefined;
  const stored = decodeSession(fields);
  // Not "no session": a hash under our prefix without our metadata means another app shares the prefix, or corruption.
  if (stored === undefined) throw new UnexpectedReply('the hash at this key is not a session (no valid m:c/m:e fields)');
  return stored;
}

/** A list of strings (ZRANGEBYSCORE). */
export function strings(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw wrongShape('a list', reply);
  return reply.map(text);
}

/** A member of the expiries index with its score, as the server wrote it (the next page's cursor). */
export interface ScoredId {
  sid: string;
  score: string;
}

/** ENTRIES_PAGE_SCRIPT's flat [id, score, …] list. */
export function scoredIds(reply: unknown): ScoredId[] {
  const list = strings(reply);
  if (list.length % 2 !== 0) throw wrongShape('id/score pairs', reply);
  const page: ScoredId[] = [];
  for (let i = 0; i < list.length; i += 2) {
    if (timestamp(list[i + 1]) === undefined) throw new UnexpectedReply('a score of the expiries index is not a timestamp');
    page.push({ sid: list[i], score: list[i + 1] });
  }
  return page;
}

/** GC_SCRIPT's { how many it looked at, the collected ids… }. */
export function gcReply(reply: unknown): { looked: number; sids: string[] } {
  if (!Array.isArray(reply) || reply.length === 0) throw wrongShape('a count and ids from the gc script', reply);
  return { looked: integer(reply[0]), sids: reply.slice(1).map(text) };
}

export function moveReply(reply: unknown): Map<string, string> | undefined | false {
  if (!Array.isArray(reply)) {
    const code = integer(reply);
    if (code === MOVE_FROM_GONE) return undefined;
    if (code === MOVE_TO_TAKEN) return false;
    throw new UnexpectedReply('unknown answer code from the move script');
  }
  const stored = decodeSession(hashFields(reply));
  if (stored === undefined) throw new UnexpectedReply('the moved hash is not a session');
  return stored.values;
}

// ---- Errors --------------------------------------------------------------

/** Longest driver message kept: enough to diagnose, too short to carry a session. */
const MAX_MESSAGE = 300;
/**
 * Shorter arguments are left in messages: they cannot be told apart from the
 * message's own text ('1' in "@user_script:1"), and no key or id is that short.
 */
const MIN_REDACTED = 3;

/**
 * A driver's error rebuilt for handing out: its `name`, its `code` and its
 * message with every occurrence of `secrets` (the command's keys, fields and
 * values) replaced by `…`, and every quoted span blanked (Redis quotes the
 * arguments it echoes, cut to 128 characters, so they no longer match a
 * secret whole). Nothing else is kept: ioredis attaches the command with its
 * arguments (`command.args`) and earlier errors (`previousErrors`), and the
 * original stack repeats the message.
 */
export function redactedError(error: unknown, secrets: string[]): Error {
  let message = errorMessage(error);
  // Longest first, so a value inside a longer key is not half-replaced.
  for (const secret of [...new Set(secrets)].filter((s) => s.length >= MIN_REDACTED).sort((a, b) => b.length - a.length)) {
    message = message.split(secret).join('…');
  }
  message = message.replace(/'[^']*(?:'|$)/g, "'…'").replace(/"[^"]*(?:"|$)/g, '"…"');
  const redacted = new Error(message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message);
  const { name, code } = (typeof error === 'object' && error !== null ? error : {}) as { name?: unknown; code?: unknown };
  if (typeof name === 'string' && /^\w{1,64}$/.test(name)) redacted.name = name;
  // Codes are fixed identifiers ('ECONNREFUSED', 'ERR_…'), never data.
  if ((typeof code === 'string' && /^[\w.-]{1,64}$/.test(code)) || typeof code === 'number') Object.assign(redacted, { code });
  return redacted;
}
