// The response gate's state table, cell by cell, on real Node responses:
// every state × every call, and what the app sees (headersSent, writableEnded).
import { createServer, get, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ResponseGate, TRANSITIONS, type GateCall, type GateState } from '../lib/response-gate';

interface Harness {
  req: IncomingMessage;
  res: ServerResponse;
  gate: ResponseGate;
  /** Settles the commit in flight. */
  commit: { resolve: () => void; reject: (err: Error) => void } | undefined;
  pending: boolean;
  /** Once set, every commit succeeds at once (the test is done staging). */
  autoCommit: boolean;
  /** The session commits synchronously (an in-process provider): commitNow() succeeds. */
  syncCommit?: boolean;
  errors: Error[];
  nextErrors: unknown[];
}

let server: Server;
let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

beforeAll(async () => {
  server = createServer((req, res) => handle?.(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** One real request; `scenario` runs on its response, behind a gate whose commit the test settles. */
async function withGate(scenario: (h: Harness) => Promise<void> | void): Promise<{ status: number; body: string; headers: IncomingMessage['headers'] }> {
  let failure: unknown;
  const reply = new Promise<{ status: number; body: string; headers: IncomingMessage['headers'] }>((resolve, reject) => {
    handle = (req, res) => {
      const h: Harness = { req, res, gate: undefined as never, commit: undefined, pending: true, autoCommit: false, errors: [], nextErrors: [] };
      res.on('error', (err) => h.errors.push(err));
      h.gate = new ResponseGate(
        req,
        res,
        {
          hasPendingWork: () => h.pending,
          commitNow: () => (h.syncCommit === true ? !(h.pending = false) : false),
          commit: () => (h.autoCommit ? Promise.resolve() : new Promise<void>((resolve, reject) => (h.commit = { resolve, reject }))),
          writeIdHeaders: (response) => response.appendHeader('Set-Cookie', 'sid=abc'), // as the cookie transport does
        },
        (err) => {
          h.nextErrors.push(err);
          res.statusCode = 503;
          res.end('store down');
        },
        () => undefined,
      );
      Promise.resolve(scenario(h)).catch((err) => (failure = err));
    };
    get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      res.on('error', reject);
    }).on('error', reject);
  });
  const result = await reply;
  if (failure) throw failure;
  return result;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Drives a fresh gate into `state` the way an app would. */
async function enter(h: Harness, state: GateState): Promise<void> {
  switch (state) {
    case 'open':
      return;
    case 'headed':
      h.res.writeHead(200, { 'X-Head': '1' });
      return;
    case 'writing':
      h.res.write('a');
      return;
    case 'ending':
      h.res.end('a');
      return;
    case 'streaming':
      h.res.write('a');
      h.commit!.resolve();
      await tick();
      return;
    case 'finishing':
      h.res.write('a');
      h.commit!.resolve();
      await tick();
      h.res.end('b');
      return;
    case 'released':
      h.pending = false;
      h.res.end('a');
      return;
  }
}

/** Lets whatever is held go out, so the request completes. */
async function finish(h: Harness): Promise<void> {
  h.autoCommit = true;
  h.commit?.resolve();
  await tick();
  if (h.gate.state === 'open' || h.gate.state === 'headed' || h.gate.state === 'writing' || h.gate.state === 'streaming') h.res.end();
}

const STATES = Object.keys(TRANSITIONS) as GateState[];
const VIEW: Record<GateState, [headersSent: boolean, writableEnded: boolean]> = {
  open: [false, false],
  headed: [true, false],
  writing: [true, false],
  ending: [true, true],
  streaming: [true, false],
  finishing: [true, true],
  released: [true, true],
};

/** What the app must observe for each call in each state. */
const EXPECTED: Record<GateState, Record<GateCall, { after?: GateState; throws?: string; emits?: string; returns?: unknown }>> = {
  open: { writeHead: { after: 'headed' }, write: { after: 'writing', returns: false }, flushHeaders: { after: 'writing' }, end: { after: 'ending' }, guard: {} },
  headed: { writeHead: { throws: 'ERR_HTTP_HEADERS_SENT' }, write: { after: 'writing', returns: false }, flushHeaders: { after: 'writing' }, end: { after: 'ending' }, guard: { throws: 'ERR_HTTP_HEADERS_SENT' } },
  writing: { writeHead: { throws: 'ERR_HTTP_HEADERS_SENT' }, write: { after: 'writing', returns: false }, flushHeaders: { after: 'writing' }, end: { after: 'ending' }, guard: { throws: 'ERR_HTTP_HEADERS_SENT' } },
  ending: { writeHead: { throws: 'ERR_HTTP_HEADERS_SENT' }, write: { emits: 'ERR_STREAM_WRITE_AFTER_END', returns: false }, flushHeaders: { after: 'ending' }, end: { emits: 'ERR_STREAM_WRITE_AFTER_END' }, guard: { throws: 'ERR_HTTP_HEADERS_SENT' } },
  streaming: { writeHead: { throws: 'ERR_HTTP_HEADERS_SENT' }, write: { after: 'streaming', returns: true }, flushHeaders: { after: 'streaming' }, end: { after: 'finishing' }, guard: { throws: 'ERR_HTTP_HEADERS_SENT' } },
  finishing: { writeHead: { throws: 'ERR_HTTP_HEADERS_SENT' }, write: { emits: 'ERR_STREAM_WRITE_AFTER_END', returns: false }, flushHeaders: { after: 'finishing' }, end: { emits: 'ERR_STREAM_WRITE_AFTER_END' }, guard: { throws: 'ERR_HTTP_HEADERS_SENT' } },
  // Released: Node's own methods answer (what they emit after a real end is Node's business).
  released: { writeHead: { throws: 'ERR_HTTP_HEADERS_SENT' }, write: { returns: false, emits: 'node' }, flushHeaders: { after: 'released' }, end: { emits: 'node' }, guard: { throws: 'ERR_HTTP_HEADERS_SENT' } },
};

function invoke(res: ServerResponse, call: GateCall): unknown {
  switch (call) {
    case 'writeHead':
      return res.writeHead(201);
    case 'write':
      return res.write('x');
    case 'flushHeaders':
      return res.flushHeaders();
    case 'end':
      return res.end('x');
    case 'guard':
      return res.setHeader('X-Late', '1');
  }
}

describe('response gate', () => {
  describe.each(STATES)('in state %s', (state) => {
    it(`shows the app headersSent=${VIEW[state][0]}, writableEnded=${VIEW[state][1]}, as Node would`, async () => {
      await withGate(async (h) => {
        await enter(h, state);
        expect(h.gate.state).toBe(state);
        expect([h.res.headersSent, h.res.writableEnded, h.res.finished]).toEqual([...VIEW[state], VIEW[state][1]]);
        await finish(h);
      });
    });

    it.each(Object.keys(TRANSITIONS[state]) as GateCall[])('%s behaves as the table says', async (call) => {
      const expected = EXPECTED[state][call];
      await withGate(async (h) => {
        await enter(h, state);
        let thrown: (Error & { code?: string }) | undefined;
        let returned: unknown;
        try {
          returned = invoke(h.res, call);
        } catch (err) {
          thrown = err as Error & { code?: string };
        }
        expect(thrown?.code).toBe(expected.throws);
        if (expected.after) expect(h.gate.state).toBe(expected.after);
        if ('returns' in expected) expect(returned).toBe(expected.returns);
        if (call === 'end' && !expected.emits) expect(returned).toBe(h.res);
        await tick();
        if (expected.emits !== 'node') expect(h.errors.map((err) => (err as Error & { code?: string }).code)).toEqual(expected.emits ? [expected.emits] : []);
        await finish(h);
      });
    });
  });

  it('documents every state × call', () => {
    for (const state of STATES) expect(Object.keys(TRANSITIONS[state]).sort()).toEqual(Object.keys(EXPECTED[state]).sort());
  });

  it('the first body wins: an end() after end() changes nothing on the wire', async () => {
    const reply = await withGate(async (h) => {
      h.res.end('first');
      h.res.end('second');
      await tick();
      h.commit!.resolve();
    });
    expect(reply.body).toBe('first');
  });

  it('a commit done synchronously (commitNow) sends at once: no commit() and no held state, the cookie still goes out', async () => {
    const states: string[] = [];
    const reply = await withGate((h) => {
      h.syncCommit = true;
      h.res.write('a');
      states.push(h.gate.state);
      h.pending = true; // changes made while streaming
      h.res.end('b');
      states.push(h.gate.state);
      expect(h.commit).toBeUndefined();
      expect(h.res.writableEnded).toBe(true);
    });
    expect(states).toEqual(['streaming', 'released']);
    expect(reply.body).toBe('ab');
    expect(reply.headers['set-cookie']).toEqual(['sid=abc']);
  });

  it('a late setHeader never reaches the client', async () => {
    const reply = await withGate(async (h) => {
      h.res.end('body');
      expect(() => h.res.setHeader('X-Late', '1')).toThrow(expect.objectContaining({ code: 'ERR_HTTP_HEADERS_SENT' }));
      h.commit!.resolve();
    });
    expect(reply.headers['x-late']).toBeUndefined();
    expect(reply.headers['set-cookie']).toEqual(['sid=abc']);
  });

  it('merges a Set-Cookie given to writeHead (string or list) with the session cookie', async () => {
    for (const cookies of ['app=1', ['app=1', 'other=2']]) {
      const reply = await withGate(async (h) => {
        h.res.writeHead(200, { 'Set-Cookie': cookies, 'Content-Type': 'text/plain' });
        h.res.end('ok');
        h.commit!.resolve();
      });
      expect(reply.headers['set-cookie']).toEqual([...[cookies].flat(), 'sid=abc']);
      expect(reply.headers['content-type']).toBe('text/plain');
    }
    const flat = await withGate(async (h) => {
      h.res.writeHead(200, ['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
      h.res.end('ok');
      h.commit!.resolve();
    });
    expect(flat.headers['set-cookie']).toEqual(['a=1', 'b=2', 'sid=abc']);
  });

  it('keeps the status and reason given to writeHead, and validates them where the app called it', async () => {
    const reply = await withGate(async (h) => {
      expect(() => h.res.writeHead(42)).toThrow(expect.objectContaining({ code: 'ERR_HTTP_INVALID_STATUS_CODE' }));
      h.res.writeHead(418, 'Teapot');
      expect(h.res.statusCode).toBe(418);
      h.res.end('ok');
      h.commit!.resolve();
    });
    expect(reply.status).toBe(418);
  });

  it('a failed save before anything went out drops the handler’s headers but keeps those set before the route', async () => {
    const reply = await withGate(async (h) => {
      // The gate was made with the headers of earlier middleware already set? Not here: set them on a fresh gate.
      h.res.setHeader('X-Handler', '1');
      h.res.writeHead(302, { Location: '/elsewhere' });
      h.res.end();
      h.commit!.reject(new Error('store down'));
    });
    expect(reply.status).toBe(503);
    expect(reply.body).toBe('store down');
    expect(reply.headers.location).toBeUndefined();
    expect(reply.headers['x-handler']).toBeUndefined();
  });
});
