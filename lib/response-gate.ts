import { OutgoingMessage, ServerResponse, type IncomingMessage } from 'node:http';
import { ROUTED, type Routed } from './app-prototypes';

/**
 * The calls of an app's response that the table covers. `guard` is
 * setHeader/appendHeader/removeHeader: Node's own methods, which answer from
 * the state the gate shows Node (see `#enter`).
 */
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
  /** Stores pending changes synchronously when it can (an in-process provider); false leaves them to `commit`. */
  commitNow(): boolean;
  /** Stores pending changes; `headersSent` when a new id could no longer reach the client. */
  commit(headersSent: boolean): Promise<void>;
  /** Sets the id headers (cookie, header transport, Cache-Control) on `res`, just before its headers go out. */
  writeIdHeaders(res: ServerResponse): void;
}

type Args = unknown[];
type AnyMethod = (this: ServerResponse, ...args: Args) => unknown;
const ENDED: ReadonlySet<GateState> = new Set(['ending', 'finishing']);

/** The two fields behind Node's own answers: `headersSent` is `!!_header`, `writableEnded` is `finished`. */
type NodeState = ServerResponse & { _header: string | null; finished: boolean };
/** What `_header` holds while the app's headers are held: Node never sends it (every path that would is routed here). */
const HELD_HEADER = 'HTTP/1.1 000 held by session-manager\r\n\r\n';

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
  readonly #below: Readonly<Record<Routed, AnyMethod>>;
  /** Headers and status as the route found them: what a failed save leaves for the error handler. */
  readonly #before: { status: number; headers: Array<[string, number | string | string[]]> };
  #head: Args | undefined;
  #queued: Array<[Routed, Args]> | undefined;
  #pendingEnd: Args | undefined;
  /** What the gate set on Node's fields to show the app a sent/ended response, to be undone before Node sends. */
  #shown: { header: boolean; finished: boolean } | undefined;
  #restoreSocket: (() => void) | undefined;
  /** A `socket.destroy()` asked for while the response was held (finalhandler, after an error). */
  #deferredDestroy: { err?: unknown } | undefined;

  /**
   * `below`: the methods under the app's own prototype wrappers (the Express
   * fast path, see app-prototypes.ts; the caller makes them route here);
   * without it the gate wraps this response's own methods.
   */
  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    session: GateSession,
    next: (err: unknown) => void,
    report: (err: unknown) => void,
    below?: Readonly<Record<Routed, AnyMethod>>,
  ) {
    this.#req = req;
    this.#res = res;
    this.#session = session;
    this.#next = next;
    this.#report = report;
    const raw = res as ServerResponse & { getRawHeaderNames?: () => string[] }; // Node >= 15.13; HTTP/2 has none
    const names = raw.getRawHeaderNames?.() ?? res.getHeaderNames();
    this.#before = { status: res.statusCode, headers: names.map((name) => [name, res.getHeader(name)!]) };
    if (below !== undefined) {
      this.#below = below;
      return;
    }
    const own = {} as Record<Routed, AnyMethod>;
    for (const method of ROUTED) {
      own[method] = res[method] as AnyMethod;
      Object.defineProperty(res, method, { configurable: true, writable: true, value: (...args: Args): unknown => this.call(method, args) });
    }
    this.#below = own;
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
          if (this.#state === 'headed') return this.#forward(method, args); // Node's own ERR_HTTP_HEADERS_SENT
          this.#recordHead(args);
          this.#enter('headed');
          return res;
        }
        if (!this.#session.hasPendingWork() || this.#session.commitNow()) return this.#sendNow(method, args);
        if (method === 'end') {
          this.#pendingEnd = args;
          this.#startCommit('ending');
          return res;
        }
        (this.#queued ??= []).push([method, args]);
        this.#startCommit('writing');
        return false; // ask streams to wait for 'drain' until the commit is done
      case 'writing':
        if (method === 'writeHead') return this.#forward(method, args); // Node's own ERR_HTTP_HEADERS_SENT
        if (method === 'end') {
          this.#pendingEnd = args;
          this.#enter('ending');
          return res;
        }
        (this.#queued ??= []).push([method, args]);
        return false;
      case 'ending':
      case 'finishing':
        // Node sees an ended response and answers as it would after a real end (its errors, its timing).
        // flushHeaders would send the held header: there is nothing left to flush anyway.
        if (method === 'flushHeaders') return undefined;
        return this.#forward(method, args);
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
    if (!this.#session.hasPendingWork() || this.#session.commitNow()) {
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

  /**
   * Enters a held state. The app is shown Node's own state for what it has
   * done (headers sent, response ended) by Node's own two fields, so
   * `headersSent`, `writableEnded`, `finished` and every late call
   * (`setHeader`, `writeHead`, `write`, `end`) answer exactly as Node would.
   */
  #enter(state: GateState): void {
    this.#state = state;
    const res = this.#res as NodeState;
    if (!(res instanceof OutgoingMessage)) return; // HTTP/2's compatibility response keeps its state elsewhere
    const shown = (this.#shown ??= { header: false, finished: false });
    if (res._header === null) {
      res._header = HELD_HEADER;
      shown.header = true;
    }
    if (ENDED.has(state) && !res.finished) {
      res.finished = true;
      shown.finished = true;
      this.#restoreSocket ??= this.#holdSocketDestroy();
    }
  }

  /** Leaves the held states: Node's fields go back to what is true on the wire before anything is sent. */
  #leaveHeld(state: GateState): void {
    this.#state = state;
    const shown = this.#shown;
    if (shown) {
      const res = this.#res as NodeState;
      if (shown.header) res._header = null;
      if (shown.finished) res.finished = false;
      this.#shown = undefined;
    }
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

/** A response that is never sent, to let Node validate `writeHead` arguments. */
function scratchResponse(): ServerResponse {
  return new ServerResponse({ method: 'GET', httpVersionMajor: 1, httpVersionMinor: 1, headers: {} } as IncomingMessage);
}
