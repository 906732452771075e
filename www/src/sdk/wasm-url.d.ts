// Vite's `?url` import of an asset kept as a file, never inlined (`&no-inline`): the SDK ships
// the node's WebAssembly once, beside it, rather than inside each worker script.
declare module '*?url&no-inline' {
  const url: string;
  export default url;
}
