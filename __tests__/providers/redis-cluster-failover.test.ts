// A master of a real Redis Cluster crashes (SIGKILL) under a steady stream of
// session writes through an Express app on real sockets: requests get clean
// 503s (no 500, no hang, no crash) until its replica takes over, then the app
// recovers by itself. Acknowledged writes that did not survive are counted:
// Redis replicates asynchronously, so a crash may lose them; `waitReplicas`
// (WAIT) is what brings that loss to zero.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createClient } from 'redis';
import { sessions } from '../../lib/index';
import { RedisProvider } from '../../lib/providers/redis';
import {
  cli,
  clusterSkipReason,
  killNode,
  restartNode,
  startRedisCluster,
  stopRedisCluster,
  topology,
  waitClusterOk,
  waitReplicasInSync,
  type ClusterNode,
  type RedisCluster,
} from '../support/redis-cluster';

// This file crashes and restarts nodes: it needs a cluster of its own.
const reason = process.env.REDIS_CLUSTER_URL ? 'REDIS_CLUSTER_URL names a cluster this test may not crash' : clusterSkipReason();
if (reason) console.warn(`Skipping the Redis Cluster failover tests: ${reason}`);
const describeCluster = reason ? describe.skip : describe;

/** The provider's bound on each call: the longest a request may wait on a dead node. */
const TIMEOUT_MS = 1000;
const CLIENTS = 24;
const WARM_UP_MS = 500;
/** Recovered: no client saw a failure for this long. */
const STABLE_MS = 700;
/** Recovery is not declared before this (failure detection alone takes cluster-node-timeout). */
const MIN_AFTER_KILL_MS = 2500;
/** Give up waiting for recovery after this long. */
const RECOVERY_LIMIT_MS = 15_000;

interface Figures {
  scenario: string;
  acknowledged: number;
  surviving: number;
  lost: number;
  status503: number;
  otherFailures: number;
  /** From the kill to the last failed request. */
  recoveryMs: number;
  maxLatencyMs: number;
}

let cluster: RedisCluster;
const results: Figures[] = [];

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function startApp(provider: RedisProvider): Promise<{ server: Server; base: string; close: () => Promise<void> }> {
  const app = express();
  const middleware = sessions({ provider, maxLifetime: 3600, onError: () => undefined });
  app.use(middleware);
  app.get('/w/:i', (req, res) => {
    req.session.set(`k${req.params.i}`, 1);
    res.json({ ok: true });
  });
  app.get('/keys', (req, res) => {
    res.json([...req.session.keys()]);
  });
  app.use((err: Error & { status?: number }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(err.status ?? 500).json({ error: err.message });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    server,
    base,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await middleware.manager.close();
    },
  };
}

interface Client {
  cookie: string;
  acknowledged: string[];
  next: number;
}

/** GET with the client's cookie; resolves the status and how long it took. */
async function get(base: string, path: string, cookie?: string): Promise<{ status: number; ms: number; setCookie: string | null; body: unknown }> {
  const started = Date.now();
  const res = await fetch(`${base}${path}`, { headers: cookie === undefined ? {} : { cookie } });
  const body: unknown = await res.json().catch(() => undefined);
  return { status: res.status, ms: Date.now() - started, setCookie: res.headers.get('set-cookie'), body };
}

/** One app (its own provider and Cluster client) and its clients, writing back to back while `running`. */
class Load {
  readonly clients: Client[] = [];
  readonly failures: number[] = [];
  status503 = 0;
  otherFailures = 0;
  maxLatencyMs = 0;
  running = true;
  killedAt = Number.POSITIVE_INFINITY;
  #loops: Promise<void>[] = [];

  private constructor(
    readonly label: string,
    readonly prefix: string,
    readonly app: Awaited<ReturnType<typeof startApp>>,
  ) {}

