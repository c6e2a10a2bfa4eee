/**
 * A real Redis Cluster for the cluster suites: three masters and one replica
 * each, on free 127.0.0.1 ports, in a temp dir, started lazily by the suites
 * that need it (beforeAll) and stopped by pid (afterAll, also when starting
 * failed half-way). REDIS_CLUSTER_URL (comma-separated root nodes) names an
 * existing cluster instead; nothing is then started or stopped.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, redisBinary } from './services';

const run = promisify(execFile);

export interface ClusterNode {
  port: number;
  url: string;
  /** 0 when the node was not started here (REDIS_CLUSTER_URL). */
  pid: number;
}

export interface RedisCluster {
  rootNodes: { url: string }[];
  nodes: ClusterNode[];
  /** The temp dir holding nodes-<port>.conf; undefined for REDIS_CLUSTER_URL. */
  dir?: string;
  nodeTimeoutMs: number;
}

/** redis-cli next to redis-server (Debian's redis-tools), or on PATH. */
export function redisCliBinary(): string | undefined {
  const server = redisBinary();
  const dirs = [...(server === undefined ? [] : [join(server, '..')]), ...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/bin', '/usr/local/bin'];
  return dirs.map((dir) => join(dir, 'redis-cli')).find((path) => existsSync(path));
}

/**
 * Why the cluster suites skip, or undefined when they run. Under CI=true they
 * never skip: a missing binary then fails `startRedisCluster()` (and the suite).
 */
export function clusterSkipReason(): string | undefined {
  if (process.env.REDIS_CLUSTER_URL) return undefined;
  if (process.env.CI === 'true') return undefined;
  if (redisBinary() === undefined) return 'redis-server is not installed and REDIS_CLUSTER_URL is not set';
  if (redisCliBinary() === undefined) return 'redis-cli is not installed and REDIS_CLUSTER_URL is not set';
  return undefined;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** `redis-cli -p <port> <args…>`'s output; rejects when the node does not answer. */
export async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run(redisCliBinary()!, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 5_000 });
  return stdout;
}

async function stateOk(port: number): Promise<boolean> {
  try {
    return (await cli(port, 'CLUSTER', 'INFO')).includes('cluster_state:ok');
  } catch {
    return false;
  }
}

/** Waits until every node (or those given) says `cluster_state:ok`. */
export async function waitClusterOk(nodes: ClusterNode[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(nodes.map((node) => stateOk(node.port)));
    if (states.every(Boolean)) return;
    if (Date.now() > deadline) throw new Error(`cluster_state:ok not reached within ${timeoutMs} ms`);
    await sleep(100);
  }
}

function startNode(binary: string, port: number, dir: string, nodeTimeoutMs: number): ClusterNode {
  const child = spawn(
    binary,
    [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', String(nodeTimeoutMs),
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
    ],
    { stdio: 'ignore', detached: true },
  );
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${binary}`);
  return { port, url: `redis://127.0.0.1:${port}`, pid: child.pid };
}

async function waitAnswers(node: ClusterNode, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await cli(node.port, 'PING')).trim() === 'PONG') return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`redis-server on port ${node.port} did not come up`);
    await sleep(50);
  }
}

/**
 * Starts 3 masters + 3 replicas, joins them with `redis-cli --cluster create
 * --cluster-replicas 1`, waits for `cluster_state:ok` on all. With
 * REDIS_CLUSTER_URL set, returns that cluster (nothing started).
 */
