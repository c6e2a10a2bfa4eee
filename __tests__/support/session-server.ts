// A minimal app server over a chosen provider, run as a child process by
// __tests__/providers/shared-store.test.ts:
//   node -r ts-node/register/transpile-only session-server.ts <provider> <providerOptions JSON>
// Prints its port on the first line of stdout, serves until killed.
import express from 'express';
import { sessions } from '../../lib/index';

const [provider, providerOptions] = process.argv.slice(2);
const app = express();
app.use(sessions({ provider, providerOptions: JSON.parse(providerOptions), secret: 'shared-store-test-secret-0123456789abcdef' }));
app.get('/set/:key/:value', (req, res) => {
  req.session.set(String(req.params.key), req.params.value);
  res.json({ pid: process.pid });
});
app.get('/all', (req, res) => {
  res.json(Object.fromEntries([...req.session.keys()].map((key) => [key, req.session.get(key)])));
});
app.use((err: Error & { status?: number }, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
  res.status(err.status ?? 500).json({ error: err.message });
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as { port: number }).port}\n`);
});
