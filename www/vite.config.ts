import { defineConfig } from 'vite';

export default defineConfig({
  build: {
    target: 'es2022',
    rollupOptions: {
      // bench.html: the browser piece-commitment benchmark (tests/bench/piece-browser.mjs).
      input: { main: 'index.html', bench: 'bench.html' },
    },
    // The wasm module is loaded by URL from the worker; keep it a file, never inline it.
    assetsInlineLimit: 0,
  },
  worker: {
    format: 'es',
  },
});
