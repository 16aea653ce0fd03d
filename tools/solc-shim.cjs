#!/usr/bin/env node
// forge drives this file as if it were a native `solc`: it answers `--version` and compiles
// `--standard-json` from stdin with solc-js, printing only JSON. It exists because no native solc
// can be downloaded on machines without internet, while the npm registry is reachable.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

const args = process.argv.slice(2);

if (args.includes('--version')) {
  // foundry-compilers parses the "Version:" line, exactly as native solc prints it.
  process.stdout.write('solc, the solidity compiler commandline interface\n');
  process.stdout.write(`Version: ${solc.version()}\n`);
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-shim: only --version and --standard-json are supported\n');
  process.exit(2);
}

// Imports that forge did not inline are resolved against the base and include paths it passes.
function flagValues(name) {
  const out = [];
  args.forEach((a, i) => {
    if (a === name && i + 1 < args.length) out.push(args[i + 1]);
    else if (a.startsWith(name + '=')) out.push(a.slice(name.length + 1));
  });
  return out;
}
const roots = [...flagValues('--base-path'), ...flagValues('--include-path'), process.cwd()];

function findImports(importPath) {
  for (const root of roots) {
    const candidate = path.resolve(root, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  return { error: `File not found: ${importPath}` };
}

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  process.stdout.write(solc.compile(input, { import: findImports }));
});
