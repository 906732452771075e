// The SDK as a library for other dapps: `www/dist/sdk/estuary-sdk.js`, one ES module, and its
// type declarations (`estuary-sdk.d.ts` → `types/`), written by scripts/build.
// - ethers is a peer dependency: imported as `ethers`, not bundled (the dapp brings its own; a
//   page with no bundler maps it with an import map).
// - The node's worker and the piece workers are emitted beside it (`assets/`) and found through
//   `import.meta.url`. The node's WebAssembly is emitted once, as a file (`assets/*.wasm`): the
//   page compiles it once and hands the module to every worker (src/sdk/wasm.ts).
import { defineConfig } from 'vite';

export default defineConfig({
  // Worker and wasm URLs relative to the module that uses them, wherever the library is served from.
  base: './',
  build: {
    target: 'es2022',
    outDir: 'dist/sdk',
    emptyOutDir: true,
    lib: { entry: 'src/sdk/index.ts', formats: ['es'], fileName: 'estuary-sdk' },
    assetsInlineLimit: 0,
    rolldownOptions: {
      external: ['ethers'],
      // Hashed by content, as the worker scripts are: a cached wasm never meets newer glue.
      output: { assetFileNames: 'assets/[name]-[hash][extname]' },
    },
  },
  worker: { format: 'es' },
});
