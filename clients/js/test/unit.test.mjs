// The client against a scripted WebSocket server of the `ws` package: what the real server
// does not do on its own (send a repeat, accept and drop at once, over and over).
import assert from "node:assert/strict";
import {once} from "node:events";
import {test} from "node:test";
import WebSocket, {WebSocketServer} from "ws";
import {backoffDelay, connect} from "../src/client.js";
import {next, until} from "./helpers.mjs";

/** A server on a free loopback port running `onConnection(socket, n)` for its n-th client. */
async function scripted(onConnection) {
  const server = new WebSocketServer({host: "127.0.0.1", port: 0});
  await once(server, "listening");
  let n = 0;
  server.on("connection", (socket, request) => onConnection(socket, n++, request));
  return {server, url: `ws://127.0.0.1:${server.address().port}/`, stop: () => server.close()};
}

const frames = (socket) => {
  const seen = [];
  socket.on("message", (data) => seen.push(JSON.parse(data.toString())));
  return seen;
};

test("a repeat is dropped by seq; another epoch starts again", async () => {
  const {url, stop} = await scripted((socket) => {
    for (const [seq, epoch] of [[1, "a"], [2, "a"], [2, "a"], [1, "a"], [3, "a"], [1, "b"], [1, "b"]]) {
      socket.send(JSON.stringify({type: "note", room: "r", seq, epoch}));
    }
    socket.send(JSON.stringify({type: "note", room: "other", seq: 1, epoch: "a"}));
    socket.send(JSON.stringify({type: "done"}));
  });
  const c = connect(url, {WebSocket});
  const seen = [];
  c.on("note", (m) => seen.push(`${m.room}:${m.seq}${m.epoch}`));
  await next(c, "done");
  assert.deepEqual(seen, ["r:1a", "r:2a", "r:3a", "r:1b", "other:1a"]);
  assert.deepEqual(c.positions, {r: {seq: 1, epoch: "b"}, other: {seq: 1, epoch: "a"}});
  c.close();
  stop();
});

test("the resume is the first frame after every reconnect, before what was queued", async () => {
  const seen = [];
  const {url, stop} = await scripted((socket, n) => {
    seen[n] = frames(socket);
    socket.send(JSON.stringify({type: "session", session: `token-${n}`}));
    if (n < 2) socket.send(JSON.stringify({type: "note", room: "r", seq: n + 1, epoch: "e"}));
    if (n === 0) socket.terminate(); // no close frame: 1006
    socket.on("message", (data) => {
      const m = JSON.parse(data.toString());
      if (m.type !== "resume") return;
      socket.send(JSON.stringify({type: "resumed", id: m.id, recovered: true, restored: true,
        session: `resumed-${n}`, lost: [], replayed: 0, positions: m.rooms}));
      if (n === 1) socket.close(1012); // a drain, after the answer
    });
  });
  const c = connect(url, {WebSocket, backoff: () => 20});
  await next(c, "reconnecting");
  c.send({type: "typed while away"});
  let resumed = 0;
  c.on("resumed", () => resumed++);
  await until(c, "resumed", () => resumed === 2);
  assert.equal(c.reconnects, 2);
  assert.deepEqual(seen[1][0], {type: "resume", id: seen[1][0].id, session: "token-0", rooms: {r: {seq: 1, epoch: "e"}}});
  assert.deepEqual(seen[1][1], {type: "typed while away"});
  assert.deepEqual(seen[2][0].session, "resumed-1", "the newest token: the resumed answer's");
  assert.deepEqual(seen[2][0].rooms, {r: {seq: 2, epoch: "e"}});
  c.close();
  stop();
});

test("never two live sockets, through flaps and a close during the backoff", async () => {
  let open = 0;
  let most = 0;
  const {url, stop} = await scripted((socket) => {
    most = Math.max(most, ++open);
    socket.on("close", () => open--);
    setImmediate(() => socket.terminate());
  });
  const c = connect(url, {WebSocket, backoff: () => 5});
  let attempts = 0;
  c.on("reconnecting", () => attempts++);
  await until(c, "reconnecting", () => attempts >= 20);
  assert.equal(most, 1);
  c.close();
  assert.equal(c.ws, null);
  stop();
});

