#!/usr/bin/env node
// The JavaScript reference for the import benchmark: ipfs-unixfs-importer (unixfs-v1-2025) into
// an in-memory block list, streamed as a CAR (@ipld/car) to a file, in produced order.
// usage: js-import.mjs FILE OUT.car   → prints {"root", "seconds", "mb_per_s"}
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { CarWriter } from '@ipld/car/writer';
import { CID } from 'multiformats/cid';
import { importer } from 'ipfs-unixfs-importer';

const [file, outPath] = process.argv.slice(2);
const size = (await stat(file)).size;
const started = performance.now();

// The root is known only at the end; this benchmark measures throughput, so the header names a
// provisional root and is left as written (`estuary add` patches its header; a few bytes).
const provisional = CID.parse('bafkqaaa');
const { writer, out } = CarWriter.create([provisional]);
const written = pipeline(Readable.from(out), createWriteStream(outPath));
const blockstore = {
  async put(cid, bytes) {
    await writer.put({ cid, bytes });
    return cid;
  },
};
let root;
for await (const entry of importer(
  [{ path: basename(file), content: createReadStream(file, { highWaterMark: 1 << 20 }) }],
  blockstore,
  { profile: 'unixfs-v1-2025' },
)) {
  root = entry.cid;
}
await writer.close();
await written;
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ root: root.toString(), seconds, mb_per_s: size / 1e6 / seconds }));
