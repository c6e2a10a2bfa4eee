import { debuglog } from 'node:util';

/**
 * What the library decides per request, for `NODE_DEBUG=session-manager`:
 * one line per step, sessions named by the short hash events carry, never by id.
 */
export const debug = debuglog('session-manager');
