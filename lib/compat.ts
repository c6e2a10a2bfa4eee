import type { IncomingMessage } from 'node:http';
import { inspect } from 'node:util';
import type { Manager } from './manager';
import type { RequestSession } from './request-session';
import type { Session } from './session';

/** express-session's callback: called once, with the error or nothing. */
export type CompatCallback = (err?: unknown) => void;

/** `req.session.cookie` in `compat: 'express-session'` mode. */
export interface CompatCookie {
  /** Milliseconds until the session expires; assign a number of ms (remember-me) or `null` for the default lifetime. */
  get maxAge(): number;
  set maxAge(ms: number | null | undefined);
  /** When the session expires; assign a `Date`, or `null`/`false` for the default lifetime. */
  get expires(): Date;
  set expires(date: Date | null | false | undefined);
  /** The idle lifetime in ms set in this request, else `maxLifetime` (a remembered lifetime set in an earlier request is not known here). */
  readonly originalMaxAge: number;
  readonly httpOnly: boolean;
  readonly secure: boolean;
  readonly path: string;
  readonly domain: string | undefined;
  readonly sameSite: 'lax' | 'strict' | 'none' | false;
  readonly partitioned: boolean;
  readonly priority: 'low' | 'medium' | 'high' | undefined;
  readonly data: CompatCookieJSON;
  toJSON(): CompatCookieJSON;
}

export interface CompatCookieJSON {
  originalMaxAge: number;
  partitioned: boolean;
  priority: 'low' | 'medium' | 'high' | undefined;
  expires: Date;
  secure: boolean;
  httpOnly: boolean;
  domain: string | undefined;
  path: string;
  sameSite: 'lax' | 'strict' | 'none' | false;
}

/** The session as the compatibility layer drives it: any string key. */
interface UntypedSession {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  delete(key: string): boolean;
  has(key: string): boolean;
  keys(): IterableIterator<string>;
  readonly sessionID: string;
  readonly isNew: boolean;
  readonly handle: string | undefined;
  readonly expiresAt: Date;
  url(path: string): string;
  setLifetime(seconds: number | null): void;
  bindUser(userId: string | null): void;
  readonly userId: string | undefined;
}

/**
 * `req.session` in `compat: 'express-session'` mode: data as properties (as
 * express-session has it) plus session-manager's own API on the same object.
 * API names win over data keys of the same name.
 */
export interface CompatSession extends Omit<Session, 'regenerate' | 'save' | 'destroy' | 'toJSON'> {
  /** The current session id (read-only). */
  readonly id: string;
  readonly cookie: CompatCookie;
  /**
   * A new id, and no data, as express-session's (the native `regenerate()`
   * keeps the data). As there, `req.session` becomes a new object: this one
   * then reads as the session was before, and refuses writes (TypeError).
   */
  regenerate(callback: CompatCallback): this;
  regenerate(): Promise<void>;
  save(callback: CompatCallback): this;
  save(): Promise<boolean>;
  /** Deletes the session; `req.session` stays, empty. */
  destroy(callback: CompatCallback): this;
  destroy(): Promise<void>;
  /** Reads the session from the store again, dropping this request's unsaved changes. */
  reload(callback: CompatCallback): this;
  reload(): Promise<void>;
  /** Nothing to do: the expiry slides by itself (`touchAfter`). */
  touch(): this;
  /** Nothing to do: the expiry slides by itself (`touchAfter`). */
  resetMaxAge(): this;
  /** The data and `cookie`, as express-session serialises a session. */
  toJSON(): Record<string, unknown>;
  // Session data, read and written as properties.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [key: string]: any;
}

/** The session's data methods, untyped by key. */
interface DataView {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  delete(key: string): boolean;
  has(key: string): boolean;
}

/** An object read through a property: its JSON when read (or last saved), to spot in-place changes. */
interface Cached {
  value: object;
  json: string;
}

const noop = (): void => undefined;

/** Every `req.session.cookie` this layer hands out (Passport's keepSessionInfo copies one onto the new session). */
const compatCookies = new WeakSet<object>();

/** The proxy traps, replaced in place when `regenerate()` turns a `req.session` into a snapshot. */
type Traps = Required<Pick<ProxyHandler<object>, 'get' | 'set' | 'deleteProperty' | 'has' | 'ownKeys' | 'getOwnPropertyDescriptor' | 'defineProperty' | 'preventExtensions'>>;

