// Writes dist/index.mjs and dist/testing.mjs: the ES-module faces of the CommonJS
// build's entries, with named exports. Each wraps its CommonJS module, so an app
// that imports and one that requires share one registry. Usage:
//   node scripts/write-esm-wrapper.js [distDir]   (default: dist)
const { writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');

const dist = process.argv[2] ? resolve(process.argv[2]) : join(__dirname, '..', 'dist');
for (const entry of ['index', 'testing']) {
  const names = Object.keys(require(join(dist, `${entry}.js`))).filter((name) => name !== '__esModule' && name !== 'default');
  writeFileSync(
    join(dist, `${entry}.mjs`),
    `import cjs from './${entry}.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`,
  );
}