  static async start(label: string, waitReplicas: number): Promise<Load> {
    const prefix = `fo:${label.replace(/\W+/g, '-')}:${Math.random().toString(36).slice(2, 8)}:`;
    const provider = new RedisProvider({ cluster: { rootNodes: cluster.rootNodes }, prefix, timeoutMs: TIMEOUT_MS, waitReplicas, waitTimeoutMs: 300 });
    const load = new Load(label, prefix, await startApp(provider));
    for (let i = 0; i < CLIENTS; i++) {
      const first = await get(load.app.base, '/w/0');
      expect(first.status).toBe(200);
      load.clients.push({ cookie: first.setCookie!.split(';')[0], acknowledged: ['k0'], next: 1 });
    }
    load.#loops = load.clients.map((client) => load.#loop(client));
    return load;
  }

  async #loop(client: Client): Promise<void> {
    while (this.running) {
      const key = `k${client.next++}`;
      let answer: Awaited<ReturnType<typeof get>>;
      try {
        answer = await get(this.app.base, `/w/${key.slice(1)}`, client.cookie);
      } catch {
        this.otherFailures += 1; // a dropped connection: the app crashed or hung up
        this.failures.push(Date.now());
        continue;
      }
      this.maxLatencyMs = Math.max(this.maxLatencyMs, answer.ms);
      if (answer.status === 200) {
        client.acknowledged.push(key);
        continue;
      }
      this.failures.push(Date.now());
      if (answer.status === 503) this.status503 += 1;
      else this.otherFailures += 1;
      await sleep(50); // a client backs off a little while the store is down
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.#loops);
  }

  /** Reads every client's session through the app (no restart) and counts the acknowledged writes it still holds. */
  async figures(scenario: string): Promise<Figures> {
    let acknowledged = 0;
    let surviving = 0;
    for (const client of this.clients) {
      const answer = await get(this.app.base, '/keys', client.cookie);
      expect(answer.status).toBe(200);
      const present = new Set(answer.body as string[]);
      acknowledged += client.acknowledged.length;
      surviving += client.acknowledged.filter((key) => present.has(key)).length;
    }
    const lastFailure = this.failures.filter((at) => at >= this.killedAt).pop() ?? this.killedAt;
    return {
      scenario: `${scenario}: ${this.label}`,
      acknowledged,
      surviving,
      lost: acknowledged - surviving,
      status503: this.status503,
      otherFailures: this.otherFailures,
      recoveryMs: lastFailure - this.killedAt,
      maxLatencyMs: this.maxLatencyMs,
    };
  }
}

/** The master holding most of the sessions under these prefixes, and its replica. */
async function victimOf(prefixes: string[]): Promise<{ victim: ClusterNode; replica: ClusterNode }> {
  const { masters, replicaOf } = await topology(cluster);
  const perMaster = new Map<number, number>();
  for (const port of masters) {
    const direct = await createClient({ url: `redis://127.0.0.1:${port}` }).connect();
    let sessionsThere = 0;
    for (const prefix of prefixes) for await (const keys of direct.scanIterator({ MATCH: `${prefix}{*`, COUNT: 1000 })) sessionsThere += keys.length;
    direct.destroy();
    perMaster.set(port, sessionsThere);
  }
  const victimPort = [...perMaster].sort((a, b) => b[1] - a[1])[0][0];
  return {
    victim: cluster.nodes.find((node) => node.port === victimPort)!,
    replica: cluster.nodes.find((node) => replicaOf.get(node.port) === victimPort)!,
  };
}

/**
 * One crash (SIGKILL) of the master holding most of the clients' sessions,
 * under the load of one app per variant, each with its own provider.
 *
 * `lagMs`: first the victim's replica falls behind for this long: it is
 * frozen (SIGSTOP) and its master drops the replication link (CLIENT KILL
 * TYPE replica), so the writes the master acknowledges meanwhile never reach
 * it (a frozen replica alone would still read them from its socket buffer
 * when it thaws). Then the master dies and the replica thaws and takes over.
 *
 * `restartDuringLoad`: the crashed node is started again (it rejoins as a
 * replica) as soon as its replica has taken over, as a supervisor would;
 * needed with `waitReplicas`, which refuses writes to a master without a
 * replica. Otherwise it is restarted after the figures, for the next scenario.
 */