/**
 * express-session's `req.session` over a session-manager request: a Proxy
 * that turns property reads and writes into `get`/`set`/`delete`, keeps the
 * objects it hands out for the request, and at commit stores (key by key)
 * those changed in place.
 * @internal
 */
export function compatSession(requestSession: RequestSession, manager: Manager, req: IncomingMessage): CompatSession {
  return compatView(requestSession, manager, req, undefined);
}

/** One `req.session` object; `regenerate()` makes the next one (`lifetimeMs`: set earlier in the request). */
function compatView(requestSession: RequestSession, manager: Manager, req: IncomingMessage, inheritedLifetimeMs: number | undefined): CompatSession {
  // Keys here are whatever the app's packages use, whatever keys the app declared for itself.
  const session = requestSession.session as unknown as UntypedSession;
  // Data by any string key: an app's SessionData declarations type its own calls, not this layer's.
  const data = session as unknown as DataView;
  const options = manager.options;
  const cache = new Map<string, Cached>();
  /** The lifetime set in this request (ms), for `cookie.originalMaxAge`. */
  let lifetimeMs = inheritedLifetimeMs;

  /** Stores the objects changed in place since they were read or saved; answers the first failure (that key is dropped). */
  const flush = (): Error | undefined => {
    let failure: Error | undefined;
    for (const [key, entry] of cache) {
      try {
        let json: string;
        try {
          json = JSON.stringify(entry.value);
        } catch (err) {
          throw new TypeError(`[session-manager] session value for "${key}" is not JSON-serialisable: ${(err as Error).message}`);
        }
        if (json === entry.json) continue;
        data.set(key, entry.value); // the same TypeError as set() for what JSON would lose
        entry.json = json;
      } catch (err) {
        cache.delete(key); // left as stored; not retried at every commit
        failure ??= err as Error;
      }
    }
    return failure;
  };
  requestSession.beforeCommit = () => {
    const failure = flush();
    if (failure) manager.reportError(failure);
  };

  const read = (key: string): unknown => {
    const cached = cache.get(key);
    if (cached) return cached.value;
    const value = data.get(key);
    if (typeof value === 'object' && value !== null) cache.set(key, { value, json: JSON.stringify(value) });
    return value;
  };

  const write = (key: string, value: unknown): void => {
    if (value === undefined) {
      // express-session's JSON drops undefined values: the key goes.
      cache.delete(key);
      data.delete(key);
      return;
    }
    if (cache.get(key)?.value === value) return; // the same object again (`s.flash = s.flash || {}`): the commit compares
    data.set(key, value); // TypeError for values JSON cannot hold, as set()
    if (typeof value === 'object' && value !== null) cache.set(key, { value, json: JSON.stringify(value) });
    else cache.delete(key);
  };

  const setLifetime = (seconds: number | null): void => {
    session.setLifetime(seconds);
    lifetimeMs = seconds === null ? undefined : seconds * 1000;
  };

  const setMaxAge = (ms: unknown): void => {
    if (ms instanceof Date) return setExpires(ms);
    if (ms === null || ms === undefined || ms === false) return setLifetime(null);
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
      throw new TypeError(`[session-manager] req.session.cookie.maxAge takes a positive number of milliseconds or null, got ${String(ms)}`);
    }
    setLifetime(ms / 1000);
  };

  function setExpires(date: unknown): void {
    if (date === null || date === undefined || date === false) return setLifetime(null);
    if (!(date instanceof Date) || date.getTime() <= manager.now()) {
      throw new TypeError(`[session-manager] req.session.cookie.expires takes a future Date or null, got ${String(date)}`);
    }
    setLifetime((date.getTime() - manager.now()) / 1000);
  }

  const cookieJSON = (): CompatCookieJSON => ({
    originalMaxAge: cookie.originalMaxAge,
    partitioned: cookie.partitioned,
    priority: cookie.priority,
    expires: cookie.expires,
    secure: cookie.secure,
    httpOnly: cookie.httpOnly,
    domain: cookie.domain,
    path: cookie.path,
    sameSite: cookie.sameSite,
  });

  const readOnly = (name: string) => (): never => {
    throw new TypeError(`[session-manager] req.session.cookie.${name} is read-only here: set it in the cookie option of sessions()`);
  };
  const cookie = {
    get maxAge(): number {
      return session.expiresAt.getTime() - manager.now();
    },
    set maxAge(ms: number | null | undefined) {
      setMaxAge(ms);
    },
    get expires(): Date {
      return session.expiresAt;
    },
    set expires(date: Date | null | false | undefined) {
      setExpires(date);
    },
    get originalMaxAge(): number {
      return lifetimeMs ?? options.maxLifetimeMs;
    },
    get httpOnly(): boolean {
      return options.cookie.httpOnly;
    },
    get secure(): boolean {
      return options.cookie.secure === 'auto' ? isSecure(req) : options.cookie.secure;
    },
    get path(): string {
      return options.cookie.path;
    },
    get domain(): string | undefined {
      return options.cookie.domain;
    },
    get sameSite(): 'lax' | 'strict' | 'none' | false {
      return options.cookie.sameSite;
    },
    get partitioned(): boolean {
      return options.cookie.partitioned;
    },
    get priority(): 'low' | 'medium' | 'high' | undefined {
      return options.cookie.priority;
    },
    get data(): CompatCookieJSON {
      return cookieJSON();
    },
    toJSON: cookieJSON,
  } as CompatCookie;
  compatCookies.add(cookie);
  for (const name of ['originalMaxAge', 'httpOnly', 'secure', 'path', 'domain', 'sameSite', 'partitioned', 'priority', 'data'] as const) {
    const { get } = Object.getOwnPropertyDescriptor(cookie, name) as PropertyDescriptor;
    Object.defineProperty(cookie, name, { get, set: readOnly(name), enumerable: true, configurable: false });
  }

  const toJSON = (): Record<string, unknown> => {
    const json: Record<string, unknown> = { cookie: cookie.toJSON() };
    for (const key of dataKeys()) json[key] = read(key);
    return json;
  };

  /** The callback form (returns the session, calls back on a later tick) or the promise form. */
  const settle = <T>(promise: Promise<T>, callback: unknown): Promise<T> | CompatSession => {
    if (typeof callback !== 'function') {
      promise.catch(noop); // express-session style fire-and-forget must not crash the process; awaiting still sees the error
      return promise;
    }
    promise.then(
      () => process.nextTick(callback as CompatCallback),
      (err: unknown) => process.nextTick(callback as CompatCallback, err),
    );
    return proxy;
  };

  /** Runs a step after which the property objects read so far are stale (they are dropped before and after it). */
  const replacing = <T>(step: () => Promise<T>): Promise<T> => {
    cache.clear();
    const done = step();
    const clear = (): void => cache.clear();
    done.then(clear, clear);
    return done;
  };

  const api = {
    // session-manager's API.
    get: (key: string): unknown => {
      const cached = cache.get(key);
      if (cached) {
        const json = JSON.stringify(cached.value);
        if (json !== undefined) return JSON.parse(json); // a fresh copy, in-place changes included
      }
      return data.get(key);
    },
    set: (key: string, value: unknown): void => {
      data.set(key, value);
      cache.delete(key);
    },
    delete: (key: string): boolean => {
      cache.delete(key);
      return data.delete(key);
    },
    has: (key: string): boolean => data.has(key),
    keys: (): IterableIterator<string> => session.keys(),
    get sessionID(): string {
      return session.sessionID;
    },
    get isNew(): boolean {
      return session.isNew;
    },
    get handle(): string | undefined {
      return session.handle;
    },
    get expiresAt(): Date {
      return session.expiresAt;
    },
    setLifetime,
    bindUser: (userId: string | null): void => session.bindUser(userId),
    get userId(): string | undefined {
      return session.userId;
    },
    url: (path: string): string => session.url(path),
    // express-session's.
    get id(): string {
      return session.sessionID;
    },
    get cookie(): CompatCookie {
      return cookie;
    },
    regenerate: (callback?: CompatCallback) => {
      // As express-session: the new id starts empty (Passport's logout relies on it to drop the
      // previous user's data), and req.session becomes a new object. This one keeps answering the
      // data as it is now (Passport's keepSessionInfo copies it into the new one).
      const before = snapshot();
      // The deletions go into the same atomic move as the new id; in-place changes need no flush.
      for (const key of [...session.keys()]) session.delete(key);
      session.bindUser(null); // nor does it belong to anyone (Passport's logout regenerates)
      cache.clear();
      const done = requestSession.regenerate().then(() => {
        // Keys a concurrent request stored after this one loaded came along: they go too, before the new id leaves.
        for (const key of [...session.keys()]) session.delete(key);
        const next = compatView(requestSession, manager, req, lifetimeMs);
        becomeSnapshot(before);
        (req as { session?: unknown }).session = next;
      });
      // On a failure req.session stays this object (the request goes on with the old id, its data dropped here).
      return settle(done, callback);
    },
    save: (callback?: CompatCallback) => {
      const failure = flush();
      return settle(failure ? Promise.reject(failure) : requestSession.save(), callback);
    },
    destroy: (callback?: CompatCallback) => {
      lifetimeMs = undefined;
      return settle(
        replacing(() => requestSession.destroy()),
        callback,
      );
    },
    reload: (callback?: CompatCallback) => {
      lifetimeMs = undefined;
      return settle(
        replacing(() => requestSession.reload()),
        callback,
      );
    },
    touch: (): CompatSession => proxy,
    resetMaxAge: (): CompatSession => proxy,
    toJSON,
  };
  const isApi = (key: string): key is keyof typeof api => Object.hasOwn(api, key);

  function dataKeys(): string[] {
    return [...session.keys()].filter((key) => !isApi(key));
  }

  /** This object's data as it is now, for the snapshot `regenerate()` leaves behind. */
  function snapshot(): Snapshot {
    const values = new Map<string, unknown>();
    for (const key of session.keys()) values.set(key, isApi(key) ? data.get(key) : read(key)); // the objects handed out, as express-session's
    return { values, dataKeys: dataKeys(), id: session.sessionID, isNew: session.isNew, handle: session.handle, userId: session.userId, expiresAt: session.expiresAt, cookie: snapshotCookie(cookie) };
  }

  /** From now on this object answers `before`, read-only: `req.session` is another one. */
  function becomeSnapshot(before: Snapshot): void {
    cache.clear();
    const readOnly = snapshotApi(before, proxy) satisfies Record<keyof typeof api, unknown>; // every API name answers
    Object.assign(traps, snapshotTraps(before, readOnly));
  }

  const target: object = {};
  // util.inspect shows a Proxy's target: show the session instead.
  Object.defineProperty(target, inspect.custom, { value: () => proxy.toJSON(), configurable: true });

  const traps: Traps = {
    get(target, key, receiver) {
      if (typeof key === 'symbol') return Reflect.get(target, key, receiver);
      if (isApi(key)) return api[key];
      if (data.has(key)) return read(key);
      return Reflect.get(target, key, receiver); // Object.prototype's members, else undefined
    },
    set(target, key, value, receiver) {
      if (typeof key === 'symbol') return Reflect.set(target, key, value, receiver);
      // Passport's keepSessionInfo copies the cookie over, from this object or the one regenerate() replaced (the lifetime moved already).
      if (key === 'cookie' && compatCookies.has(value)) return true;
      if (isApi(key)) {
        throw new TypeError(`[session-manager] req.session.${key} is part of the session's API and cannot be assigned${key === 'cookie' ? ' (set cookie.maxAge instead)' : ''}`);
      }
      write(key, value);
      return true;
    },
    deleteProperty(target, key) {
      if (typeof key === 'symbol') return Reflect.deleteProperty(target, key);
      if (isApi(key)) return false;
      cache.delete(key);
      data.delete(key);
      return true;
    },
    has(target, key) {
      if (typeof key === 'symbol') return Reflect.has(target, key);
      return isApi(key) || data.has(key) || Reflect.has(target, key);
    },
    ownKeys() {
      return ['cookie', ...dataKeys()];
    },
    getOwnPropertyDescriptor(target, key) {
      if (typeof key === 'symbol') return Reflect.getOwnPropertyDescriptor(target, key);
      if (key === 'cookie') return { value: cookie, writable: true, enumerable: true, configurable: true };
      if (isApi(key) || !data.has(key)) return undefined;
      return { value: read(key), writable: true, enumerable: true, configurable: true };
    },
    defineProperty(target, key, descriptor) {
      if (typeof key === 'symbol') return Reflect.defineProperty(target, key, descriptor);
      if (isApi(key) || !('value' in descriptor) || descriptor.configurable === false) return false;
      write(key, descriptor.value);
      return true;
    },
    preventExtensions() {
      return false; // the session stays writable
    },
  };
  const proxy = new Proxy(target, traps) as CompatSession;
  return proxy;
}

