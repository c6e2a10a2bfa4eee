/**
 * Run in a fresh process (see request-path.test.ts): imports the package,
 * serves requests with it on plain http, connect and Express 5 and 4, and
 * prints (as one JSON line) what changed on Node's classes meanwhile.
 * Express and connect are loaded first: only what the package does is measured.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const http = require('node:http') as typeof import('node:http');
const express5 = require('express') as typeof import('express');
const express4 = require('express4') as typeof import('express');
const connect = require('connect') as typeof import('connect');

const watched: Record<string, object> = {
  'http.IncomingMessage.prototype': http.IncomingMessage.prototype,
  'http.ServerResponse.prototype': http.ServerResponse.prototype,
  'http.OutgoingMessage.prototype': http.OutgoingMessage.prototype,
  'http.ClientRequest.prototype': http.ClientRequest.prototype,
  'express 5 request (shared)': express5.request,
  'express 5 response (shared)': express5.response,
  'express 4 request (shared)': express4.request,
  'express 4 response (shared)': express4.response,
};
type Snapshot = Map<string, Map<PropertyKey, PropertyDescriptor>>;

function snapshot(): Snapshot {
  const all: Snapshot = new Map();
  for (const [label, proto] of Object.entries(watched)) {
    const own = new Map<PropertyKey, PropertyDescriptor>();
    for (const key of Reflect.ownKeys(proto)) own.set(key, Object.getOwnPropertyDescriptor(proto, key)!);
    all.set(label, own);
  }
  return all;
}

function changes(before: Snapshot, after: Snapshot): string[] {
  const found: string[] = [];
  for (const [label, was] of before) {
    const now = after.get(label)!;
    const names = (map: Map<PropertyKey, PropertyDescriptor>): string[] => [...map.keys()].map(String).sort();
    if (names(was).join() !== names(now).join()) found.push(`${label}: own names ${JSON.stringify(names(was))} -> ${JSON.stringify(names(now))}`);
    for (const [key, descriptor] of was) {
      const current = now.get(key);
      if (!current) continue;
      for (const field of ['value', 'get', 'set', 'writable', 'enumerable', 'configurable'] as const) {
        if (descriptor[field] !== current[field]) found.push(`${label}.${String(key)}: ${field} changed`);
      }
    }
  }
  // The methods the gate routes, by identity, as the brief names them.
  for (const name of ['writeHead', 'write', 'end', 'setHeader'] as const) {
    const proto = name === 'writeHead' ? http.ServerResponse.prototype : http.OutgoingMessage.prototype;
    const descriptor = before.get(name === 'writeHead' ? 'http.ServerResponse.prototype' : 'http.OutgoingMessage.prototype')!.get(name);
    if (descriptor?.value !== (proto as unknown as Record<string, unknown>)[name]) found.push(`${name} is not Node's own any more`);
  }
  return found;
}

function get(url: string, cookie?: string): Promise<{ text: string; cookie?: string; hasSession: boolean }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers: cookie ? { cookie } : {} }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolve({
            text,
            cookie: res.headers['set-cookie']?.[0]?.split(';')[0],
            hasSession: 'session' in res || 'sessionID' in res || (res as unknown as { session?: unknown }).session !== undefined,
          }),
        );
      })
      .on('error', reject);
  });
}

async function main(): Promise<void> {
  const before = snapshot();
  const { sessions } = require('../../lib/index') as typeof import('../../lib/index');
  const middleware = sessions({ onError: () => {} });

  type Req = IncomingMessage & { session: { get(key: string): unknown; set(key: string, value: unknown): void } };
  const count = (label: string) => (req: IncomingMessage, res: ServerResponse) => {
    const session = (req as Req).session;
    const n = ((session.get('n') as number | undefined) ?? 0) + 1;
    session.set('n', n);
    res.setHeader('Content-Type', 'text/plain');
    res.write(`${label} `);
    res.end(String(n));
  };

  let unboundRequestSession = false;
  const plain = http.createServer((req, res) => {
    if (req.url === '/outside') {
      unboundRequestSession = 'session' in req || 'sessionID' in req;
      return res.end('outside');
    }
    middleware(req, res, (err) => (err ? res.end(String(err)) : count('plain http')(req, res)));
  });
  const connectApp = connect();
  connectApp.use(middleware);
  connectApp.use(count('connect'));
  const apps: Array<[string, (req: IncomingMessage, res: ServerResponse) => void]> = [['connect', connectApp]];
  for (const [label, express] of [
    ['express 5', express5],
    ['express 4', express4],
  ] as const) {
    const app = express();
    app.use(middleware);
    app.get('/', count(label) as unknown as Parameters<typeof app.get>[1]);
    apps.push([label, app as unknown as (req: IncomingMessage, res: ServerResponse) => void]);
  }
  const servers = [plain, ...apps.map(([, handler]) => http.createServer(handler))];
  const bodies: string[] = [];
  const clientSession: boolean[] = [];
  for (const server of servers) {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const first = await get(`${url}/`);
    const second = await get(`${url}/`, first.cookie);
    for (const reply of [first, second]) {
      bodies.push(reply.text);
      clientSession.push(reply.hasSession);
    }
  }
  const port = (plain.address() as AddressInfo).port;
  await get(`http://127.0.0.1:${port}/outside`);
  const stored = await middleware.manager.count();
  for (const server of servers) server.close();
  await middleware.manager.close();
  process.stdout.write(`${JSON.stringify({ changes: changes(before, snapshot()), bodies, clientSession, unboundRequestSession, stored })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`);
  process.exitCode = 1;
});
