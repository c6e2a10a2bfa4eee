/**
 * Starts the demo app on a fresh port of 127.0.0.1 for one test, with the
 * session options it asks for, and stops it completely afterwards (browser
 * keep-alive connections included, and the session manager).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDemoApp, type DemoOptions } from '../../demo-app/app';
import type { Manager } from 'session-manager';

export interface RunningDemo {
  /** e.g. `http://127.0.0.1:41234` (no trailing slash). */
  url: string;
  manager: Manager;
  close(): Promise<void>;
}

export async function startDemo(options: DemoOptions = {}): Promise<RunningDemo> {
  const { app, manager } = createDemoApp(options);
  const server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    manager,
    close() {
      closed ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await stopped;
        await manager.close();
      })();
      return closed;
    },
  };
}
