import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseCookies, serialize as serializeCookie, type SerializeOptions } from 'cookie';
import { sign, unsign } from 'cookie-signature';
import { MIN_SECRET_LENGTH, SESSION_ID_PATTERN, type ResolvedOptions, type Transport } from './options';

/** The id a request carried, after its signature (if any) checked out. */
export interface IncomingId {
  sid: string;
  /** The value as received, reusable as is when it is already signed with the current secret. */
  raw: string;
  /** True when `raw` is exactly what we would send for `sid` now. */
  current: boolean;
}

type SecretSource = IncomingMessage & { secret?: unknown; secure?: boolean };

const VERIFIED_CACHE_SIZE = 10_000;

/**
 * Where the id travels: read from the listed transports in order, written to
 * the cookie and/or the response header. Signing follows cookie-parser's `s:`
 * format, so either side verifies the other's cookies.
 */
export class IdTransport {
  readonly #options: ResolvedOptions;
  /** Signed values already verified → the id and the secret that signed it (skips the HMAC for returning visitors). */
  readonly #verified = new Map<string, { sid: string; secret: string }>();
  readonly #attributeCache: [insecure?: string, secure?: string] = [];
  #warnedWeakSecret = false;

  constructor(options: ResolvedOptions) {
    this.#options = options;
  }

  /** The first well-formed, correctly signed id among the listed transports, or undefined. */
  read(req: IncomingMessage): IncomingId | undefined {
    for (const transport of this.#options.transports) {
      const raw = this.#rawValue(req, transport);
      if (raw === undefined) continue;
      const decoded = this.decode(raw, req);
      if (decoded !== undefined) return { sid: decoded.sid, current: decoded.current, raw };
    }
    return undefined;
  }

  /** Verifies a transported value; undefined for anything malformed or badly signed. */
  decode(value: string, req: IncomingMessage): { sid: string; current: boolean } | undefined {
    const secrets = this.secrets(req);
    if (secrets === undefined) return SESSION_ID_PATTERN.test(value) ? { sid: value, current: true } : undefined;
    if (!value.startsWith('s:')) return undefined;
    const known = this.#verified.get(value);
    if (known !== undefined && secrets.includes(known.secret)) return { sid: known.sid, current: known.secret === secrets[0] };
    for (const secret of secrets) {
      const sid = unsign(value.slice(2), secret);
      if (sid !== false && SESSION_ID_PATTERN.test(sid)) {
        // Only values that verified are kept, so a flood of forgeries cannot fill the cache.
        if (this.#verified.size >= VERIFIED_CACHE_SIZE) this.#verified.delete(this.#verified.keys().next().value!);
        this.#verified.set(value, { sid, secret });
        return { sid, current: secret === secrets[0] };
      }
    }
    return undefined;
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
    if (borrowed.length < MIN_SECRET_LENGTH && !this.#warnedWeakSecret) {
      this.#warnedWeakSecret = true;
      this.#options.onError(new Error(`[session-manager] cookie-parser's secret is shorter than ${MIN_SECRET_LENGTH} characters`));
    }
    return [borrowed];
  }

  /** Sends the id (already encoded) on every writing transport; answers whether it wrote anything. */
  send(req: IncomingMessage, res: ServerResponse, value: string, maxAgeMs: number, idChanged: boolean): boolean {
    const { transports, cookieName, headerName } = this.#options;
    let wrote = false;
    const persistent = this.#options.cookie.persistent;
    // A browser-session cookie has no lifetime to refresh: send it only when the id changes.
    if (transports.includes('cookie') && (idChanged || persistent)) {
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

  /** Tells the client to forget the id (a cookie with Max-Age=0); answers whether it wrote anything. */
  clear(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.#options.transports.includes('cookie')) return false;
    appendSetCookie(res, serializeCookie(this.#options.cookieName, '', { ...this.#cookieAttributes(req, 0), expires: new Date(0) }));
    return true;
  }

  #rawValue(req: IncomingMessage, transport: Transport): string | undefined {
    switch (transport) {
      case 'cookie': {
        const header = req.headers.cookie;
        // Cheap pre-check: most requests without our cookie skip the parse.
        if (header === undefined || !header.includes(this.#options.cookieName)) return undefined;
        return parseCookies(header)[this.#options.cookieName];
      }
      case 'header': {
        const value = req.headers[this.#options.headerName];
        return typeof value === 'string' ? value : undefined;
      }
      case 'query': {
        const url = req.url ?? '';
        const start = url.indexOf('?');
        if (start === -1) return undefined;
        return new URLSearchParams(url.slice(start + 1)).get(this.#options.queryParam) ?? undefined;
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

/** `path` with the encoded id set as query parameter `param` (replacing any it had), before any `#fragment`. */
export function withIdInUrl(path: string, param: string, value: string): string {
  const hashAt = path.indexOf('#');
  const fragment = hashAt === -1 ? '' : path.slice(hashAt);
  const beforeHash = hashAt === -1 ? path : path.slice(0, hashAt);
  const queryAt = beforeHash.indexOf('?');
  const base = queryAt === -1 ? beforeHash : beforeHash.slice(0, queryAt);
  const encodedParam = encodeURIComponent(param);
  const kept = queryAt === -1 ? [] : beforeHash.slice(queryAt + 1).split('&').filter((pair) => pair !== '' && pair.split('=')[0] !== encodedParam);
  kept.push(`${encodedParam}=${encodeURIComponent(value)}`);
  return `${base}?${kept.join('&')}${fragment}`;
}
