import type { IncomingMessage, ServerResponse } from 'node:http';
import { serialize as serializeCookie, type SerializeOptions } from 'cookie';
import { sign, unsign } from 'cookie-signature';
import { storageKey } from './manager';
import { MIN_SECRET_LENGTH, SESSION_ID_PATTERN, type ResolvedOptions, type Transport } from './options';

/** What the response must carry about the id once the session is committed. */
export type IdOutcome =
  | { kind: 'none' }
  | { kind: 'send'; value: string; maxAgeMs: number; idChanged: boolean; via: Transport | undefined }
  | { kind: 'clear' };

/** The id a request carried, after its signature (if any) checked out. */
export interface IncomingId {
  sid: string;
  /** Its storage key (see `storageKey`). */
  key: string;
  /** The value as received, reusable as is when it is already signed with the current secret. */
  raw: string;
  /** True when `raw` is exactly what we would send for `sid` now. */
  current: boolean;
  /** The transport it came by: the response answers in the same one. */
  via: Transport;
}

type SecretSource = IncomingMessage & { secret?: unknown; secure?: boolean; signedCookies?: Record<string, unknown> };

/**
 * Raw values looked at per request (a repeated cookie name, several
 * transports): enough for a stale cookie on a parent path or domain, few
 * enough that a hostile header costs nothing. Only values that verify ever
 * reach the store.
 */
const MAX_RAW_VALUES = 8;

const VERIFIED_CACHE_SIZE = 10_000;

/**
 * A transported value that verified: whether it came as a cookie (URL-encoded
 * text), the value, its id, the id's storage key, and the secret that signed
 * it (undefined: unsigned).
 */
interface Verified {
  cookie: boolean;
  value: string;
  sid: string;
  key: string;
  secret: string | undefined;
}

/**
 * Where the id travels: read from the listed transports in order, written to
 * the cookie and/or the response header. Signing follows cookie-parser's `s:`
 * format, so either side verifies the other's cookies.
 */
export class IdTransport {
  readonly #options: ResolvedOptions;
  /** Values already verified → what they hold: a returning visitor costs one lookup, no HMAC and no hash. */
  readonly #verified = new Map<string, Verified>();
  readonly #attributeCache: [insecure?: string, secure?: string] = [];
  #warnedWeakSecret = false;
  /** cookie-parser's secret as last seen, resolved once rather than per request. */
  #borrowed: string[] | undefined;

  constructor(options: ResolvedOptions) {
    this.#options = options;
  }

  /**
   * Every well-formed, correctly signed id the request carries, in the order
   * of the listed transports (every value of a repeated cookie name, in header
   * order), without duplicates. The first one the store knows wins, so a
   * malformed or stale value never hides a good one behind it.
   */
  candidates(req: IncomingMessage): IncomingId[] {
    const found: IncomingId[] = [];
    const secrets = this.secrets(req);
    let budget = MAX_RAW_VALUES;
    for (const via of this.#options.transports) {
      const cookie = via === 'cookie';
      for (const text of this.#rawValues(req, via)) {
        if (budget-- === 0) return found;
        const decoded = this.#decode(text, cookie, secrets);
        if (decoded !== undefined && !found.some((each) => each.sid === decoded.sid)) {
          found.push({ sid: decoded.sid, key: decoded.key, current: decoded.secret === secrets?.[0], raw: decoded.value, via });
        }
      }
      if (via === 'cookie') this.#addVerifiedByCookieParser(req, found);
    }
    return found;
  }

  /**
   * cookie-parser verified its signed cookies with every secret of its
   * rotation list; a request only shows us the first (`req.secret`). So a
   * value it verified with an older secret is still accepted (and re-signed
   * with the current one on the next response).
   */
  #addVerifiedByCookieParser(req: IncomingMessage, found: IncomingId[]): void {
    if (this.#options.secrets) return;
    const sid = (req as SecretSource).signedCookies?.[this.#options.cookieName];
    if (typeof sid !== 'string' || !SESSION_ID_PATTERN.test(sid) || found.some((each) => each.sid === sid)) return;
    found.push({ sid, key: storageKey(sid), raw: sid, current: false, via: 'cookie' });
  }

  /**
   * Verifies a transported value (a cookie's still URL-encoded, as it came);
   * undefined for anything malformed or badly signed.
   */
  #decode(text: string, cookie: boolean, secrets: string[] | undefined): Verified | undefined {
    const known = this.#verified.get(text);
    if (known !== undefined && known.cookie === cookie && (known.secret === undefined ? secrets === undefined : secrets?.includes(known.secret))) return known;
    const value = cookie ? decodeCookieValue(text) : text;
    if (value === undefined) return undefined;
    if (secrets === undefined) return SESSION_ID_PATTERN.test(value) ? this.#remember(text, cookie, value, value, undefined) : undefined;
    if (!value.startsWith('s:')) return undefined;
    for (const secret of secrets) {
      const sid = unsign(value.slice(2), secret);
      if (sid !== false && SESSION_ID_PATTERN.test(sid)) return this.#remember(text, cookie, value, sid, secret);
    }
    return undefined;
  }

