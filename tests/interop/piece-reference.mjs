#!/usr/bin/env node
// The reference side of the piece differential tests: @web3-storage/data-segment computes the
// piece of each file. usage: piece-reference.mjs FILE... → JSON [{ v1, v2, padded, payload }]
import { readFileSync } from 'node:fs';
import { Piece } from '@web3-storage/data-segment';
import * as Digest from 'multiformats/hashes/digest';
import { CID } from 'multiformats/cid';

const out = [];
for (const file of process.argv.slice(2)) {
  const piece = Piece.fromPayload(readFileSync(file));
  const v1 = CID.create(1, Piece.FilCommitmentUnsealed, Digest.create(Piece.Sha256Trunc254Padded, piece.root));
  out.push({
    v1: v1.toString(),
    v2: piece.link.toString(),
    padded: Number(piece.size),
    height: piece.height,
    padding: Number(piece.padding),
  });
}
process.stdout.write(JSON.stringify(out));
