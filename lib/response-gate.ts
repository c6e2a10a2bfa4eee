import { OutgoingMessage, ServerResponse, type IncomingMessage } from 'node:http';

/** The calls of the app that the gate routes (`guard` = setHeader/appendHeader/removeHeader). */
export type GateCall = 'writeHead' | 'write' | 'end' | 'flushHeaders' | 'guard';

/**
 * Where a response stands, as the app sees it and on the wire.
 * - `open`: the app has sent nothing yet.
 * - `headed`: the app called `writeHead`; held back, but to the app its headers are sent.
 * - `writing`: the app wrote body while the commit runs; held back and queued.
 * - `ending`: the app ended while the commit runs; to the app the response is ended.
 * - `streaming`: committed, headers out: the app's calls go straight to Node.
 * - `finishing`: the app ended a streamed response; its final commit runs.
 * - `released`: sent, aborted or handed to an error handler: everything goes straight through.
 *
 * In the held states (`headed`, `writing`, `ending`, `finishing`) the app sees
 * exactly what a plain Node response would show it: `headersSent`,
 * `writableEnded`/`finished`, and Node's own errors for calls that come too late.
 */
export type GateState = 'open' | 'headed' | 'writing' | 'ending' | 'streaming' | 'finishing' | 'released';

/**
 * What each call does in each state (the unit tests walk every cell):
 *
 * | state     | writeHead      | write / flushHeaders  | end                       | guard        |
 * | --------- | -------------- | --------------------- | ------------------------- | ------------ |
 * | open      | record→headed  | send now, or queue and commit→writing | send now, or commit→ending | through |
 * | headed    | Node's error   | send now, or queue and commit→writing | send now, or commit→ending | Node's error |
 * | writing   | Node's error   | queue                 | record→ending             | Node's error |
 * | ending    | Node's error   | Node's after-end      | Node's after-end          | Node's error |
 * | streaming | through        | through               | commit→finishing, or through→released | through |
 * | finishing | Node's error   | Node's after-end      | Node's after-end          | Node's error |
 * | released  | through        | through               | through                   | through      |
 *
 * And when the commit settles: `writing` → `streaming` (ok) or aborted
 * (failed); `ending` → sent (ok), or the error goes to `next` with the
 * handler's own headers dropped (failed); `finishing` → ended (ok) or aborted.
 */
export const TRANSITIONS: Readonly<Record<GateState, Readonly<Record<GateCall, string>>>> = {
  open: { writeHead: 'record→headed', write: 'queue→writing', flushHeaders: 'queue→writing', end: 'send|commit→ending', guard: 'through' },
  headed: { writeHead: 'error', write: 'queue→writing', flushHeaders: 'queue→writing', end: 'send|commit→ending', guard: 'error' },
  writing: { writeHead: 'error', write: 'queue', flushHeaders: 'queue', end: 'record→ending', guard: 'error' },
  ending: { writeHead: 'error', write: 'after-end', flushHeaders: 'ignore', end: 'after-end', guard: 'error' },
  streaming: { writeHead: 'through', write: 'through', flushHeaders: 'through', end: 'commit→finishing|through', guard: 'through' },
  finishing: { writeHead: 'error', write: 'after-end', flushHeaders: 'ignore', end: 'after-end', guard: 'error' },
  released: { writeHead: 'through', write: 'through', flushHeaders: 'through', end: 'through', guard: 'through' },
};

/** What the gate needs from the session side. */
export interface GateSession {
  /** Whether anything must be stored before the response may go out. */
  hasPendingWork(): boolean;
  /** Stores pending changes; `headersSent` when a new id could no longer reach the client. */
  commit(headersSent: boolean): Promise<void>;
  /** Sets the id headers (cookie, header transport, Cache-Control) on `res`, just before its headers go out. */
  writeIdHeaders(res: ServerResponse): void;
}

type Args = unknown[];
type AnyMethod = (this: ServerResponse, ...args: Args) => unknown;
type Routed = 'writeHead' | 'write' | 'end' | 'flushHeaders';
const ROUTED: readonly Routed[] = ['writeHead', 'write', 'end', 'flushHeaders'];
const GUARDED = ['setHeader', 'appendHeader', 'removeHeader'] as const;
const HELD: ReadonlySet<GateState> = new Set(['headed', 'writing', 'ending', 'finishing']);
const ENDED: ReadonlySet<GateState> = new Set(['ending', 'finishing']);

