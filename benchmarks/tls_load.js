#!/usr/bin/env node
// Load generator for benchmarks/tls_cost.py: the bench protocol over ws:// or wss:// (loopback only,
// bounded in time).
//
//   node tls_load.js echo --url URL [--conns 100] [--window 1] [--size 32] [--binary] [--duration 3]
//     each connection keeps W messages of S bytes in flight and checks each echo's length;
//     reports messages/s and payload MB/s (one direction, 10^6 bytes) after a 0.5 s warm-up.
//   node tls_load.js broadcast --url URL [--conns 1000] [--messages 200] [--window 8]
//     N receivers connect, then one sender sends M "broadcast:m<i>" messages, at most W in flight
//     (one is done when the sender gets its own copy back); reports receiver deliveries/s.
//   node tls_load.js idle --url URL [--conns 5000] [--hold 30]
//     opens N connections (200 handshakes at a time), prints {"opened": N, ...} and holds them
//     until stdin closes (or --hold seconds), then closes them and prints the final line.
//
// wss:// checks the server certificate against --ca FILE (PEM); without --ca it is not checked.
// Prints one JSON line (idle: two); echo and broadcast print "window start" and "window end" first,
// on lines of their own, so that a caller can read the server's CPU time over the measured window.
'use strict';
const fs = require('fs');
const WebSocket = require('ws');
const { performance } = require('perf_hooks');

const argv = process.argv.slice(2);
const scenario = argv[0];
const opt = (name, dflt) => {
  const i = argv.indexOf('--' + name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const flag = (name) => argv.includes('--' + name);
const url = opt('url');
if (!/^wss?:\/\/(127\.\d+\.\d+\.\d+|localhost)(:\d+)?\//.test(url || '')) {
  console.error('a ws:// or wss:// URL on loopback is required');
  process.exit(2);
}
const hardLimit = setTimeout(() => { console.error('time limit reached'); process.exit(3); }, +opt('max-time', 120) * 1000);
hardLimit.unref();

const options = { perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 64 << 20 };
if (url.startsWith('wss:')) {
  const ca = opt('ca');
  if (ca) options.ca = fs.readFileSync(ca);
  else options.rejectUnauthorized = false;
}

// CPU use of this process since `start` (from process.cpuUsage()), over `seconds` of wall time.
const cpuSince = (start, seconds) => {
  const used = process.cpuUsage(start);
  return +((used.user + used.system) / 1e6 / seconds).toFixed(2);
};

function openOne() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

async function open(n, batch = 200) {
  const sockets = [];
  for (let i = 0; i < n; i += batch) {
    sockets.push(...await Promise.all(Array.from({ length: Math.min(batch, n - i) }, openOne)));
  }
  return sockets;
}

async function echo() {
  const conns = +opt('conns', 100), window = +opt('window', 1), duration = +opt('duration', 3);
  const size = +opt('size', 32), binary = flag('binary');
  const payload = binary ? Buffer.alloc(size, 1) : 'x'.repeat(size);
  const sockets = await open(conns);
  let counting = false, count = 0;
  for (const ws of sockets) {
    ws.on('message', (data) => {
      if (data.length !== size) throw new Error('unexpected echo of ' + data.length + ' bytes');
      if (counting) count++;
      ws.send(payload);
    });
    for (let i = 0; i < window; i++) ws.send(payload);
  }
  await new Promise((r) => setTimeout(r, 500));  // warm-up
  console.log('window start');
  counting = true;
  const t0 = performance.now(), cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, duration * 1000));
  counting = false;
  const elapsed = (performance.now() - t0) / 1000;
  console.log('window end');
  const clientCpu = cpuSince(cpu0, elapsed);
  for (const ws of sockets) ws.terminate();
  return { scenario: 'echo', conns, window, size, msgs_per_s: Math.round(count / elapsed),
           mb_per_s: +(count * size / elapsed / 1e6).toFixed(2), client_cpu: clientCpu };
}

async function broadcast() {
  const conns = +opt('conns', 1000), messages = +opt('messages', 200), window = +opt('window', 8);
  const receivers = await open(conns);
  let delivered = 0, done;
  const allDelivered = new Promise((r) => { done = r; });
  for (const ws of receivers) {
    ws.on('message', () => { if (++delivered === conns * messages) done(); });
  }
  const [sender] = await open(1);
  let next = 0, inflight = 0;
  const say = () => {
    while (inflight < window && next < messages) {
      sender.send('broadcast:m' + next);
      next++; inflight++;
    }
  };
  sender.on('message', () => { inflight--; say(); });
  console.log('window start');
  const t0 = performance.now(), cpu0 = process.cpuUsage();
  say();
  await allDelivered;
  const elapsed = (performance.now() - t0) / 1000;
  console.log('window end');
  const clientCpu = cpuSince(cpu0, elapsed);
  for (const ws of [...receivers, sender]) ws.terminate();
  return { scenario: 'broadcast', conns, messages, window, deliveries_per_s: Math.round(delivered / elapsed),
           client_cpu: clientCpu };
}

async function idle() {
  const conns = +opt('conns', 5000), hold = +opt('hold', 30);
  const t0 = performance.now();
  const sockets = await open(conns);
  const openS = (performance.now() - t0) / 1000;
  let closed = 0;
  for (const ws of sockets) ws.on('close', () => { closed++; });
  console.log(JSON.stringify({ opened: sockets.length, open_s: +openS.toFixed(2) }));
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, hold * 1000);
    process.stdin.on('data', () => {});
    process.stdin.on('end', () => { clearTimeout(timer); resolve(); });
    process.stdin.resume();
  });
  const closedByServer = closed;
  for (const ws of sockets) ws.terminate();
  return { scenario: 'idle', conns, open_s: +openS.toFixed(2), closed_by_server: closedByServer };
}

const scenarios = { echo, broadcast, idle };
(scenarios[scenario] ? scenarios[scenario]() : Promise.reject(new Error('scenario?')))
  .then((result) => { console.log(JSON.stringify(result)); process.exit(0); })
  .catch((error) => { console.error(error); process.exit(1); });
