// The demo's session keys: with them declared, a misspelt key is a type error.
// Type-checked in its own program (demo-app/tsconfig.json): the test suite's
// apps keep free-form keys.
declare module '../lib' {
  interface SessionData {
    username: string;
    countnum: number;
    /** When the counter's session started, milliseconds since the epoch (the session clock). */
    createtime: number;
    /** The device the login came from, e.g. "Chrome on Linux" (device.ts), for the "Your sessions" page. */
    device: string;
  }
}
export {};
