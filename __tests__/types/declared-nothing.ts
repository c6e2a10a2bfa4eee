// Type-level tests for an app that declares no session keys: any string key,
// values of any JSON-able type; what has no JSON form is refused by the types.
import { sessions, type Session } from 'session-manager';

declare const session: Session;

const other: unknown = session.get('anything');
session.set('anything-else', { free: 'form' });
session.delete('whatever');

// @ts-expect-error a Map would be stored as {}: refused
session.set('m', new Map());
// @ts-expect-error a function has no JSON form
session.set('f', () => 1);
// @ts-expect-error undefined is not a value (use delete)
session.set('u', undefined);

const middleware = sessions({ provider: 'file', providerOptions: { dir: '/tmp/sessions' } });

export { other, middleware };
