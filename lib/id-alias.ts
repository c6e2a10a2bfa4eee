import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

/**
 * The grace window of a renewed id: for a few seconds the old id leads to the
 * new session. The store keeps that link as an ordinary record under a key of
 * its own, holding the new id sealed with a key only the old id yields, so the
 * store (a backup, a replica, an admin listing) never holds a usable id.
 */

/** The value key of an alias record (NUL-prefixed: no app key can clash). */
export const ALIAS_KEY = '\u0000alias';

/** Where the alias of `oldSid` is stored: unlike every session key, the hash covers a NUL, so the two can never meet. */
export function aliasKey(oldSid: string): string {
  return createHash('sha256').update('alias\u0000').update(oldSid).digest('base64url');
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

function sealingKey(oldSid: string): Buffer {
  return Buffer.from(hkdfSync('sha256', oldSid, 'session-manager', 'id alias', 32));
}

/** `newSid` readable only by a holder of `oldSid`, as the JSON string the record stores. */
export function sealAlias(oldSid: string, newSid: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(oldSid), iv);
  const sealed = Buffer.concat([iv, cipher.update(newSid, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return JSON.stringify(sealed.toString('base64url'));
}

/** The new id an alias record names, or undefined when it is not one `sealAlias(oldSid, …)` wrote. */
export function openAlias(oldSid: string, json: string | undefined): string | undefined {
  if (json === undefined) return undefined;
  try {
    const sealed = Buffer.from(JSON.parse(json) as string, 'base64url');
    if (sealed.length <= IV_BYTES + TAG_BYTES) return undefined;
    const decipher = createDecipheriv('aes-256-gcm', sealingKey(oldSid), sealed.subarray(0, IV_BYTES));
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]).toString('utf8');
  } catch {
    return undefined;
  }
}