  /** Only values that verified are kept, so a flood of forgeries cannot fill the cache. */
  #remember(text: string, cookie: boolean, value: string, sid: string, secret: string | undefined): Verified {
    if (this.#verified.size >= VERIFIED_CACHE_SIZE) this.#verified.delete(this.#verified.keys().next().value!);
    const verified = { cookie, value, sid, key: storageKey(sid), secret };
    this.#verified.set(text, verified);
    return verified;
  }

  /** The id as it travels: signed with the first secret when there is one. */
  encode(sid: string, req: IncomingMessage): string {
    const secrets = this.secrets(req);
    return secrets === undefined ? sid : `s:${sign(sid, secrets[0])}`;
  }

  /** Our secrets, else cookie-parser's (`req.secret`), else none. */
  secrets(req: IncomingMessage): string[] | undefined {
    if (this.#options.secrets) return this.#options.secrets;
    const borrowed = (req as SecretSource).secret;
    if (typeof borrowed !== 'string' || borrowed === '') return undefined;
    if (this.#borrowed?.[0] !== borrowed) this.#borrowed = this.#borrow(borrowed);
    return this.#borrowed;
  }

  #borrow(secret: string): string[] {
    if (secret.length < MIN_SECRET_LENGTH && !this.#warnedWeakSecret) {
      this.#warnedWeakSecret = true;
      this.#options.onError(new Error(`[session-manager] cookie-parser's secret is shorter than ${MIN_SECRET_LENGTH} characters`));
    }
    return [secret];
  }

  /**
   * Sends the id (already encoded); answers whether it wrote anything. A new
   * id goes out on every writing transport; a refresh of an id that came by
   * URL or header never becomes a cookie (a link with someone else's id must
   * not plant it in the visitor's cookie jar).
   */
  send(req: IncomingMessage, res: ServerResponse, value: string, maxAgeMs: number, idChanged: boolean, via: Transport | undefined): boolean {
    const { transports, cookieName, headerName } = this.#options;
    let wrote = false;
    const persistent = this.#options.cookie.persistent;
    // A browser-session cookie has no lifetime to refresh: send it only when the id changes.
    if (transports.includes('cookie') && (idChanged || (persistent && via === 'cookie'))) {
      const maxAge = persistent ? `; Max-Age=${Math.max(0, Math.round(maxAgeMs / 1000))}` : '';
      appendSetCookie(res, `${cookieName}=${encodeURIComponent(value)}${maxAge}${this.#attributes(req)}`);
      wrote = true;
    }
    if (idChanged && transports.includes('header')) {
      res.setHeader(headerName, value);
      wrote = true;
    }
    return wrote;
  }

  /**
   * Sets what the response must say about the id: the id (cookie and/or
   * header), or a cleared cookie, or nothing; a response that carries either
   * is kept out of shared caches.
   */
  writeOutcome(req: IncomingMessage, res: ServerResponse, outcome: IdOutcome): void {
    let wrote = false;
    if (outcome.kind === 'send') wrote = this.send(req, res, outcome.value, outcome.maxAgeMs, outcome.idChanged, outcome.via);
    else if (outcome.kind === 'clear') wrote = this.clear(req, res);
    if (!wrote) return;
    const cacheControl = res.getHeader('cache-control');
    res.setHeader('Cache-Control', cacheControl === undefined ? 'no-store' : privateOnly(String(cacheControl)));
  }

  /** Tells the client to forget the id (a cookie with Max-Age=0); answers whether it wrote anything. */
  clear(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.#options.transports.includes('cookie')) return false;
    appendSetCookie(res, serializeCookie(this.#options.cookieName, '', { ...this.#cookieAttributes(req, 0), expires: new Date(0) }));
    return true;
  }

  #rawValues(req: IncomingMessage, transport: Transport): string[] {
    switch (transport) {
      case 'cookie': {
        const header = req.headers.cookie;
        // Cheap pre-check: most requests without our cookie skip the parse.
        if (header === undefined || !header.includes(this.#options.cookieName)) return [];
        return cookieValues(header, this.#options.cookieName);
      }
      case 'header': {
        const value = req.headers[this.#options.headerName];
        return typeof value === 'string' ? [value] : [];
      }
      case 'query': {
        const url = req.url ?? '';
        const start = url.indexOf('?');
        if (start === -1) return [];
        return new URLSearchParams(url.slice(start + 1)).getAll(this.#options.queryParam);
      }
    }
  }

  #cookieAttributes(req: IncomingMessage, maxAgeMs: number | undefined): SerializeOptions {
    const { path, domain, secure, sameSite, httpOnly, partitioned, priority } = this.#options.cookie;
    return {
      path,
      domain,
      httpOnly,
      sameSite: sameSite === false ? undefined : sameSite,
      secure: secure === 'auto' ? isSecure(req) : secure,
      partitioned: partitioned || undefined,
      priority,
      maxAge: maxAgeMs === undefined ? undefined : Math.max(0, Math.round(maxAgeMs / 1000)),
    };
  }

  /**
   * The cookie's attributes after `Max-Age` (`; Path=/; HttpOnly; …`), as the
   * `cookie` package writes them, serialised once per Secure flag: every
   * write re-sends the cookie, and its attributes never change.
   */
  #attributes(req: IncomingMessage): string {
    const secure = this.#options.cookie.secure === 'auto' ? isSecure(req) : this.#options.cookie.secure;
    const index = secure ? 1 : 0;
    return (this.#attributeCache[index] ??= serializeCookie('x', '', this.#cookieAttributes(req, undefined)).slice('x='.length));
  }
}

/** `req.secure` under Express (honours `trust proxy`), else whether the socket is TLS. */
function isSecure(req: IncomingMessage): boolean {
  const secure = (req as SecretSource).secure;
  if (typeof secure === 'boolean') return secure;
  return (req.socket as { encrypted?: boolean }).encrypted === true;
}

function appendSetCookie(res: ServerResponse, cookie: string): void {
  const previous = res.getHeader('set-cookie');
  if (previous === undefined) res.setHeader('Set-Cookie', cookie);
  else res.setHeader('Set-Cookie', [...(Array.isArray(previous) ? previous : [String(previous)]), cookie]);
}

/**
 * Every value of cookie `name` in a Cookie header, in order (the `cookie`
 * package keeps only the first), still URL-encoded: a verified value is
 * looked up as it came (see `decodeCookieValue`).
 */
function cookieValues(header: string, name: string): string[] {
  const values: string[] = [];
  // One pass with indexOf, no split: this runs on every request.
  for (let at = 0; at < header.length; ) {
    let end = header.indexOf(';', at);
    if (end === -1) end = header.length;
    let start = at;
    while (start < end && isBlank(header.charCodeAt(start))) start++;
    if (header.startsWith(name, start)) {
      let eq = start + name.length;
      while (eq < end && isBlank(header.charCodeAt(eq))) eq++;
      if (eq < end && header.charCodeAt(eq) === EQUALS) values.push(header.slice(eq + 1, end).trim());
    }
    at = end + 1;
  }
  return values;
}

const EQUALS = 0x3d;

/** A cookie value as `cookie` reads it: unquoted, URL-decoded; undefined for a broken %-escape. */
function decodeCookieValue(raw: string): string | undefined {
  const value = raw.length > 1 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  try {
    return value.includes('%') ? decodeURIComponent(value) : value;
  } catch {
    return undefined;
  }
}

/** What `String.prototype.trim` would drop around a cookie name in practice: space and tab. */
function isBlank(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

/**
 * `path` with the encoded id set as query parameter `param` (replacing any it
 * had, however it was encoded), before any `#fragment`. Only for this site's
 * own paths: an absolute or protocol-relative URL would hand the id to
 * another origin, so it throws.
 */
export function withIdInUrl(path: string, param: string, value: string): string {
  // Browsers drop tabs and newlines inside a URL ("/\t/evil.example" is "//evil.example"), so none may appear.
  if (typeof path !== 'string' || /[\t\n\r]/.test(path) || !path.startsWith('/') || path.startsWith('//') || path.startsWith('/\\')) {
    throw new TypeError(`[session-manager] url() takes a path of this site ("/…"), not ${JSON.stringify(String(path).slice(0, 60))}: the id must not leave for another origin`);
  }
  const hashAt = path.indexOf('#');
  const fragment = hashAt === -1 ? '' : path.slice(hashAt);
  const beforeHash = hashAt === -1 ? path : path.slice(0, hashAt);
  const queryAt = beforeHash.indexOf('?');
  const base = queryAt === -1 ? beforeHash : beforeHash.slice(0, queryAt);
  const query = new URLSearchParams(queryAt === -1 ? '' : beforeHash.slice(queryAt + 1));
  query.set(param, value);
  return `${base}?${query.toString()}${fragment}`;
}

/** An app's Cache-Control, narrowed so no shared cache keeps a response that carries a session id. */
function privateOnly(cacheControl: string): string {
  if (/(^|[\s,])(private|no-store)([\s,=]|$)/i.test(cacheControl)) return cacheControl;
  const kept = cacheControl
    .split(',')
    .map((directive) => directive.trim())
    .filter((directive) => directive !== '' && !/^(public|s-maxage\s*=.*)$/i.test(directive));
  return ['private', ...kept].join(', ');
}
