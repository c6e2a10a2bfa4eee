import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

// Several app server processes over one store: the way users scale out, and
// the way a restart looks to the store.

interface Server {
  child: ChildProcess;
  port: number;
}

async function startServer(provider: string, providerOptions: Record<string, unknown>): Promise<Server> {
  const script = join(__dirname, '..', 'support', 'session-server.ts');
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', script, provider, JSON.stringify(providerOptions)], {
    cwd: join(__dirname, '..', '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await Promise.race([
    once(createInterface({ input: child.stdout! }), 'line'),
    once(child, 'exit').then(([code]) => Promise.reject(new Error(`server exited with ${code}`))),
  ])) as [string];
  return { child, port: Number(line) };
}

async function stop(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  server.child.kill('SIGKILL');
  await once(server.child, 'exit');
}

function get(server: Server, path: string, cookie: string | undefined, agent: Agent): Promise<{ status: number; body: Record<string, unknown>; cookie?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.port, path, agent, headers: cookie ? { cookie } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text), cookie: res.headers['set-cookie']?.[0]?.split(';')[0] }));
    });
    req.on('error', reject);
    req.end();
  });
}

const stores: Array<[string, () => { options: Record<string, unknown>; cleanup: () => void } | string]> = [
  ['file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-shared-file-'));
    return { options: { dir }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }],
  ['sqlite', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-shared-sqlite-'));
    return { options: { path: join(dir, 'sessions.db') }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }],
  ['redis', () => process.env.REDIS_URL
    ? { options: { url: process.env.REDIS_URL, prefix: `shared-${process.pid}-${Date.now()}:` }, cleanup: () => {} }
    : 'no Redis server (REDIS_URL unset and redis-server not installed)'],
  ['postgres', () => process.env.DATABASE_URL
    ? { options: { connectionString: process.env.DATABASE_URL, table: `shared_${process.pid}_${Date.now()}` }, cleanup: () => {} }
    : 'no PostgreSQL (DATABASE_URL unset and PostgreSQL not installed)'],
];

describe.each(stores)('two server processes on one %s store', (name, makeStore) => {
  const store = makeStore();
  if (typeof store === 'string') {
    if (process.env.CI) throw new Error(`${name}: ${store}`);
    it.skip(`skipped: ${store}`, () => {});
    return;
  }
  const servers: Server[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: 50 });

  afterAll(async () => {
    agent.destroy();
    await Promise.all(servers.map(stop));
    store.cleanup();
  });

  it('keep all 50 keys of concurrent requests split between them, and survive a restart of both', async () => {
    servers.push(await startServer(name, store.options), await startServer(name, store.options));
    const [a, b] = servers;
    const first = await get(a, '/set/username/alice', undefined, agent);
    expect(first.status).toBe(200);
    const cookie = first.cookie!;

    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => get(i % 2 === 0 ? a : b, `/set/k${i}/${i}`, cookie, agent)),
    );
    expect(results.map((res) => res.status)).toEqual(Array(50).fill(200));
    expect(new Set(results.map((res) => res.body.pid)).size).toBe(2); // both processes served

    const expected: Record<string, unknown> = { username: 'alice' };
    for (let i = 0; i < 50; i++) expected[`k${i}`] = String(i);
    expect((await get(b, '/all', cookie, agent)).body).toEqual(expected);

    // Restart: new processes over the same store read what the old ones wrote.
    agent.destroy();
    await Promise.all(servers.splice(0).map(stop));
    const fresh = await startServer(name, store.options);
    servers.push(fresh);
    expect((await get(fresh, '/all', cookie, new Agent())).body).toEqual(expected);
  });
});
