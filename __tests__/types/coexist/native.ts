// A plain session-manager app: req.session is ours. Compiled with skipLibCheck: false.
import express from 'express';
import { sessions } from 'session-manager';

const app = express();
app.use(sessions());
app.get('/', (req, res) => {
  req.session.set('user', 'ann');
  res.send(String(req.session.get('user')) + req.sessionID);
});
