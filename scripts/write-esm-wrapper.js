// Writes dist/index.mjs: the ES-module face of the CommonJS build, with named exports.
const { writeFileSync } = require('node:fs');
const { join } = require('node:path');

const dist = join(__dirname, '..', 'dist');
const names = Object.keys(require(join(dist, 'index.js'))).filter((name) => name !== '__esModule' && name !== 'default');
writeFileSync(
  join(dist, 'index.mjs'),
  `import cjs from './index.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`,
);
