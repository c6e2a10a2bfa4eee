// The express-session stores the benchmark runs against our providers ship no
// types (and their @types packages are not installed): what bench/server.ts uses of them.
declare module 'better-sqlite3-session-store' {
  import type { Store } from 'express-session';
  interface SqliteStoreOptions {
    client: import('better-sqlite3').Database;
    expired?: { clear?: boolean; intervalMs?: number };
  }
  function connectSqlite(session: { Store: typeof Store }): new (options: SqliteStoreOptions) => Store;
  export = connectSqlite;
}

declare module 'connect-pg-simple' {
  import type { Store } from 'express-session';
  interface PgStoreOptions {
    conString?: string;
    tableName?: string;
    createTableIfMissing?: boolean;
    pruneSessionInterval?: false | number;
  }
  interface PgStore extends Store {
    close(): Promise<void>;
  }
  function connectPgSimple(session: { Store: typeof Store }): new (options: PgStoreOptions) => PgStore;
  export = connectPgSimple;
}

declare module 'session-file-store' {
  import type { Store } from 'express-session';
  interface FileStoreOptions {
    path?: string;
    ttl?: number;
    retries?: number;
    reapInterval?: number;
    logFn?: (message: string) => void;
  }
  function sessionFileStore(session: { Store: typeof Store }): new (options: FileStoreOptions) => Store;
  export = sessionFileStore;
}
