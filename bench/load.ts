/**
 * The load side: starting a server process, logging in, driving it with
 * autocannon, and the lost-update burst. Everything is bounded in count and time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request, Agent } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import autocannon from 'autocannon';
import type { BenchConfig, Mode } from './modes';

const ROOT = join(__dirname, '..');
const START_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;

export interface RunningServer {
  mode: Mode;
  port: number;
  child: ChildProcess;
  /** The last lines the server wrote to stderr (its errors). */
  stderrTail(): string;
  stop(): Promise<void>;
}

/** Starts `bench/server.ts <mode>` in its own Node process; rejects with the server's own error when it cannot start. */
export function startServer(mode: Mode, config: BenchConfig, nodeArgs: string[] = []): Promise<RunningServer> {
  const child = spawn(process.execPath, [...nodeArgs, '-r', 'ts-node/register/transpile-only', join(__dirname, 'server.ts'), mode], {
    cwd: ROOT,
    env: { ...process.env, BENCH_CONFIG: JSON.stringify(config), TS_NODE_TRANSPILE_ONLY: 'true' },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let tail = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-4000);
  });
  const stderrTail = (): string => tail.trim().split('\n').slice(-6).join('\n');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`did not start within ${START_TIMEOUT_MS} ms ${stderrTail()}`));
    }, START_TIMEOUT_MS);
    child.once('message', (message: { ready?: number }) => {
      clearTimeout(timer);
      if (typeof message.ready === 'number') resolve({ mode, port: message.ready, child, stderrTail, stop });
      else reject(new Error(`unexpected message ${JSON.stringify(message)}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      // Let the stderr pipe drain so the reason is in the tail.
      setTimeout(() => reject(new Error(stderrTail() || `exited with ${code ?? signal}`)), 50);
    });
  });
}

export interface Reply {
  status: number;
  body: string;
  cookie: string | undefined;
}

/** One HTTP request with a timeout; `cookie` is the `name=value` part of the first Set-Cookie. */
export function send(port: number, method: string, path: string, options: { cookie?: string; body?: string; agent?: Agent } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (options.cookie) headers.cookie = options.cookie;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(Buffer.byteLength(options.body));
    }
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: options.agent, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const setCookie = res.headers['set-cookie']?.[0];
        resolve({ status: res.statusCode ?? 0, body, cookie: setCookie?.split(';')[0] });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/**
 * Logs in `count` users (`user<i>`), 20 at a time; resolves their cookies in
 * order (empty strings when `withCookie` is false: the bare server sets none).
 */
export async function login(port: number, count: number, withCookie = true): Promise<string[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: 20 });
  const cookies: string[] = new Array(count);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const reply = await send(port, 'POST', '/login', { body: `username=user${i}`, agent });
      if (reply.status !== 200 || (withCookie && reply.cookie === undefined)) throw new Error(`login ${i}: status ${reply.status}${withCookie && reply.cookie === undefined ? ', no cookie' : ''}`);
      cookies[i] = reply.cookie ?? '';
    }
  };
  try {
    await Promise.all(Array.from({ length: 20 }, worker));
  } finally {
    agent.destroy();
  }
  return cookies;
}

export interface LoadResult {
  /** Completed requests per second over the whole measurement. */
  rps: number;
  /** 99th percentile latency, ms. */
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
}

/**
 * autocannon against `path` for `seconds` with `connections` connections;
 * each request carries the next cookie of `cookies` (rotating), or none.
 */
export async function measure(port: number, path: string, seconds: number, options: { cookies?: string[]; method?: 'GET' | 'POST'; body?: string; connections?: number }): Promise<LoadResult> {
  const { cookies, method = 'GET', body } = options;
  let next = 0;
  const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' };
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: options.connections ?? 50,
    duration: seconds,
    timeout: REQUEST_TIMEOUT_MS / 1000,
    requests: [
      {
        method,
        path,
        headers,
        body,
        setupRequest: (req: autocannon.Request) => {
          if (cookies === undefined) return req;
          const cookie = cookies[next];
          next = (next + 1) % cookies.length;
          return cookie === '' ? req : { ...req, headers: { ...headers, cookie } };
        },
      },
    ],
  });
  const requests = result.requests.total;
  return { rps: requests / result.duration, p99: result.latency.p99, requests, non2xx: result.non2xx, errors: result.errors };
}

/**
 * Lost updates: one session, `count` keep-alive sockets already open and
 * warmed, then `GET /set/k<i>` written on all of them in one synchronous loop
 * (one burst), and the session read back. Resolves how many keys survived.
 */
export async function lostUpdates(port: number, count: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const { cookie } = await send(port, 'POST', '/login', { body: 'username=burst', agent });
    if (cookie === undefined) throw new Error('login set no cookie');
    const sockets = await Promise.all(Array.from({ length: count }, () => openSocket(port)));
    try {
      // A first request on each socket proves it is open and keep-alive before the burst.
      await Promise.all(sockets.map((socket) => exchange(socket, rawGet('/read', cookie))));
      const replies = sockets.map((socket, i) => exchange(socket, rawGet(`/set/k${i}`, cookie), false));
      sockets.forEach((socket, i) => socket.write(rawGet(`/set/k${i}`, cookie)));
      const statuses = await Promise.all(replies);
      const failed = statuses.filter((status) => status !== 200).length;
      if (failed > 0) throw new Error(`${failed} of ${count} burst requests failed`);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
    const readBack = await send(port, 'GET', '/keys', { cookie, agent });
    return Number(readBack.body);
  } finally {
    agent.destroy();
  }
}

function rawGet(path: string, cookie: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nCookie: ${cookie}\r\n\r\n`;
}

function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.setNoDelay(true);
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy(new Error('socket timed out')));
    socket.once('error', reject);
  });
}

/**
 * Waits for one complete response on `socket` (small bodies with
 * Content-Length, as our routes send) and resolves its status; writes
 * `payload` first unless `write` is false (the caller writes it).
 */
function exchange(socket: Socket, payload: string, write = true): Promise<number> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString('latin1');
      const headEnd = buffer.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(buffer.slice(0, headEnd))?.[1] ?? 0);
      if (buffer.length < headEnd + 4 + length) return;
      socket.off('data', onData);
      socket.off('error', reject);
      resolve(Number(buffer.slice(9, 12)));
    };
    socket.on('data', onData);
    socket.once('error', reject);
    if (write) socket.write(payload);
  });
}
