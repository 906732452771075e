#!/usr/bin/env node
// Fails if a wasm module imports anything from `env`: that means some dependency expects a C
// runtime or a host function no browser provides, and the module would fail to instantiate.
import { readFileSync } from 'node:fs';

const path = process.argv[2];
if (!path) {
  console.error('usage: check-wasm-imports.mjs FILE.wasm');
  process.exit(2);
}
const module = new WebAssembly.Module(readFileSync(path));
const imports = WebAssembly.Module.imports(module);
const fromEnv = imports.filter((i) => i.module === 'env');
if (fromEnv.length > 0) {
  console.error(`${path} imports from env: ${fromEnv.map((i) => i.name).join(', ')}`);
  process.exit(1);
}
const modules = [...new Set(imports.map((i) => i.module))];
console.error(`    ${path}: ${imports.length} imports, none from env (${modules.join(', ') || 'none'})`);
