// The subscribing side of bench path f (bench/fanout.py), in its own process:
// N graphql-transport-ws sockets, each subscribing to one `changes` document.
// Usage: node fanout_client.mjs URL TOKEN N QUERY (CLIENTS_DIR: tests/clients, for `ws`).
// Prints "ready <seconds to subscribe all>", waits for a line on stdin (the bench
// then sends its mutation), and prints the wall-clock receipt time (seconds) of
// each socket's first `next` as one JSON array, after all of them or 60 s.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(`${process.env.CLIENTS_DIR}/package.json`);
const WebSocket = require("ws");

const [url, token, count, query] = process.argv.slice(2);
const n = Number(count);
const wsUrl = `${url.replace(/^http/, "ws")}/graphql`;
const init = JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${token}` } });
const subscribe = JSON.stringify({ id: "1", type: "subscribe", payload: { query } });
const received = [];
const now = () => (performance.timeOrigin + performance.now()) / 1000;
let done;
const allIn = new Promise((resolve) => { done = resolve; });

function open() {
  return new Promise((resolve, reject) => {
    // ws's defaults, as a browser: permessage-deflate offered, the server decides.
    const ws = new WebSocket(wsUrl, "graphql-transport-ws");
    let heard = false;
    ws.on("open", () => ws.send(init));
    ws.on("error", reject);
    ws.on("message", (data) => {
      const text = data.toString();
      if (text.includes('"connection_ack"')) {
        ws.send(subscribe);
        resolve(ws);
      } else if (!heard && text.includes('"next"')) {
        heard = true;
        received.push(now());
        if (received.length === n) done();
      }
    });
  });
}

async function openWithRetries() {
  for (let attempt = 0; ; attempt++) {
    try {
      return await open();
    } catch (error) {
      if (attempt === 4) throw error;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

const began = performance.now();
const sockets = [];
const wave = 200; // not 10,000 handshakes at once
for (let i = 0; i < n; i += wave) {
  const batch = [];
  for (let j = i; j < Math.min(n, i + wave); j++) batch.push(openWithRetries());
  sockets.push(...(await Promise.all(batch)));
}
process.stdout.write(`ready ${((performance.now() - began) / 1000).toFixed(2)}\n`);
const lines = createInterface({ input: process.stdin });
await new Promise((resolve) => lines.once("line", resolve));
await Promise.race([allIn, new Promise((r) => setTimeout(r, 60000))]);
for (const ws of sockets) ws.terminate();
// Exit once the line is written: a pipe is written asynchronously in Node.
process.stdout.write(`${JSON.stringify(received)}\n`, () => process.exit(0));