/** A `req.session` as it was when `regenerate()` replaced it. */
interface Snapshot {
  /** Every key, API names included (reached with `get`); objects are the ones handed out before. */
  values: Map<string, unknown>;
  /** The keys read as properties (API names excluded). */
  dataKeys: string[];
  id: string;
  isNew: boolean;
  handle: string | undefined;
  userId: string | undefined;
  expiresAt: Date;
  cookie: CompatCookie;
}

function replacedError(what: string): TypeError {
  return new TypeError(`[session-manager] ${what}: regenerate() replaced this req.session, which now only reads the session as it was before; use req.session`);
}

/** The cookie as it was, read-only. */
function snapshotCookie(live: CompatCookie): CompatCookie {
  const json = live.toJSON();
  const fields: Record<string, unknown> = { ...json, maxAge: live.maxAge };
  const cookie = { toJSON: (): CompatCookieJSON => ({ ...json }) } as CompatCookie;
  for (const name of [...Object.keys(fields), 'data']) {
    Object.defineProperty(cookie, name, {
      get: () => (name === 'data' ? { ...json } : fields[name]),
      set: () => {
        throw replacedError(`req.session.cookie.${name} cannot be set`);
      },
      enumerable: true,
    });
  }
  compatCookies.add(cookie);
  return cookie;
}

