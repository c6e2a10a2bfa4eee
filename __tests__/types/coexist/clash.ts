// Both libraries' types with no switch set: must not compile (see types-coexist.test.ts).
import 'express-session';
import { sessions } from 'session-manager';

export const middleware = sessions();
