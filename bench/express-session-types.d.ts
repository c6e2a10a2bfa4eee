// The benchmark runs express-session next to session-manager in one program:
// req.session keeps express-session's type here (see SessionManager.TypeConfig).
declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace SessionManager {
    interface TypeConfig {
      expressSessionTypes: true;
    }
  }
}
export {};