/** The API of a `req.session` that `regenerate()` replaced: reads answer the snapshot, the rest throws. */
function snapshotApi(before: Snapshot, self: CompatSession) {
  const { values } = before;
  const refuse = (name: string) => (): never => {
    throw replacedError(`req.session.${name}() cannot be called`);
  };
  return {
    get: (key: string): unknown => {
      const json = JSON.stringify(values.get(key));
      return json === undefined ? undefined : JSON.parse(json);
    },
    set: refuse('set'),
    delete: refuse('delete'),
    has: (key: string): boolean => values.has(key),
    keys: (): IterableIterator<string> => values.keys(),
    sessionID: before.id,
    isNew: before.isNew,
    handle: before.handle,
    expiresAt: before.expiresAt,
    setLifetime: refuse('setLifetime'),
    bindUser: refuse('bindUser'),
    userId: before.userId,
    url: refuse('url'),
    id: before.id,
    cookie: before.cookie,
    regenerate: refuse('regenerate'),
    save: refuse('save'),
    destroy: refuse('destroy'),
    reload: refuse('reload'),
    touch: (): CompatSession => self,
    resetMaxAge: (): CompatSession => self,
    toJSON: (): Record<string, unknown> => {
      const json: Record<string, unknown> = { cookie: before.cookie.toJSON() };
      for (const key of before.dataKeys) json[key] = values.get(key);
      return json;
    },
  };
}

