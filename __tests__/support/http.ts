import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express5 from 'express';
import type { Response } from 'supertest';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express5;

/** Every HTTP test runs against both majors. */
export const EXPRESS_VERSIONS: Array<[string, typeof express5]> = [
  ['express 5', express5],
  ['express 4', express4],
];

/** A clock the test moves by hand (milliseconds). */
export class FakeClock {
  constructor(public time = Date.UTC(2026, 0, 1)) {}
  now = (): number => this.time;
  advance(seconds: number): void {
    this.time += seconds * 1000;
  }
}

export const SECRET = 'a-test-secret-that-is-long-enough-0123456789';

/** The `Set-Cookie` line for `name`, or undefined. */
export function setCookie(res: Response, name = 'sid'): string | undefined {
  const header = res.headers['set-cookie'] as unknown as string[] | undefined;
  return header?.find((line) => line.startsWith(`${name}=`));
}

/** `name=value` ready for a `Cookie` request header, from the response's `Set-Cookie`. */
export function cookiePair(res: Response, name = 'sid'): string {
  const line = setCookie(res, name);
  if (line === undefined) throw new Error(`response set no ${name} cookie (status ${res.status}, ${JSON.stringify(res.headers)})`);
  return line.split(';')[0];
}

/** The session id inside a (possibly signed, URL-encoded) cookie pair. */
export function idOf(pair: string): string {
  const value = decodeURIComponent(pair.slice(pair.indexOf('=') + 1));
  return value.startsWith('s:') ? value.slice(2, value.lastIndexOf('.')) : value;
}

export function expectNoSetCookie(res: Response): void {
  expect(res.headers['set-cookie']).toBeUndefined();
}

/** Starts `handler` on a real socket on 127.0.0.1; close it with `server.close()`. */
export async function listen(handler: Parameters<typeof import('node:http').createServer>[1]): Promise<{ server: Server; url: string }> {
  const { createServer } = await import('node:http');
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}` };
}