test("close() while the token is being fetched opens nothing", async () => {
  let connections = 0;
  const {url, stop} = await scripted(() => connections++);
  let release;
  let asked;
  const tokenAsked = new Promise((resolve) => (asked = resolve));
  const token = () => {
    asked();
    return new Promise((answer) => (release = answer));
  };
  const c = connect(url, {WebSocket, token});
  await tokenAsked;
  const closed = next(c, "closed");
  c.close();
  release("late");
  assert.equal((await closed).code, 1000);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(c.ws, null);
  assert.equal(connections, 0);
  stop();
});

test("a request made while disconnected waits for the next socket, not for the next failure", async () => {
  const {url, stop} = await scripted((socket, n) => {
    if (n === 0) return socket.terminate();
    socket.on("message", (data) => {
      const m = JSON.parse(data.toString());
      socket.send(JSON.stringify({type: "pong", id: m.id}));
    });
  });
  const c = connect(url, {WebSocket, backoff: () => 30});
  await next(c, "reconnecting");
  const reply = await c.request({type: "ping"});
  assert.equal(reply.type, "pong");
  c.close();
  stop();
});

test("a request that timed out while queued is not sent on the next socket", async () => {
  const {url, stop} = await scripted((socket, n) => {
    if (n === 0) return socket.terminate();
    const seen = frames(socket);
    socket.on("message", () => {
      if (seen.at(-1).type === "marker") socket.send(JSON.stringify({type: "got", frames: seen.map((m) => m.type)}));
    });
  });
  const c = connect(url, {WebSocket, backoff: () => 300});
  await next(c, "reconnecting");
  await assert.rejects(c.request({type: "late"}, {timeout: 20}), {code: "request_timeout"});
  c.send({type: "marker"});
  assert.deepEqual((await next(c, "got")).frames, ["marker"]);
  c.close();
  stop();
});

test("the backoff doubles to its bound, with jitter", () => {
  const options = {initial: 250, factor: 2, max: 5000, jitter: 0.5};
  for (const [n, full] of [[0, 250], [1, 500], [2, 1000], [4, 4000], [5, 5000], [30, 5000]]) {
    const delays = Array.from({length: 50}, () => backoffDelay(n, options));
    assert.ok(delays.every((d) => d >= full / 2 && d <= full), `attempt ${n}`);
    assert.ok(new Set(delays).size > 1, "jittered");
  }
  assert.equal(backoffDelay(3, {jitter: 0}), 2000);
});

test("a handler that throws breaks neither the client nor the other handlers", async () => {
  const {url, stop} = await scripted((socket) => {
    socket.on("message", (data) => socket.send(JSON.stringify({type: "pong", id: JSON.parse(data.toString()).id})));
  });
  const reported = [];
  globalThis.reportError = (error) => reported.push(error.message); // as browsers have it
  try {
    const c = connect(url, {WebSocket});
    const seen = [];
    c.on("pong", () => {
      throw new Error("from a handler");
    });
    c.on("pong", (m) => seen.push(m.type));
    c.on("*", () => {
      throw new Error("from another");
    });
    c.send({type: "ping"});
    assert.equal((await c.request({type: "ping"})).type, "pong");
    assert.deepEqual(seen, ["pong"]);
    assert.deepEqual(reported, ["from another", "from a handler", "from another"]);
    c.close();
  } finally {
    delete globalThis.reportError;
    stop();
  }
});

test("a URL the WebSocket refuses closes the client for good", async () => {
  const c = connect("not a url", {WebSocket});
  const closed = await next(c, "closed");
  assert.equal(closed.code, 1006);
  assert.match(closed.reason, /Invalid URL|SyntaxError/);
  await assert.rejects(c.request({type: "x"}), {code: "connection_lost"});
});
