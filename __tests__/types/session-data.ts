// Type-level tests: checked by `tsc --noEmit` in `npm test`; never executed.
import type { Request } from 'express';
import { sessions, type Session, type SessionRequest } from 'session-manager';

declare module 'session-manager' {
  interface SessionData {
    username: string;
    countnum: number;
  }
}

declare const session: Session;

const name: string | undefined = session.get('username');
const count: number | undefined = session.get('countnum');
const other: unknown = session.get('undeclared');
session.set('username', 'ann');
session.set('countnum', 3);
session.set('anything-else', { free: 'form' });

// @ts-expect-error a declared key takes only its declared type
session.set('countnum', 'three');
// @ts-expect-error a declared key's value is not any
const wrong: number | undefined = session.get('username');
// @ts-expect-error sessionID is read-only
session.sessionID = 'x';

declare const req: Request;
declare const raw: SessionRequest;
const fromExpress: Session = req.session;
const fromNode: string = raw.sessionID;
const loggedOut: Promise<void> = req.destroySession();

const middleware = sessions({ provider: 'memory', cookieName: 'gosessionid', maxLifetime: 3600 });
const online: Promise<number> = middleware.manager.count();
// @ts-expect-error unknown options are rejected by the types too
sessions({ maxLifeTime: 60 });

export { name, count, other, wrong, fromExpress, fromNode, loggedOut, online };