/**
 * The traps of a `req.session` that `regenerate()` replaced: its data as it
 * was (Passport's `prevSession`) and the API's reads; writes throw.
 */
function snapshotTraps(before: Snapshot, api: Record<string, unknown>): Traps {
  const { values, dataKeys } = before;
  const isApi = (key: string): boolean => Object.hasOwn(api, key);
  return {
    get(target, key, receiver) {
      if (typeof key === 'symbol') return Reflect.get(target, key, receiver);
      if (isApi(key)) return api[key];
      if (values.has(key)) return values.get(key);
      return Reflect.get(target, key, receiver);
    },
    set(target, key, value, receiver) {
      if (typeof key === 'symbol') return Reflect.set(target, key, value, receiver);
      throw replacedError(`req.session.${key} cannot be set`);
    },
    deleteProperty(target, key) {
      if (typeof key === 'symbol') return Reflect.deleteProperty(target, key);
      throw replacedError(`req.session.${key} cannot be deleted`);
    },
    has(target, key) {
      if (typeof key === 'symbol') return Reflect.has(target, key);
      return isApi(key) || values.has(key) || Reflect.has(target, key);
    },
    ownKeys() {
      return ['cookie', ...dataKeys];
    },
    getOwnPropertyDescriptor(target, key) {
      if (typeof key === 'symbol') return Reflect.getOwnPropertyDescriptor(target, key);
      if (key === 'cookie') return { value: before.cookie, writable: false, enumerable: true, configurable: true };
      if (isApi(key) || !values.has(key)) return undefined;
      return { value: values.get(key), writable: false, enumerable: true, configurable: true };
    },
    defineProperty(target, key, descriptor) {
      if (typeof key === 'symbol') return Reflect.defineProperty(target, key, descriptor);
      throw replacedError(`req.session.${key} cannot be defined`);
    },
    preventExtensions() {
      return false;
    },
  };
}

/** `req.secure` under Express (honours `trust proxy`), else whether the socket is TLS (as the transport decides). */
function isSecure(req: IncomingMessage): boolean {
  const secure = (req as { secure?: unknown }).secure;
  if (typeof secure === 'boolean') return secure;
  return (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
}