/**
 * Holds a response back until its session is committed, while the app sees
 * the response as Node would show it. It wraps this response's own
 * `writeHead`/`write`/`end`/`flushHeaders` (never a prototype); whatever
 * wrapped them before (compression, say) stays below and is called once.
 */
export class ResponseGate {
  #state: GateState = 'open';
  readonly #res: ServerResponse;
  readonly #req: IncomingMessage;
  readonly #session: GateSession;
  readonly #next: (err: unknown) => void;
  readonly #report: (err: unknown) => void;
  /** The methods as they were before the gate: where calls go once they pass. */
  readonly #below: Record<Routed, AnyMethod>;
  /** Headers and status as the route found them: what a failed save leaves for the error handler. */
  readonly #before: { status: number; headers: Array<[string, number | string | string[]]> };
  #head: Args | undefined;
  #queued: Array<[Routed, Args]> | undefined;
  #pendingEnd: Args | undefined;
  #restoreGuards: (() => void) | undefined;
  #restoreSocket: (() => void) | undefined;
  /** A `socket.destroy()` asked for while the response was held (finalhandler, after an error). */
  #deferredDestroy: { err?: unknown } | undefined;

  constructor(req: IncomingMessage, res: ServerResponse, session: GateSession, next: (err: unknown) => void, report: (err: unknown) => void) {
    this.#req = req;
    this.#res = res;
    this.#session = session;
    this.#next = next;
    this.#report = report;
    const raw = res as ServerResponse & { getRawHeaderNames?: () => string[] }; // Node >= 15.13; HTTP/2 has none
    const names = raw.getRawHeaderNames?.() ?? res.getHeaderNames();
    this.#before = { status: res.statusCode, headers: names.map((name) => [name, res.getHeader(name)!]) };
    const below = {} as Record<Routed, AnyMethod>;
    for (const method of ROUTED) {
      below[method] = res[method] as AnyMethod;
      Object.defineProperty(res, method, { configurable: true, writable: true, value: (...args: Args): unknown => this.call(method, args) });
    }
    this.#below = below;
  }

  get state(): GateState {
    return this.#state;
  }

