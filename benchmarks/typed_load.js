#!/usr/bin/env node
// Load generator for the typed-path benchmark (loopback only, bounded in time).
//
//   node typed_load.js echo --url ws://127.0.0.1:PORT/ --mode typed|raw [--conns 100] [--window 16] [--duration 5]
//     typed: sends {"type":"echo","id":N,"text":<32 x>} and waits for the reply carrying id N
//     raw:   sends 32 bytes of text and waits for the same text back
//   node typed_load.js broadcast --url ws://127.0.0.1:PORT/ [--conns 1000] [--messages 200] [--window 8]
//     chat protocol: N receivers join room "bench"; one sender says M messages (at most W in flight,
//     each "said" with its id); reports receiver deliveries per second.
// Prints one JSON line.
'use strict';
const WebSocket = require('ws');
const { performance } = require('perf_hooks');

const argv = process.argv.slice(2);
const scenario = argv[0];
const opt = (name, dflt) => {
  const i = argv.indexOf('--' + name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const url = opt('url');
if (!/^ws:\/\/(127\.\d+\.\d+\.\d+|localhost)(:\d+)?\//.test(url || '')) {
  console.error('a ws:// URL on loopback is required');
  process.exit(2);
}
const hardLimit = setTimeout(() => { console.error('time limit reached'); process.exit(3); }, 120000);
hardLimit.unref();

function open(n) {
  return Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  })));
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : 0;
}

async function echo() {
  const conns = +opt('conns', 100), window = +opt('window', 16), duration = +opt('duration', 5);
  const typed = opt('mode', 'typed') === 'typed';
  const text = 'x'.repeat(32);
  const sockets = await open(conns);
  let counting = false, count = 0, nextId = 0;
  const latencies = [];
  for (const ws of sockets) {
    const pending = [];  // [id, sent at] in order: replies come back in order per connection
    const fire = () => {
      const id = nextId++;
      pending.push([id, performance.now()]);
      ws.send(typed ? `{"type":"echo","id":${id},"text":"${text}"}` : text);
    };
    ws.on('message', (data) => {
      const [id, started] = pending.shift();
      if (typed && JSON.parse(data).id !== id) throw new Error('unexpected reply ' + data);
      if (!typed && data.length !== text.length) throw new Error('unexpected echo');
      if (counting) { count++; latencies.push(performance.now() - started); }
      fire();
    });
    for (let i = 0; i < window; i++) fire();
  }
  await new Promise((r) => setTimeout(r, 500));  // warm-up
  counting = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, duration * 1000));
  counting = false;
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  for (const ws of sockets) ws.terminate();
  return { scenario: 'echo', mode: typed ? 'typed' : 'raw', conns, window, msgs_per_s: Math.round(count / elapsed),
           p50_ms: +percentile(latencies, 0.5).toFixed(3), p99_ms: +percentile(latencies, 0.99).toFixed(3) };
}

async function broadcast() {
  const conns = +opt('conns', 1000), messages = +opt('messages', 200), window = +opt('window', 8);
  const receivers = [];
  for (let i = 0; i < conns; i += 100) receivers.push(...await open(Math.min(100, conns - i)));
  let delivered = 0;
  const latencies = [];
  const sentAt = new Map();
  let done;
  const allDelivered = new Promise((r) => { done = r; });
  await Promise.all(receivers.map((ws, i) => new Promise((resolve) => {
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'joined') resolve();
      else if (m.type === 'message') {
        latencies.push(performance.now() - sentAt.get(m.text));
        if (++delivered === conns * messages) done();
      }
    });
    ws.send(JSON.stringify({ type: 'join', id: i, room: 'bench', name: 'r' + i }));
  })));
  const [sender] = await open(1);
  await new Promise((resolve) => {
    sender.on('message', (data) => { if (JSON.parse(data).type === 'joined') resolve(); });
    sender.send(JSON.stringify({ type: 'join', id: 'j', room: 'bench', name: 'sender' }));
  });
  let next = 0, inflight = 0;
  const t0 = performance.now();
  const say = () => {
    while (inflight < window && next < messages) {
      const text = 'm' + next;
      sentAt.set(text, performance.now());
      sender.send(JSON.stringify({ type: 'say', id: next, room: 'bench', text }));
      next++; inflight++;
    }
  };
  sender.on('message', (data) => { if (JSON.parse(data).type === 'said') { inflight--; say(); } });
  say();
  await allDelivered;
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  for (const ws of [...receivers, sender]) ws.terminate();
  return { scenario: 'broadcast', conns, messages, deliveries_per_s: Math.round(delivered / elapsed),
           p50_ms: +percentile(latencies, 0.5).toFixed(3), p99_ms: +percentile(latencies, 0.99).toFixed(3) };
}

(scenario === 'echo' ? echo() : scenario === 'broadcast' ? broadcast() : Promise.reject(new Error('scenario?')))
  .then((result) => { console.log(JSON.stringify(result)); process.exit(0); })
  .catch((error) => { console.error(error); process.exit(1); });
