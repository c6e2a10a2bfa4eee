import { createConnection } from 'node:net';

export interface RawReply {
  status: number;
  headers: Map<string, string[]>;
  body: string;
}

/**
 * Sends one HTTP/1.1 request byte for byte over a new socket (`latin1`: one
 * byte per character), so header values can hold bytes that Node's HTTP
 * client refuses to send. Resolves the parsed reply, or status 0 when the
 * server closed the connection without answering (which a test treats as a failure).
 */
export function rawRequest(port: number, path: string, headers: Array<[string, string]>, timeoutMs = 10_000): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no reply to ${path.slice(0, 80)} within ${timeoutMs} ms`)));
    socket.on('connect', () => {
      let head = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n`;
      for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
      socket.end(Buffer.from(`${head}\r\n`, 'latin1'));
    });
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(parse(Buffer.concat(chunks).toString('latin1'))));
  });
}

function parse(text: string): RawReply {
  const headers = new Map<string, string[]>();
  const end = text.indexOf('\r\n\r\n');
  if (!text.startsWith('HTTP/1.1 ') || end === -1) return { status: 0, headers, body: text };
  const lines = text.slice(0, end).split('\r\n');
  const status = Number(lines[0].slice(9, 12));
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()]);
  }
  let body = text.slice(end + 4);
  if (headers.get('transfer-encoding')?.includes('chunked')) body = unchunk(body);
  return { status, headers, body: Buffer.from(body, 'latin1').toString('utf8') };
}

function unchunk(text: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const lineEnd = text.indexOf('\r\n', at);
    if (lineEnd === -1) return out;
    const size = parseInt(text.slice(at, lineEnd), 16);
    if (!(size > 0)) return out;
    out += text.slice(lineEnd + 2, lineEnd + 2 + size);
    at = lineEnd + 2 + size + 2;
  }
}
