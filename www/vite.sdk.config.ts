// The SDK as a library for other dapps: `www/dist/sdk/estuary-sdk.js`, one self-contained ES
// module (ethers and multiformats included, so a page can import it with no bundler and no
// import map; the node's worker and the piece workers are emitted beside it and found through
// `import.meta.url`, each with the wasm module inside), and its type declarations
// (`estuary-sdk.d.ts` → `types/`), written by scripts/build.
import { defineConfig } from 'vite';

export default defineConfig({
  // Worker URLs relative to the module that starts them, wherever the library is served from.
  base: './',
  build: {
    target: 'es2022',
    outDir: 'dist/sdk',
    emptyOutDir: true,
    lib: { entry: 'src/sdk/index.ts', formats: ['es'], fileName: 'estuary-sdk' },
    assetsInlineLimit: 0,
  },
  worker: { format: 'es' },
});
