// The sample app from the notes: a page on port 80, with nothing but Node's own http
// module, so `npm install` needs no network.
const http = require("http");

const page = `<!DOCTYPE html>
<html>
  <head><title>Course Goals</title></head>
  <body>
    <h1>Hello from ketch!</h1>
    <p>This page is served by a Node.js app built with <code>ketch build</code>.</p>
  </body>
</html>
`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
  res.end(page);
});

server.listen(80, () => console.log("listening on port 80"));

// Stop promptly on `ketch stop` (SIGTERM): node as PID 1 has no default handler.
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
