// websock_actors' browser client: one ES module, no dependencies.
// Served by the server at /_wsa/client.js as it is written; clients/js (the npm package) links here.
//
//   import {connect} from "/_wsa/client.js";
//   const client = connect("ws://host/");
//   client.on("message", (m) => show(m));
//   const joined = await client.request({type: "join", room: "lobby", name: "ann"});
//
// It reconnects with a jittered backoff, resumes its session as the first frame of every new
// connection (with the last seq and epoch read of each room), drops a room message it already
// has, and matches replies to requests by id. See docs/howto/browser.md.

/** Close codes after which the client opens again: the transport was lost (1006), or the
 * server went away, failed, restarts or is overloaded. Any other close (1000, a policy or
 * auth refusal such as 1008, `disconnect_user`'s 4000, ...) is final: another try would
 * only repeat it. The same set as the Python client's RECONNECT_CODES. */
export const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012, 1013, 1014]);

/** A request that failed: `code` is the server's error code (its `detail` and `errors`
 * beside it, `reply` the whole error message), or "request_timeout" when no reply came in
 * time, or "connection_lost" when the connection closed before the reply. */
export class RequestError extends Error {
  constructor(code, detail, reply) {
    super(code + ": " + detail);
    this.name = "RequestError";
    this.code = code;
    this.detail = detail;
    this.errors = reply && reply.errors;
    this.reply = reply;
  }
}

/** The delay before reconnect attempt `n` (0, 1, ...): `initial` ms, times `factor` each
 * time, at most `max`, of which a random part up to `jitter` (0..1) is taken off, so that
 * clients dropped together do not come back together. */
export function backoffDelay(n, {initial = 250, factor = 2, max = 5000, jitter = 0.5} = {}) {
  const delay = Math.min(max, initial * factor ** n);
  return delay * (1 - jitter * Math.random());
}

/** Open a client on `url` (ws:// or wss://). Options: `resume` (default true: resume when
 * the server offers sessions), `token` (a string, or a function, maybe async, called before
 * every connection; sent as the `token` query parameter), `backoff` ({initial, factor, max,
 * jitter} or a function of the attempt number giving ms), `requestTimeout` (ms, 10000),
 * `WebSocket` (an implementation, such as the `ws` package in Node). */
export function connect(url, options = {}) {
  return new Client(url, options);
}

export class Client {
  constructor(url, options = {}) {
    this.url = url;
    this.options = options;
    this.session = null; // the newest session token the server gave
    this.positions = {}; // room -> {seq, epoch} of the last room message read
    this.reconnects = 0;
    this.ws = null; // the one socket, open or opening; null between sockets
    this._handlers = new Map(); // type -> Set of handlers
    this._pending = new Map(); // request id -> {resolve, reject, timer}
    this._queue = []; // frames written while no socket was open
    this._nextId = 1;
    this._attempt = 0;
    this._resumeId = null; // the id of the resume in flight
    this._own = null; // this connection's own session token (its `session` message)
    this._everOpen = false;
    this._final = null; // {code, reason} once closed for good
    this._timer = null;
    this._open();
  }

