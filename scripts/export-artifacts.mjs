#!/usr/bin/env node
// Copies the ABI and bytecode of Estuary's deployable contracts from Foundry's build output
// (contracts/out, not committed) to contracts/artifacts (committed), where the Rust bindings
// (alloy `sol!`) and the dapp read them. Run after `forge build`; the test command fails if the
// committed copy is stale.
import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CONTRACTS = [
  'EstuaryPinning',
  'PerpetualStorage',
  'DealClient',
  'EstuaryOracle',
  'DataDAO',
  'DealStateView',
  'ProviderRegistry',
  'DealCodec',
  'MarketSimulator',
  'MinerActorSimulator',
  'ActorCallForwarder',
];

mkdirSync(join(root, 'contracts/artifacts'), { recursive: true });
for (const name of CONTRACTS) {
  const file = name === 'ActorCallForwarder' ? 'MarketSimulator' : name;
  const built = JSON.parse(readFileSync(join(root, `contracts/out/${file}.sol/${name}.json`), 'utf8'));
  const artifact = {
    contractName: name,
    abi: built.abi,
    bytecode: { object: built.bytecode.object },
    deployedBytecode: { object: built.deployedBytecode.object },
  };
  // Written only when it changed: the Rust bindings compile from these files, maybe at this
  // moment (the test command runs this beside clippy), and a rewrite would rebuild them.
  const path = join(root, `contracts/artifacts/${name}.json`);
  const text = JSON.stringify(artifact, null, 2) + '\n';
  if (!existsSync(path) || readFileSync(path, 'utf8') !== text) {
    // Whole or not at all, for a reader at the same moment.
    writeFileSync(`${path}.tmp`, text);
    renameSync(`${path}.tmp`, path);
  }
}
console.log(`exported ${CONTRACTS.length} artifact(s) to contracts/artifacts`);