  call(method: Routed, args: Args): unknown {
    const res = this.#res;
    switch (this.#state) {
      case 'released':
        return this.#forward(method, args);
      case 'streaming':
        if (method === 'end') return this.#endStreaming(args);
        return this.#forward(method, args);
      case 'open':
      case 'headed':
        if (method === 'writeHead') {
          if (this.#state === 'headed') return rejectLate(res, 'writeHead', args);
          this.#recordHead(args);
          this.#enter('headed');
          return res;
        }
        if (!this.#session.hasPendingWork()) return this.#sendNow(method, args);
        if (method === 'end') {
          this.#pendingEnd = args;
          this.#startCommit('ending');
          return res;
        }
        (this.#queued ??= []).push([method, args]);
        this.#startCommit('writing');
        return false; // ask streams to wait for 'drain' until the commit is done
      case 'writing':
        if (method === 'writeHead') return rejectLate(res, 'writeHead', args);
        if (method === 'end') {
          this.#pendingEnd = args;
          this.#enter('ending');
          return res;
        }
        (this.#queued ??= []).push([method, args]);
        return false;
      case 'ending':
      case 'finishing':
        if (method === 'flushHeaders') return undefined;
        return rejectLate(res, method, args);
    }
  }

  /** Nothing to store: the response goes out at once, with no promise in the way. */
  #sendNow(method: Routed, args: Args): unknown {
    // Streaming still ends through the gate: changes made meanwhile are saved before the last chunk.
    this.#leaveHeld(method === 'end' ? 'released' : 'streaming');
    this.#sendHeaders();
    return this.#forward(method, args);
  }

  /** Changes made while streaming are saved before the final chunk. */
  #endStreaming(args: Args): unknown {
    if (!this.#session.hasPendingWork()) {
      this.#state = 'released';
      return this.#forward('end', args);
    }
    this.#enter('finishing');
    this.#session.commit(true).then(
      () => this.#release(() => this.#forward('end', args)),
      (err: unknown) => this.#abort(err),
    );
    return this.#res;
  }

  #startCommit(state: 'writing' | 'ending'): void {
    this.#enter(state);
    this.#session.commit(false).then(
      () => this.#committed(),
      (err: unknown) => this.#failed(err),
    );
  }

  #committed(): void {
    const ended = this.#state === 'ending';
    this.#leaveHeld(ended ? 'released' : 'streaming');
    this.#sendHeaders();
    let writable = true;
    for (const [method, args] of this.#queued ?? []) writable = this.#forward(method, args) !== false;
    this.#queued = undefined;
    if (ended) this.#release(() => this.#forward('end', this.#pendingEnd!));
    else if (writable) this.#res.emit('drain');
  }

  #failed(err: unknown): void {
    // A handler that is still streaming cannot be stopped, only cut off.
    if (this.#state !== 'ending' || this.#deferredDestroy) return this.#abort(err);
    // Nothing was sent: the error handler starts from the response as the route found it
    // (a redirect must not survive a failed save, CORS headers set before the route must).
    this.#leaveHeld('released');
    const res = this.#res;
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    for (const [name, value] of this.#before.headers) res.setHeader(name, value);
    res.statusCode = this.#before.status;
    res.statusMessage = '';
    this.#queued = undefined;
    this.#head = undefined;
    this.#next(err);
  }

  /** The client must not take a response whose session was not saved for a complete one. */
  #abort(err: unknown): void {
    this.#report(err);
    this.#leaveHeld('released');
    this.#res.destroy();
  }

  /** Lets the held end go out, then carries out a socket destroy asked for meanwhile. */
  #release(end: () => void): void {
    this.#leaveHeld('released');
    end();
    const destroy = this.#deferredDestroy;
    if (destroy) this.#req.socket?.destroy(destroy.err as Error | undefined);
  }

  #recordHead(args: Args): void {
    const res = this.#res;
    const [statusCode, reason] = args;
    // Node validates at writeHead(); so do we, so a mistake throws where the app made it.
    ServerResponse.prototype.writeHead.apply(scratchResponse(), args as Parameters<ServerResponse['writeHead']>);
    res.statusCode = (statusCode as number) | 0;
    if (typeof reason === 'string') res.statusMessage = reason;
    this.#head = args;
  }

  /** Headers as Node would send them, plus the session's: a Set-Cookie given to writeHead never replaces ours. */
  #sendHeaders(): void {
    const res = this.#res;
    const head = this.#head;
    if (head !== undefined) {
      const [statusCode, reason, obj] = head;
      applyHeadHeaders(res, typeof reason === 'string' ? obj : reason);
      this.#session.writeIdHeaders(res);
      const below = this.#below.writeHead;
      if (typeof reason === 'string') below.call(res, statusCode, reason);
      else below.call(res, statusCode);
    } else if (!res.headersSent) {
      this.#session.writeIdHeaders(res);
    }
  }

  #enter(state: GateState): void {
    this.#state = state;
    this.#restoreGuards ??= installGuards(this.#res, () => this.#state);
    if (ENDED.has(state)) this.#restoreSocket ??= this.#holdSocketDestroy();
  }

  #leaveHeld(state: GateState): void {
    this.#state = state;
    this.#restoreGuards?.();
    this.#restoreGuards = undefined;
    this.#restoreSocket?.();
    this.#restoreSocket = undefined;
  }

  /**
   * While an ended response is held, an error handler that finds it "sent"
   * (finalhandler) destroys the socket, as it would after a real end; that
   * destroy waits until the held response has gone out, as it would have.
   */
  #holdSocketDestroy(): (() => void) | undefined {
    const socket = this.#req.socket as (IncomingMessage['socket'] & { destroy: (err?: Error) => unknown }) | null;
    if (!(this.#res instanceof ServerResponse) || !socket) return undefined; // HTTP/2 streams have no socket of their own
    const own = Object.getOwnPropertyDescriptor(socket, 'destroy');
    Object.defineProperty(socket, 'destroy', {
      configurable: true,
      writable: true,
      value: (err?: Error) => {
        this.#deferredDestroy = { err };
        return socket;
      },
    });
    return () => {
      if (own) Object.defineProperty(socket, 'destroy', own);
      else delete (socket as { destroy?: unknown }).destroy;
    };
  }

  /** Calls the method as it was below the gate. */
  #forward(method: Routed, args: Args): unknown {
    return this.#below[method].apply(this.#res, args);
  }
}