async function scenario(name: string, variants: { label: string; waitReplicas: number }[], options: { lagMs: number; restartDuringLoad?: boolean }): Promise<Figures[]> {
  const loads: Load[] = [];
  try {
    for (const variant of variants) loads.push(await Load.start(variant.label, variant.waitReplicas));
    const { victim, replica } = await victimOf(loads.map((load) => load.prefix));
    await sleep(WARM_UP_MS);
    if (options.lagMs > 0) {
      process.kill(replica.pid, 'SIGSTOP');
      await cli(victim.port, 'CLIENT', 'KILL', 'TYPE', 'replica');
      await sleep(options.lagMs);
    }
    killNode(victim);
    const killedAt = Date.now();
    for (const load of loads) load.killedAt = killedAt;
    if (options.lagMs > 0) process.kill(replica.pid, 'SIGCONT');
    let restarted: Promise<void> | undefined;
    if (options.restartDuringLoad) {
      restarted = (async () => {
        const survivor = cluster.nodes.find((node) => node !== victim && node !== replica)!;
        while (!(await topology(cluster, survivor).catch(() => ({ masters: [] as number[] }))).masters.includes(replica.port)) await sleep(100);
        await restartNode(cluster, victim);
      })();
    }
    // Recovered once no request of any app failed for STABLE_MS (and at least MIN_AFTER_KILL_MS after the kill).
    for (;;) {
      await sleep(100);
      const now = Date.now();
      const lastFailure = Math.max(killedAt, ...loads.flatMap((load) => load.failures.slice(-1)));
      if (now - lastFailure >= STABLE_MS && now - killedAt >= MIN_AFTER_KILL_MS) break;
      if (now - killedAt > RECOVERY_LIMIT_MS) break;
    }
    await Promise.all(loads.map((load) => load.stop()));
    await restarted;
    const figures: Figures[] = [];
    for (const load of loads) figures.push(await load.figures(name));
    results.push(...figures);
    if (!options.restartDuringLoad) await restartNode(cluster, victim);
    await waitClusterOk(cluster.nodes);
    await waitReplicasInSync(cluster.nodes);
    return figures;
  } finally {
    for (const load of loads) {
      load.running = false;
      await load.app.close();
    }
  }
}

describeCluster('redis provider on a Redis Cluster when a master crashes', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (error: unknown): void => {
    unhandled.push(error);
  };

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    cluster = await startRedisCluster({ nodeTimeoutMs: 1000 });
  }, 60_000);
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    await stopRedisCluster(cluster);
    if (results.length > 0) console.log(`Redis Cluster failover figures:\n${JSON.stringify(results, null, 2)}`);
  });

  /** What every scenario must show: clean 503s, bounded waits, recovery without a restart. */
  function expectClean(figures: Figures): void {
    expect(figures.otherFailures).toBe(0); // no 500, no dropped connection
    expect(figures.status503).toBeGreaterThan(0); // the crash was seen, as 503s
    expect(figures.maxLatencyMs).toBeLessThan(4 * TIMEOUT_MS); // a request makes a few bounded calls, never hangs
    expect(figures.recoveryMs).toBeLessThan(RECOVERY_LIMIT_MS - STABLE_MS);
    expect(unhandled).toEqual([]);
  }

  it('answers 503 while the replica takes over, then recovers by itself; measures the acknowledged writes lost', async () => {
    const [figures] = await scenario('crash', [{ label: 'no WAIT', waitReplicas: 0 }], { lagMs: 0 });
    expectClean(figures);
  }, 40_000);

  it('loses acknowledged writes when the replica lagged (asynchronous replication), and none with waitReplicas: 1', async () => {
    const [plain, waiting] = await scenario(
      'crash of a master whose replica lagged',
      [
        { label: 'no WAIT', waitReplicas: 0 },
        { label: 'waitReplicas 1', waitReplicas: 1 },
      ],
      { lagMs: 300, restartDuringLoad: true },
    );
    expectClean(plain);
    expectClean(waiting);
    expect(plain.lost).toBeGreaterThan(0);
    expect(waiting.lost).toBe(0);
  }, 40_000);
});
