// Preloaded into the compliance suite (`node --import`): the suite reads the Pinning Service
// API's OpenAPI file from raw.githubusercontent.com, which the test machine cannot reach. This
// answers that one download with the same file, v1.0.0, kept beside this script (CC0, from
// github.com/ipfs/pinning-services-api-spec at tag v1.0.0), by sending the request to a
// loopback server instead. Every other request goes out untouched.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';

const spec = readFileSync(new URL('./ipfs-pinning-service.yaml', import.meta.url));
const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/yaml' });
  res.end(spec);
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
server.unref();
const { port } = server.address();

const SPEC_HOST = 'raw.githubusercontent.com';
const originalGet = https.get;
https.get = function get(options, ...rest) {
  const host = typeof options === 'object' && !(options instanceof URL) ? options.hostname ?? options.host : new URL(options).hostname;
  if (host !== SPEC_HOST) return originalGet.call(this, options, ...rest);
  return http.get({ hostname: '127.0.0.1', port, path: '/spec.yaml' }, ...rest);
};
