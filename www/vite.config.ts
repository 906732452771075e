import { defineConfig } from 'vite';

export default defineConfig({
  build: {
    target: 'es2022',
    // The wasm module is loaded by URL from the worker; keep it a file, never inline it.
    assetsInlineLimit: 0,
  },
  worker: {
    format: 'es',
  },
});
