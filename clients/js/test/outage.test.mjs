// The server down for 3 s: the client backs off, comes back, and resumes. It runs the server
// itself (a subprocess it kills and starts again on the same port), on the Redis of
// WSA_REDIS_URL, where the sessions outlive the process.
import assert from "node:assert/strict";
import {spawn} from "node:child_process";
import {once} from "node:events";
import net from "node:net";
import {setTimeout as delay} from "node:timers/promises";
import {test} from "node:test";
import {client, next, until} from "./helpers.mjs";

const {WSA_PYTHON: python, WSA_REDIS_URL: redis, WSA_ROOT: root} = process.env;
const skip = python && redis && root ? false : "needs WSA_PYTHON, WSA_REDIS_URL and WSA_ROOT";

async function freePort() {
  const server = net.createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const {port} = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/** Resolves once something accepts TCP connections on `port` (polled; at most 20 s). */
async function listening(port, child) {
  for (const deadline = Date.now() + 20000; Date.now() < deadline; await delay(50)) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    const up = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => resolve(true));
      socket.on("error", () => resolve(false));
      setTimeout(() => socket.destroy(), 1000).unref();
    }).finally(() => undefined);
    if (up) return;
  }
  throw new Error(`nothing listens on ${port}`);
}

function serve(port) {
  const args = ["-m", "websock_actors", "run", "tests.support.js_app:app", "--port", String(port), "--redis", redis];
  return spawn(python, args, {cwd: root, stdio: ["ignore", "ignore", "inherit"], env: {...process.env, PYTHONPATH: root}});
}

test("the server down for 3 s: backoff, then resume", {skip, timeout: 60000}, async () => {
  const port = await freePort();
  let server = serve(port);
  try {
    await listening(port, server);
    const url = `ws://127.0.0.1:${port}/`;
    const backoff = {initial: 250, factor: 2, max: 2000, jitter: 0.5};
    const reader = client(url, {backoff});
    const writer = client(url, {backoff});
    const texts = [];
    reader.on("note", (note) => texts.push(note.text));
    await reader.request({type: "join", room: "outage"});
    await writer.request({type: "join", room: "outage"});
    await writer.request({type: "post", room: "outage", text: "before"});
    await until(reader, "note", () => texts.length === 1);

    const delays = [];
    reader.on("reconnecting", (event) => delays.push(event.delay));
    server.kill("SIGKILL"); // a crash: no close frame, the sessions stay in Redis
    await once(server, "exit");
    await delay(3000); // the outage itself
    const resumed = next(reader, "resumed", 20000);
    server = serve(port);
    const answer = await resumed;
    assert.equal(answer.restored, true);
    assert.equal(answer.recovered, true);
    assert.ok(delays.length >= 3, `tried ${delays.length} times while the server was down`);
    assert.ok(delays[0] <= 250 && delays[2] >= 500, `backs off: ${delays}`);
    assert.ok(delays.every((d) => d <= 2000));

    await until(writer, "resumed", () => writer.connected && writer.reconnects === 1, 20000);
    await writer.request({type: "post", room: "outage", text: "after"});
    await until(reader, "note", () => texts.length === 2);
    assert.deepEqual(texts, ["before", "after"]);
    reader.close();
    writer.close();
  } finally {
    server.kill("SIGKILL");
  }
});
