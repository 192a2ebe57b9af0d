// Shared by the Node tests: clients with the `ws` package, and waits on events (no sleeps).
import WebSocket from "ws";
import {connect} from "../src/client.js";

export const MAIN_URL = process.env.WSA_URL; // tests/support/js_app.py, window 120 s
export const SHORT_URL = process.env.WSA_SHORT_URL; // the same app, window 0.5 s
export const skipWithoutServer = MAIN_URL ? false : "run through tests/client/test_js_client.py (WSA_URL)";

let users = 0;

/** A client of `url` as a fresh user (its token), with a quick backoff unless given. */
export function client(url, options = {}) {
  const name = `user-${process.pid}-${++users}`;
  return connect(url, {WebSocket, token: name, backoff: {initial: 50, max: 400}, ...options});
}

/** The next `type` event or push of `c` (rejects after `timeout` ms). */
export function next(c, type, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} within ${timeout} ms`));
    }, timeout);
    const off = c.on(type, (value) => {
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Resolves once `check()` is true, checked after each `type` event of `c`. */
export function until(c, type, check, timeout = 5000) {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const timer = setTimeout(() => {
      off();
      reject(new Error(`condition not met within ${timeout} ms`));
    }, timeout);
    const off = c.on(type, () => {
      if (!check()) return;
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

export let rooms = 0;
export const room = () => `room-${process.pid}-${++rooms}`;
