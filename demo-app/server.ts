/**
 * Runs the demo: `npm run demo` (ts-node). Configuration comes from the
 * environment (see config.ts). The session store is checked before listening
 * (`manager.ready()`): an unreachable one stops the demo with one line and exit
 * code 1. SIGINT / SIGTERM stop accepting connections, let requests in flight
 * finish, close the session manager and exit.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDemoApp } from './app';
import { configFromEnv, storeSource } from './config';

/** How long a shutdown waits for open requests before cutting them off. */
const SHUTDOWN_GRACE_MS = 5000;

async function main(): Promise<void> {
  let config;
  let demo;
  try {
    config = configFromEnv();
    demo = createDemoApp(config.demo);
  } catch (err) {
    console.error(`demo: ${(err as Error).message}`);
    process.exit(1);
  }
  const { app, manager } = demo;
  try {
    // Fail at start, naming the store, rather than with a 503 at the first visit.
    await manager.ready();
  } catch (err) {
    console.error(`demo: session store not reachable: ${storeSource()}: ${(err as Error).message}`);
    // The process ends here: no connection or retry timer of the store may keep it alive.
    process.exit(1);
  }
  const session = config.demo.session ?? {};
  const server = createServer(app);

  server.on('error', (err) => {
    console.error(`demo: cannot listen on ${config.host}:${config.port}: ${err.message}`);
    manager.close().finally(() => process.exit(1));
  });

  server.listen(config.port, config.host, () => {
    const { port } = server.address() as AddressInfo;
    const host = config.host.includes(':') ? `[${config.host}]` : config.host;
    const provider = typeof session.provider === 'string' ? session.provider : 'memory';
    const where = session.transports?.includes('query') ? 'the URL (?sid=)' : 'a cookie';
    console.log(`session-manager demo on http://${host}:${port}/  (provider ${provider}, id in ${where}; Ctrl+C stops)`);
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      console.error(`demo: ${signal} again, exiting now`);
      process.exit(1);
    }
    stopping = true;
    console.log(`demo: ${signal}, shutting down`);
    const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
    force.unref();
    server.close(() => {
      manager.close().then(
        () => {
          console.log('demo: stopped');
          process.exit(0);
        },
        (err: unknown) => {
          console.error('demo: closing the session store failed:', err);
          process.exit(1);
        },
      );
    });
    // Keep-alive connections with no request in flight would hold close() open.
    server.closeIdleConnections();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

void main();
