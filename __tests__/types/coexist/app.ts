// An app with @types/express-session installed next to session-manager, compiled
// with skipLibCheck: false by __tests__/types-coexist.test.ts.
import express from 'express';
import 'express-session';
import { sessions, type SessionRequest } from 'session-manager';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace SessionManager {
    interface TypeConfig {
      expressSessionTypes: true;
    }
  }
}

const app = express();
app.use(sessions());
app.get('/', (req, res) => {
  const id: string = req.sessionID;
  const fromExpressSession: string = req.session.id; // express-session's type
  res.send(`${id} ${fromExpressSession}`);
});
export const plain = (req: SessionRequest): unknown => req.session.get('user'); // ours, for plain http
