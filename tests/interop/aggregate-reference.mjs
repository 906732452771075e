#!/usr/bin/env node
// The reference side of the aggregation differential test: @web3-storage/data-segment packs the
// files into a deal and resolves each piece's inclusion proof.
// usage: aggregate-reference.mjs DEAL_SIZE FILE... → JSON { piece_cid, segments: [{ piece_cid, proof }] }
import { readFileSync } from 'node:fs';
import { Aggregate, Piece } from '@web3-storage/data-segment';

const [size, ...files] = process.argv.slice(2);
const pieces = files.map((f) => Piece.fromPayload(readFileSync(f)));
const aggregate = Aggregate.build({ pieces, size: Aggregate.Size.from(BigInt(size)) });
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const proofJson = ([offset, path]) => ({ index: Number(offset), path: path.map(hex) });
const segments = pieces.map((piece) => {
  const proof = aggregate.resolveProof(piece.link);
  if (proof.error) throw proof.error;
  const [tree, index] = proof.ok;
  return { piece_cid: piece.link.toString(), proof: { subtree: proofJson(tree), index: proofJson(index) } };
});
process.stdout.write(JSON.stringify({ piece_cid: aggregate.link.toString(), segments }));