export async function startRedisCluster(options: { nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000;
  const given = process.env.REDIS_CLUSTER_URL;
  if (given) {
    const urls = given.split(',').map((url) => url.trim()).filter(Boolean);
    return { rootNodes: urls.map((url) => ({ url })), nodes: urls.map((url) => ({ url, port: Number(new URL(url).port || 6379), pid: 0 })), nodeTimeoutMs };
  }
  const binary = redisBinary();
  const cliBinary = redisCliBinary();
  if (binary === undefined || cliBinary === undefined) throw new Error('redis-server and redis-cli are needed for the cluster tests (or set REDIS_CLUSTER_URL)');
  await reapStaleClusters();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  const cluster: RedisCluster = { rootNodes: [], nodes: [], dir, nodeTimeoutMs };
  try {
    const ports: number[] = [];
    while (ports.length < 6) {
      const port = await freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    for (const port of ports) cluster.nodes.push(startNode(binary, port, dir, nodeTimeoutMs));
    writeOwner(cluster);
    await Promise.all(cluster.nodes.map((node) => waitAnswers(node)));
    await run(cliBinary, ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '1', '--cluster-yes'], { timeout: 30_000 });
    await waitClusterOk(cluster.nodes);
    // Every node must also know every other one (gossip), or a client may be told of a partial topology.
    await waitFor(async () => (await Promise.all(cluster.nodes.map((node) => cli(node.port, 'CLUSTER', 'NODES')))).every((out) => out.trim().split('\n').length === 6));
    await waitReplicasInSync(cluster.nodes);
    cluster.rootNodes = cluster.nodes.slice(0, 3).map((node) => ({ url: node.url }));
    return cluster;
  } catch (error) {
    await stopRedisCluster(cluster);
    throw error;
  }
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`cluster not settled within ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Waits until every replica's link to its master is up (its initial sync done), so WAIT can be acknowledged. */
export async function waitReplicasInSync(nodes: ClusterNode[], timeoutMs = 15_000): Promise<void> {
  await waitFor(async () => {
    const infos = await Promise.all(nodes.map((node) => cli(node.port, 'INFO', 'replication')));
    return infos.every((info) => !info.includes('role:slave') || info.includes('master_link_status:up'));
  }, timeoutMs);
}

/** SIGKILLs one node (a crash) if it is still ours. */
export function killNode(node: ClusterNode): void {
  if (node.pid <= 0) return;
  try {
    process.kill(node.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Starts a killed node again on its port with its nodes.conf: it rejoins (as a replica of whoever took its slots). */
export async function restartNode(cluster: RedisCluster, node: ClusterNode): Promise<void> {
  const started = startNode(redisBinary()!, node.port, cluster.dir!, cluster.nodeTimeoutMs);
  node.pid = started.pid;
  writeOwner(cluster);
  await waitAnswers(node);
}

const DIR_PREFIX = 'session-manager-cluster-';
const OWNER_FILE = 'owner.json';

/** Records who started the nodes, so a later run can stop them if this process dies before its afterAll. */
function writeOwner(cluster: RedisCluster): void {
  writeFileSync(join(cluster.dir!, OWNER_FILE), JSON.stringify({ owner: process.pid, nodes: cluster.nodes.map(({ pid, port }) => ({ pid, port })) }));
}

/** Stops the nodes of earlier runs whose process died (Ctrl-C, a crash) and deletes their dirs. */
async function reapStaleClusters(): Promise<void> {
  for (const name of readdirSync(tmpdir()).filter((entry) => entry.startsWith(DIR_PREFIX))) {
    const dir = join(tmpdir(), name);
    let record: { owner: number; nodes: { pid: number; port: number }[] };
    try {
      record = JSON.parse(readFileSync(join(dir, OWNER_FILE), 'utf8'));
    } catch {
      continue; // being set up, or not ours to judge
    }
    if (!gone(record.owner)) continue;
    const nodes = record.nodes.filter(({ pid, port }) => {
      try {
        // The pid may have been reused: only a redis-server on that port is ours.
        const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return command.includes('redis-server') && command.includes(String(port));
      } catch {
        return false;
      }
    });
    await stopRedisCluster({ rootNodes: [], nodes: nodes.map(({ pid, port }) => ({ pid, port, url: '' })), dir, nodeTimeoutMs: 0 });
  }
}

function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Stops every node started here, by pid, waits until they are gone (a replica may still be writing its RDB) and deletes the temp dir. Never throws. */
export async function stopRedisCluster(cluster: RedisCluster | undefined): Promise<void> {
  if (cluster === undefined || cluster.dir === undefined) return;
  for (const node of cluster.nodes) killNode(node);
  const deadline = Date.now() + 3000;
  while (cluster.nodes.some((node) => node.pid > 0 && !gone(node.pid)) && Date.now() < deadline) await sleep(20);
  try {
    rmSync(cluster.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  } catch {
    // teardown must finish
  }
}

/** The role of each node from CLUSTER NODES (as one live node sees it): ports of masters that hold slots, and each replica's master port. */
export async function topology(cluster: RedisCluster, via?: ClusterNode): Promise<{ masters: number[]; replicaOf: Map<number, number> }> {
  const lines = (await cli((via ?? cluster.nodes[0]).port, 'CLUSTER', 'NODES')).trim().split('\n');
  const byId = new Map<string, number>();
  for (const line of lines) {
    const [id, address] = line.split(' ');
    byId.set(id, Number(address.split('@')[0].split(':')[1]));
  }
  const masters: number[] = [];
  const replicaOf = new Map<number, number>();
  for (const line of lines) {
    const [id, , flags, master, , , , state, ...slots] = line.split(' ');
    if (flags.includes('fail') || state !== 'connected' && !flags.includes('myself')) continue;
    if (flags.includes('master') && slots.length > 0) masters.push(byId.get(id)!);
    if (flags.includes('slave')) replicaOf.set(byId.get(id)!, byId.get(master)!);
  }
  return { masters: masters.sort(), replicaOf };
}
