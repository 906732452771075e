#!/usr/bin/env node
// Reads CAR files with @ipld/car (v1 and v2) and prints what it sees, for the interop tests.
// usage: car-read.mjs FILE...  → JSON [{ version, roots, blocks: [cid...] }]
import { readFileSync } from 'node:fs';
import { CarReader } from '@ipld/car/reader';

const out = [];
for (const file of process.argv.slice(2)) {
  const reader = await CarReader.fromBytes(readFileSync(file));
  const blocks = [];
  for await (const { cid } of reader.blocks()) blocks.push(cid.toString());
  out.push({
    version: reader.version,
    roots: (await reader.getRoots()).map(String),
    blocks,
  });
}
process.stdout.write(JSON.stringify(out));
