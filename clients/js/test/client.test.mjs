// The library against the real server: tests/client/test_js_client.py serves
// tests/support/js_app.py and runs these with WSA_URL and WSA_SHORT_URL.
import assert from "node:assert/strict";
import {describe, test} from "node:test";
import {RequestError} from "../src/client.js";
import {MAIN_URL, SHORT_URL, client, next, room, skipWithoutServer, until} from "./helpers.mjs";

describe("against the server", {skip: skipWithoutServer}, () => {
  test("request and reply, matched by id", async () => {
    const c = client(MAIN_URL);
    const opened = next(c, "open");
    const reply = await c.request({type: "echo", value: 7});
    assert.equal(reply.type, "echoed");
    assert.equal(reply.value, 7);
    assert.equal(typeof reply.id, "number");
    assert.deepEqual(await opened, {reconnects: 0});
    assert.ok(c.session, "the server's session token is kept");
    c.close();
  });

  test("a typed error carries the server's code, detail and errors", async () => {
    const c = client(MAIN_URL);
    await assert.rejects(c.request({type: "fail"}), (error) => {
      assert.ok(error instanceof RequestError);
      assert.equal(error.code, "refused");
      assert.equal(error.detail, "as asked");
      assert.deepEqual(error.errors, [{loc: ["value"], msg: "not today"}]);
      assert.equal(error.reply.type, "error");
      return true;
    });
    await assert.rejects(c.request({type: "echo", value: "seven"}), (error) => {
      assert.ok(error.code && error.code !== "refused");
      assert.ok(error.errors.length > 0, "a validation error lists what is wrong");
      return true;
    });
    c.close();
  });

  test("a request times out, and a lost connection rejects with another code", async () => {
    const c = client(MAIN_URL, {requestTimeout: 150});
    await assert.rejects(c.request({type: "silent"}), {name: "RequestError", code: "request_timeout"});
    assert.equal((await c.request({type: "echo", value: 1})).value, 1, "the client goes on");
    const lost = c.request({type: "silent"}, {timeout: 5000});
    c.send({type: "cut"});
    await assert.rejects(lost, {code: "connection_lost"});
    await next(c, "resumed");
    c.close();
  });

  test("a thousand requests in flight, each matched to its reply", async () => {
    const c = client(MAIN_URL);
    const values = Array.from({length: 1000}, (_, i) => i);
    const replies = await Promise.all(values.map((value) => c.request({type: "echo", value})));
    assert.deepEqual(replies.map((reply) => reply.value), values);
    assert.equal(new Set(replies.map((reply) => reply.id)).size, 1000);
    c.close();
  });

  test("the server cuts the connection while 50 messages are sent: each arrives once, in order", async () => {
    const r = room();
    const reader = client(MAIN_URL, {backoff: () => 300}); // a gap the writer posts into
    const writer = client(MAIN_URL);
    const texts = [];
    reader.on("note", (note) => texts.push(note.text));
    const events = [];
    for (const type of ["reconnecting", "resumed", "reset"]) reader.on(type, () => events.push(type));
    await reader.request({type: "join", room: r});
    await writer.request({type: "join", room: r});
    const resumed = next(reader, "resumed");
    for (let i = 1; i <= 50; i++) {
      await writer.request({type: "post", room: r, text: String(i)});
      if (i === 20) reader.send({type: "cut"});
    }
    const answer = await resumed;
    assert.equal(answer.recovered, true);
    assert.equal(answer.restored, true);
    assert.ok(answer.replayed > 0, "the messages of the gap were replayed");
    await writer.request({type: "post", room: r, text: "end"});
    await until(reader, "note", () => texts.at(-1) === "end");
    assert.deepEqual(texts, [...Array.from({length: 50}, (_, i) => String(i + 1)), "end"]);
    assert.deepEqual(events, ["reconnecting", "resumed"]);
    assert.equal(reader.reconnects, 1);
    assert.equal(reader.positions[r].seq, 51);
    reader.close();
    writer.close();
  });

  test("what is sent while disconnected goes out after the resume, and the token is asked again", async () => {
    const r = room();
    let asked = 0;
    const name = `token-${process.pid}`;
    const c = client(MAIN_URL, {token: async () => (asked++, name), backoff: () => 100});
    await c.request({type: "join", room: r});
    const first = c.session;
    c.send({type: "cut"});
    await next(c, "reconnecting");
    const posted = c.request({type: "post", room: r, text: "queued"});
    const note = next(c, "note");
    await posted;
    assert.equal((await note).text, "queued");
    assert.equal(asked, 2, "the token function runs before every connection");
    assert.notEqual(c.session, first, "the resumed session's next token");
    c.close();
  });

  test("an expired session emits reset, and the client goes on", async () => {
    const r = room();
    const c = client(SHORT_URL, {backoff: () => 1200}); // past the 0.5 s window
    await c.request({type: "join", room: r});
    await c.request({type: "post", room: r, text: "before"});
    assert.ok(c.positions[r]);
    const before = c.session;
    let resumed = false;
    c.on("resumed", () => (resumed = true));
    const reset = next(c, "reset");
    c.send({type: "cut"});
    const answer = await reset;
    assert.equal(answer.restored, false);
    assert.deepEqual(answer.lost, [r]);
    assert.equal(resumed, false);
    assert.deepEqual(c.positions, {});
    assert.notEqual(c.session, before);
    await assert.rejects(c.request({type: "post", room: r, text: "x"}), {code: "not_in_room"});
    await c.request({type: "join", room: r}); // the rejoin a page does on reset
    await c.request({type: "post", room: r, text: "after"});
    c.close();
  });

  for (const [how, message, code] of [
    ["a policy close", {type: "bye", code: 1008}, 1008],
    ["disconnect_user", {type: "kick"}, 4000],
    ["a normal close by the server", {type: "bye", code: 1000}, 1000],
  ]) {
    test(`${how} (${code}) is final: no reconnect`, async () => {
      const c = client(MAIN_URL);
      let reconnecting = 0;
      c.on("reconnecting", () => reconnecting++);
      await c.request({type: "echo", value: 1});
      const closed = next(c, "closed");
      const pending = c.request({type: "silent"});
      c.send(message);
      assert.equal((await closed).code, code);
      await assert.rejects(pending, {code: "connection_lost"});
      await assert.rejects(c.request({type: "echo", value: 2}), {code: "connection_lost"});
      assert.throws(() => c.send({type: "echo", value: 3}), {code: "connection_lost"});
      assert.equal(reconnecting, 0);
      assert.equal(c.ws, null);
    });
  }

  test("close() is final", async () => {
    const c = client(MAIN_URL);
    await c.request({type: "echo", value: 1});
    let reconnecting = 0;
    c.on("reconnecting", () => reconnecting++);
    const closed = next(c, "closed");
    c.close(1000);
    assert.deepEqual(await closed, {code: 1000, reason: ""});
    assert.equal(reconnecting, 0);
    assert.equal(c.ws, null);
  });
});
