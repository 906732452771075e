#!/usr/bin/env node
// The JavaScript reference for the commP benchmark: @web3-storage/data-segment on one file.
// usage: piece-js.mjs FILE → {"piece", "seconds", "mb_per_s"}
import { readFileSync } from 'node:fs';
import { Piece } from '@web3-storage/data-segment';

const data = readFileSync(process.argv[2]);
const started = performance.now();
const piece = Piece.fromPayload(data);
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ piece: piece.link.toString(), seconds, mb_per_s: data.length / 1e6 / seconds }));