  /** Call `handler(message)` for each push of this `type` ("*": every message), or for a
   * lifecycle event: "open", "reconnecting", "resumed", "reset", "closed". Returns a
   * function that removes it. */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type).delete(handler);
  }

  /** Send `message` (an object, sent as JSON) now, or when the connection is back. */
  send(message) {
    if (this._final) throw new RequestError("connection_lost", "the client is closed");
    this._write(JSON.stringify(message));
  }

  /** Send `message` with a fresh id: a Promise of the reply carrying that id. It rejects
   * with a RequestError: the server's error, or "request_timeout" after `timeout` ms, or
   * "connection_lost" when the connection ends first (the reply would not come). */
  request(message, {timeout = this.options.requestTimeout ?? 10000} = {}) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      if (this._final) return reject(new RequestError("connection_lost", "the client is closed"));
      const timer = setTimeout(() => {
        this._pending.delete(id);
        this._queue = this._queue.filter((queued) => queued[1] !== request); // not sent late
        reject(new RequestError("request_timeout", "no reply within " + timeout + " ms"));
      }, timeout);
      const request = {resolve, reject, timer, sent: false};
      this._pending.set(id, request);
      this._write(JSON.stringify({...message, id}), request);
    });
  }

  /** Close for good with `code` (1000); no reconnect. The session ends on the server. */
  close(code = 1000, reason = "") {
    if (this._final) return;
    clearTimeout(this._timer);
    const ws = this.ws;
    this.ws = null;
    try {
      if (ws) ws.close(code, reason);
    } catch {
      ws.close(); // a code browsers refuse (only 1000 and 3000-4999 are allowed)
    }
    this._end(code, reason);
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === 1;
  }

  // A handler that throws is reported (reportError, else as an uncaught error) without
  // breaking the client or the other handlers.
  _emit(type, value) {
    for (const handler of this._handlers.get(type) || []) {
      try {
        handler(value);
      } catch (error) {
        if (globalThis.reportError) globalThis.reportError(error);
        else setTimeout(() => {
          throw error;
        });
      }
    }
  }

  // A request's frame, once on a socket, is answered there or not at all; one still queued
  // waits for the next socket (until its timeout).
  _write(frame, request = {}) {
    if (this.connected) {
      this.ws.send(frame);
      request.sent = true;
    } else {
      this._queue.push([frame, request]);
    }
  }

  async _open() {
    this._timer = null;
    await null; // from connect(): after the caller's code has added its handlers
    let url = this.url;
    let token = this.options.token;
    try {
      if (typeof token === "function") token = await token();
    } catch (error) {
      return this._retry(1006, "token: " + error);
    }
    if (this._final) return;
    if (token != null) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    const Impl = this.options.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      ws = this.ws = new Impl(url);
    } catch (error) {
      return this._end(1006, String(error)); // a bad URL: no try would do better
    }
    let openedAt = 0;
    ws.onerror = () => {}; // a failure is told by the close that follows
    ws.onopen = () => {
      openedAt = Date.now();
      this._own = null;
      const again = this._everOpen;
      this._everOpen = true;
      if (again) this.reconnects++;
      if (this.session && this.options.resume !== false) {
        this._resumeId = "resume-" + this._nextId++;
        ws.send(JSON.stringify({type: "resume", id: this._resumeId, session: this.session, rooms: this.positions}));
      } else if (again) {
        this._reset();
      }
      for (const [frame, request] of this._queue.splice(0)) this._write(frame, request);
      this._emit("open", {reconnects: this.reconnects});
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return; // an older socket, or closed by close()
      this.ws = null;
      // A connection that stayed up a while starts the backoff again; one closed at once
      // (an overloaded server accepting then closing) keeps climbing it.
      if (openedAt && Date.now() - openedAt > 5000) this._attempt = 0;
      this._retry(event.code, event.reason);
    };
    ws.onmessage = (event) => this._receive(event.data);
  }

  _retry(code, reason) {
    this._resumeId = null;
    for (const [id, request] of this._pending) {
      if (!request.sent) continue;
      clearTimeout(request.timer);
      request.reject(new RequestError("connection_lost", "closed with " + code + " before the reply"));
      this._pending.delete(id);
    }
    if (this._final) return;
    if (!RECONNECT_CODES.has(code)) return this._end(code, reason);
    const backoff = this.options.backoff;
    const n = this._attempt++;
    const delay = typeof backoff === "function" ? backoff(n) : backoffDelay(n, backoff);
    this._timer = setTimeout(() => this._open(), delay);
    this._emit("reconnecting", {attempt: this._attempt, delay, code, reason});
  }

  _end(code, reason) {
    this._final = {code, reason};
    this._queue.length = 0;
    for (const request of this._pending.values()) {
      clearTimeout(request.timer);
      request.reject(new RequestError("connection_lost", "closed with " + code));
    }
    this._pending.clear();
    this._emit("closed", {code, reason});
  }

  // The session could not be restored: the server's state for this client is fresh.
  _reset(reply) {
    this.positions = {};
    if (this._own) this.session = this._own;
    this._emit("reset", reply || {restored: false});
  }

  _receive(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return this._emit("*", data); // not JSON: as it came
    }
    if (m === null || typeof m !== "object") return this._emit("*", m);
    if (typeof m.seq === "number" && typeof m.room === "string") {
      const last = this.positions[m.room];
      if (last && last.epoch === m.epoch && m.seq <= last.seq) return; // a repeat
      this.positions[m.room] = {seq: m.seq, epoch: m.epoch};
    }
    this._emit("*", m);
    if (m.id !== undefined && m.id !== null && m.id === this._resumeId) return this._resumed(m);
    const request = m.id === undefined ? undefined : this._pending.get(m.id);
    if (request) {
      this._pending.delete(m.id);
      clearTimeout(request.timer);
      if (m.type === "error") request.reject(new RequestError(m.code, m.detail, m));
      else request.resolve(m);
    } else if (m.type === "session") {
      this._own = m.session;
      if (!this._resumeId) this.session = m.session; // resuming: the answer gives the token
    } else {
      this._emit(m.type, m);
    }
  }

  _resumed(m) {
    this._resumeId = null;
    if (m.type === "resumed" && m.restored) {
      this.session = m.session;
      // Where each room goes on (past a lost gap); never back before what was read.
      for (const [room, p] of Object.entries(m.positions || {})) {
        const last = this.positions[room];
        if (!last || last.epoch !== p.epoch || p.seq > last.seq) this.positions[room] = p;
      }
      this._emit("resumed", m);
    } else {
      // restored: false (an unknown or expired session), or refused (an error reply)
      if (m.type === "resumed") this._own = m.session;
      this._reset(m);
    }
  }
}