/** `writeHead`'s headers (an object, or a flat [name, value, …] list) set on `res` as Node would merge them. */
function applyHeadHeaders(res: ServerResponse, obj: unknown): void {
  if (Array.isArray(obj)) {
    // With no header set before, Node sends every pair of the list (repeated names included).
    const fresh = res.getHeaderNames().length === 0;
    for (let i = 0; i < obj.length; i += 2) {
      if (!obj[i]) continue;
      if (fresh) res.appendHeader(obj[i] as string, obj[i + 1] as string);
      else res.setHeader(obj[i] as string, obj[i + 1] as string);
    }
  } else if (obj !== null && typeof obj === 'object') {
    // Copied: Node keeps the very array, and the session cookie must not be pushed into the app's.
    for (const [name, value] of Object.entries(obj)) if (name) res.setHeader(name, Array.isArray(value) ? [...(value as string[])] : (value as string));
  }
}

/**
 * Own `headersSent`, `finished` (so `writableEnded`) and header-method guards
 * that show the app a held response as sent/ended, answering as Node would.
 * Returns what puts the response back as it was.
 */
function installGuards(res: ServerResponse, state: () => GateState): () => void {
  const saved = ['headersSent', 'finished', ...GUARDED].map((name) => [name, Object.getOwnPropertyDescriptor(res, name)] as const);
  const proto = Object.getPrototypeOf(res) as object;
  const ownFinished = saved[1][1];
  let finished = ownFinished && 'value' in ownFinished ? (ownFinished.value as boolean) : undefined;
  const realFinished = (): boolean => finished ?? (Reflect.get(proto, 'finished', res) as boolean);
  Object.defineProperties(res, {
    headersSent: { configurable: true, get: () => HELD.has(state()) || (Reflect.get(proto, 'headersSent', res) as boolean) },
    finished: {
      configurable: true,
      get: () => ENDED.has(state()) || realFinished(),
      set: (value: boolean) => (finished = value),
    },
  });
  for (const name of GUARDED) {
    const below = res[name] as AnyMethod;
    Object.defineProperty(res, name, {
      configurable: true,
      writable: true,
      value: function (this: ServerResponse, ...args: Args): unknown {
        return HELD.has(state()) ? rejectLate(res, name, args) : below.apply(res, args);
      },
    });
  }
  return () => {
    for (const [name, descriptor] of saved) {
      if (name === 'finished' && descriptor && 'value' in descriptor) Object.defineProperty(res, name, { ...descriptor, value: finished });
      else if (descriptor) Object.defineProperty(res, name, descriptor);
      else delete (res as unknown as Record<string, unknown>)[name];
    }
  };
}

/**
 * A call that comes after the app's headers or body "went out": Node's own
 * method, run on a stand-in that has Node's state for a sent (and ended)
 * response, so the error, its timing and the return value are Node's.
 */
function rejectLate(res: ServerResponse, method: Routed | (typeof GUARDED)[number], args: Args): unknown {
  const standIn = Object.create(res, { _header: { value: '\r\n' }, finished: { value: true } }) as ServerResponse;
  if (method === 'end' && (args.length === 0 || typeof args[0] === 'function' || args[0] === null || args[0] === undefined)) {
    const callback = args.find((arg) => typeof arg === 'function') as (() => void) | undefined;
    if (callback) res.once('finish', callback); // Node calls it once the (held) response has finished
    return res;
  }
  const own = method === 'writeHead' ? ServerResponse.prototype.writeHead : (OutgoingMessage.prototype[method as keyof OutgoingMessage] as AnyMethod);
  const result = (own as AnyMethod).apply(standIn, args);
  return result === standIn ? res : result;
}

/** A response that is never sent, to let Node validate `writeHead` arguments. */
function scratchResponse(): ServerResponse {
  return new ServerResponse({ method: 'GET', httpVersionMajor: 1, httpVersionMinor: 1, headers: {} } as IncomingMessage);
}
