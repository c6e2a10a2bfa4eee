// Type-level tests for an app that declares its session keys: checked by
// `tsc --noEmit -p __tests__/types` in `npm test`; never executed.
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
session.set('username', 'ann');
session.set('countnum', 3);

// @ts-expect-error a misspelt key is an error once keys are declared
session.get('usrname');
// @ts-expect-error a misspelt key is an error for set too
session.set('usrname', 'oops');
// @ts-expect-error and for delete
session.delete('usrname');

// @ts-expect-error a declared key takes only its declared type
session.set('countnum', 'three');
// @ts-expect-error a declared key's value is not any
const wrong: number | undefined = session.get('username');
// @ts-expect-error sessionID is read-only
session.sessionID = 'x';

// Events and their payloads are typed.
middleware_events();
function middleware_events(): void {
  const manager = sessions().manager;
  manager.on('created', (event) => event.id.toUpperCase());
  manager.on('store', (event) => event.durationMs.toFixed());
  // @ts-expect-error a misspelt event name
  manager.on('craeted', () => undefined);
}

// providerOptions are typed by the provider's name.
sessions({ provider: 'redis', providerOptions: { url: 'redis://127.0.0.1:6379' } });
// @ts-expect-error `uri` is not a Redis option
sessions({ provider: 'redis', providerOptions: { uri: 'redis://127.0.0.1:6379' } });
// @ts-expect-error `dir` is a file option, not a memory one
sessions({ providerOptions: { dir: '/tmp' } });

// Listings carry the declared shape.
async function listing(): Promise<void> {
  for await (const info of sessions().manager.sessions()) {
    const user: string | undefined = info.data.username;
    void user;
  }
}
void listing;

declare const req: Request;
declare const raw: SessionRequest;
const fromExpress: Session = req.session;
const fromNode: string = raw.sessionID;
const loggedOut: Promise<void> = req.destroySession();

const middleware = sessions({ provider: 'memory', cookieName: 'gosessionid', maxLifetime: 3600 });
const online: Promise<number> = middleware.manager.count();
// @ts-expect-error unknown options are rejected by the types too
sessions({ maxLifeTime: 60 });

export { name, count, wrong, fromExpress, fromNode, loggedOut, online };
