#!/usr/bin/env node
// The reference side of the UnixFS/CAR differential tests: imports each case with the npm
// packages `ipfs-unixfs-importer` (Helia's importer) and writes a CAR with `@ipld/car`, in the
// same `dfs` order as `estuary add --car-order dfs` (root first, depth first, each block once).
//
// stdin: JSON [{ path, profile, chunkSize?, maxLinks?, rawLeaves?, cidVersion?, wrap? }]
// stdout: JSON [{ root, blocks, carSha256, carBytes }]
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CarWriter } from '@ipld/car/writer';
import * as dagPb from '@ipld/dag-pb';
import { importer } from 'ipfs-unixfs-importer';
import { fixedSize } from 'ipfs-unixfs-importer/chunker';
import { balanced } from 'ipfs-unixfs-importer/layout';

const PROFILES = {
  'unixfs-v0-2015': { chunkSize: 262144, maxLinks: 174, options: { profile: 'unixfs-v0-2015' } },
  // kubo's `ipfs add --cid-version=1`: the importer's own defaults.
  'kubo-cidv1': { chunkSize: 262144, maxLinks: 174, options: { cidVersion: 1, rawLeaves: true } },
  'unixfs-v1-2025': { chunkSize: 1048576, maxLinks: 1024, options: { profile: 'unixfs-v1-2025' } },
};

function* candidates(path, prefix) {
  const stat = lstatSync(path);
  if (stat.isSymbolicLink()) {
    yield { path: prefix, link: readlinkSync(path) };
  } else if (stat.isDirectory()) {
    yield { path: prefix };
    const names = readdirSync(path).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) yield* candidates(join(path, name), `${prefix}/${name}`);
  } else if (stat.size <= 1 << 20) {
    yield { path: prefix, content: readFileSync(path) };
  } else {
    yield { path: prefix, content: createReadStream(path, { highWaterMark: 1 << 20 }) };
  }
}

async function importCase(c) {
  const profile = PROFILES[c.profile];
  if (!profile) throw new Error(`unknown profile ${c.profile}`);
  const blocks = new Map();
  const blockstore = {
    async put(cid, bytes) {
      blocks.set(cid.toString(), { cid, bytes });
      return cid;
    },
    async get(cid) {
      return blocks.get(cid.toString()).bytes;
    },
    async has(cid) {
      return blocks.has(cid.toString());
    },
  };
  const options = {
    ...profile.options,
    chunker: fixedSize({ chunkSize: c.chunkSize ?? profile.chunkSize }),
    layout: balanced({ maxChildrenPerNode: c.maxLinks ?? profile.maxLinks }),
    wrapWithDirectory: Boolean(c.wrap),
  };
  if (c.rawLeaves != null) options.rawLeaves = c.rawLeaves;
  if (c.cidVersion != null) options.cidVersion = c.cidVersion;

  let root;
  for await (const entry of importer(candidates(c.path, basename(c.path)), blockstore, options)) {
    root = entry.cid;
  }

  // dfs order, each block once.
  const { writer, out } = CarWriter.create([root]);
  const hash = createHash('sha256');
  let carBytes = 0;
  const drained = (async () => {
    for await (const chunk of out) {
      hash.update(chunk);
      carBytes += chunk.length;
    }
  })();
  const seen = new Set();
  const stack = [root];
  while (stack.length) {
    const cid = stack.pop();
    const key = cid.toString();
    if (seen.has(key)) continue;
    seen.add(key);
    const { bytes } = blocks.get(key);
    await writer.put({ cid, bytes });
    if (cid.code === dagPb.code) {
      const links = dagPb.decode(bytes).Links.map((l) => l.Hash);
      for (let i = links.length - 1; i >= 0; i--) stack.push(links[i]);
    }
  }
  await writer.close();
  await drained;
  return { root: root.toString(), blocks: seen.size, carSha256: hash.digest('hex'), carBytes };
}

const input = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.on('data', (d) => (text += d));
  process.stdin.on('end', () => resolve(text));
}));
const results = [];
for (const c of input) results.push(await importCase(c));
process.stdout.write(JSON.stringify(results));
