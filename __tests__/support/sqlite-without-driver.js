// Child process of __tests__/providers/sqlite.test.ts: a Node process in which
// `better-sqlite3` cannot be resolved, as if it were not installed. Prints JSON:
// whether importing the provider (and the package's index) loaded the driver, and
// the error that building a provider from `path` throws.
const Module = require('node:module');
const { existsSync } = require('node:fs');
const { join, sep } = require('node:path');

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'better-sqlite3') {
    const err = new Error(`Cannot find module '${request}'`);
    err.code = 'MODULE_NOT_FOUND';
    throw err;
  }
  return resolveFilename.call(this, request, ...rest);
};
require('ts-node').register({ transpileOnly: true });

const root = join(__dirname, '..', '..');
let indexImport = 'no lib/index.ts yet';
if (existsSync(join(root, 'lib', 'index.ts'))) {
  indexImport = typeof require(join(root, 'lib', 'index.ts')).sessions === 'function' ? 'ok' : 'no sessions export';
}
const { SqliteProvider } = require(join(root, 'lib', 'providers', 'sqlite.ts'));
const driverLoadedByImport = Object.keys(require.cache).some((path) => path.includes(`${sep}better-sqlite3${sep}`));
try {
  new SqliteProvider({ path: ':memory:' });
  console.log(JSON.stringify({ driverLoadedByImport, indexImport, message: 'no error' }));
} catch (err) {
  console.log(JSON.stringify({ driverLoadedByImport, indexImport, message: err.message, name: err.name }));
}
