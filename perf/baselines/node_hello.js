'use strict';
// Baseline peer for perf/run: Node's own http server answering GET / with the same body and
// headers as hello ({"msg":"Hello, World!"}, Content-Type: application/json, Content-Length).
// HTTP/1.1 keep-alive (and pipelining) is Node's default; nothing here turns it off.
//
//   node perf/baselines/node_hello.js [HOST:PORT]     (default 127.0.0.1:0, a free port)
//
// Prints "node_hello LISTEN addr=HOST:PORT" once listening; exits 0 on SIGTERM or SIGINT.
const http = require('node:http');

const BODY = Buffer.from('{"msg":"Hello, World!"}');
const NOT_FOUND = Buffer.from('{"error":"not found"}');

const listen = process.argv[2] || '127.0.0.1:0';
const colon = listen.lastIndexOf(':');
const host = listen.slice(0, colon);
const port = Number(listen.slice(colon + 1));
if (colon < 1 || !Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`node_hello: bad HOST:PORT '${listen}'\n`);
  process.exit(2);
}

const server = http.createServer((req, res) => {
  const found = req.url === '/';
  const allowed = req.method === 'GET' || req.method === 'HEAD';
  const body = found ? BODY : NOT_FOUND;
  const status = !allowed ? 405 : found ? 200 : 404;
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': body.length,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
});
// Keep idle keep-alive connections as long as hello does (75 s); no per-connection request cap.
server.keepAliveTimeout = 75000;
server.maxRequestsPerSocket = 0;

server.listen(port, host, () => {
  const a = server.address();
  process.stdout.write(`node_hello LISTEN addr=${a.address}:${a.port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
