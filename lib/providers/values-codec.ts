/**
 * A session's values as stored by the file and sqlite providers: one JSON
 * object mapping each key to the JSON text of its value, e.g.
 * `{"user":"\"ann\"","cart":"[1,2]"}`. The value stays text (it is already
 * JSON), so it round-trips exactly.
 *
 * Keys go through Object.fromEntries / Object.entries: both treat `__proto__`
 * as an ordinary own property (JSON.parse does too), so no key reaches a prototype.
 */

/** The values as a plain object of key → JSON text, ready for `JSON.stringify` (alone or inside a larger record). */
export function valuesToObject(values: ReadonlyMap<string, string>): Record<string, string> {
  return Object.fromEntries(values);
}

/** The values in an already parsed object, or `undefined` when it is not an object of strings (corrupt data). */
export function valuesFromObject(raw: unknown): Map<string, string> | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const values = new Map<string, string>();
  for (const [key, json] of Object.entries(raw)) {
    if (typeof json !== 'string') return undefined;
    values.set(key, json);
  }
  return values;
}

/** The values as JSON text. @example encodeValues(new Map([['n', '1']])) // '{"n":"1"}' */
export function encodeValues(values: ReadonlyMap<string, string>): string {
  return JSON.stringify(valuesToObject(values));
}

/** The values in `text`, or `undefined` when it is not valid JSON of the right shape (corrupt, truncated). */
export function decodeValues(text: string): Map<string, string> | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  return valuesFromObject(raw);
}
