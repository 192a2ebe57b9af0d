#!/usr/bin/env node
// Load generator for the many-rooms broadcast benchmark (redis_cluster_broadcast.py); loopback
// only, bounded in time. `npm install` in benchmarks/ first.
//
//   node rooms_load.js --urls ws://A/,ws://B/ [--rooms 100] [--members 10] [--messages 200] [--window 4]
//     chat protocol: in each room "room<r>", --members receivers round-robin over the URLs (so every
//     room has members on every node), and one sender (room r's on URL r % n) that says --messages
//     numbered messages "<r>:<k>", at most --window in flight (each "said" with its id).
//   --settle MS   after the joins, wait until no frame came for MS ms before saying
//   --sync        print READY on stderr once joined (and settled) and wait for a line on stdin;
//                 print DONE once delivered and wait for another before closing
//   --timeout S   stop waiting for deliveries S s after the first say (report what came)
//   --limit S     the hard time limit of the whole run (default 120 s)
// Prints one JSON line: deliveries_per_s, p50_ms, p99_ms, expected, delivered, missing,
// members_short/over (receivers that got fewer/more than --messages), out_of_order, foreign
// (messages of another room), other_frames (by type: room_lost and the like), join_s, elapsed_s.
'use strict';
const WebSocket = require('ws');
const { performance } = require('perf_hooks');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf('--' + name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const urls = (opt('urls') || '').split(',').filter(Boolean);
if (!urls.length || !urls.every((u) => /^ws:\/\/(127\.\d+\.\d+\.\d+|localhost)(:\d+)?\//.test(u))) {
  console.error('--urls with ws:// URLs on loopback is required');
  process.exit(2);
}
const hardLimit = setTimeout(() => { console.error('time limit reached'); process.exit(3); }, +opt('limit', 120) * 1000);
hardLimit.unref();

const rooms = +opt('rooms', 100), members = +opt('members', 10), messages = +opt('messages', 200);
const window = +opt('window', 4), settle = +opt('settle', 0), sync = argv.includes('--sync');
const timeout = opt('timeout');

function connect(u) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(u, { perMessageDeflate: false, skipUTF8Validation: true });
    ws.on('open', () => resolve(ws));
    ws.on('error', reject);
  });
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : 0;
}

let stdinLines = null;
function nextLine() {  // the next line on stdin (for --sync)
  if (stdinLines === null) {
    stdinLines = { queue: [], waiting: [] };
    require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
      const w = stdinLines.waiting.shift();
      if (w) w(line); else stdinLines.queue.push(line);
    });
  }
  if (stdinLines.queue.length) return Promise.resolve(stdinLines.queue.shift());
  return new Promise((r) => stdinLines.waiting.push(r));
}

// Join `ws` to `room` as `name`; every later frame goes to onFrame(frame).
function join(ws, room, name, onFrame) {
  return new Promise((resolve) => {
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'joined' && m.id === 'j') resolve();
      else onFrame(m);
    });
    ws.send(JSON.stringify({ type: 'join', id: 'j', room, name }));
  });
}

async function main() {
  const expected = rooms * members * messages;
  let delivered = 0, outOfOrder = 0, foreign = 0, lastFrame = performance.now();
  const otherFrames = {};
  const latencies = [];
  const sentAt = new Map();  // "<r>:<k>" -> when it was said
  const got = new Array(rooms * members).fill(0), last = new Array(rooms * members).fill(-1);
  let done;
  const allDelivered = new Promise((r) => { done = r; });
  const joinStart = performance.now();
  const receivers = [];
  for (let r = 0; r < rooms; r++) {  // room by room: a burst of thousands of handshakes helps no one
    const sockets = await Promise.all(Array.from({ length: members }, (_, k) => connect(urls[k % urls.length])));
    await Promise.all(sockets.map((ws, k) => {
      const i = r * members + k;
      return join(ws, 'room' + r, `m${r}-${k}`, (m) => {
        lastFrame = performance.now();
        if (m.type === 'member_joined' || m.type === 'session') return;  // later joins; a resume token
        if (m.type !== 'message') { otherFrames[m.type] = (otherFrames[m.type] || 0) + 1; return; }
        const [room, n] = m.text.split(':').map(Number);
        if (room !== r || m.room !== 'room' + r) { foreign++; return; }
        latencies.push(performance.now() - sentAt.get(m.text));
        got[i]++;
        if (n <= last[i]) outOfOrder++;
        last[i] = n;
        if (++delivered === expected) done();
      });
    }));
    receivers.push(...sockets);
  }
  const senders = await Promise.all(Array.from({ length: rooms }, (_, r) => connect(urls[r % urls.length])));
  const said = senders.map(() => ({ next: 0, inflight: 0 }));
  await Promise.all(senders.map((ws, r) => join(ws, 'room' + r, `s${r}`, (m) => {
    if (m.type === 'said') {
      said[r].inflight--;
      say(r);
    } else if (!['message', 'member_joined', 'session'].includes(m.type)) {
      otherFrames['sender_' + m.type] = (otherFrames['sender_' + m.type] || 0) + 1;  // an error, say
    }
  })));
  const joinSeconds = (performance.now() - joinStart) / 1000;
  while (settle && performance.now() - lastFrame < settle) await new Promise((r) => setTimeout(r, settle / 4));
  if (sync) { process.stderr.write('READY\n'); await nextLine(); }
  function say(r) {
    const s = said[r];
    while (s.inflight < window && s.next < messages) {
      const text = `${r}:${s.next}`;
      sentAt.set(text, performance.now());
      senders[r].send(JSON.stringify({ type: 'say', id: s.next, room: 'room' + r, text }));
      s.next++; s.inflight++;
    }
  }
  const t0 = performance.now();
  for (let r = 0; r < rooms; r++) say(r);
  if (timeout !== undefined) {
    await Promise.race([allDelivered, new Promise((r) => setTimeout(r, +timeout * 1000))]);
  } else {
    await allDelivered;
  }
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  if (sync) { process.stderr.write('DONE\n'); await nextLine(); }
  for (const ws of [...receivers, ...senders]) ws.terminate();
  return {
    scenario: 'rooms', rooms, members, messages, window, urls: urls.length,
    deliveries_per_s: Math.round(delivered / elapsed),
    p50_ms: +percentile(latencies, 0.5).toFixed(3), p99_ms: +percentile(latencies, 0.99).toFixed(3),
    expected, delivered, missing: expected - delivered,
    members_short: got.filter((n) => n < messages).length, members_over: got.filter((n) => n > messages).length,
    out_of_order: outOfOrder, foreign, other_frames: otherFrames,
    join_s: +joinSeconds.toFixed(3), elapsed_s: +elapsed.toFixed(3),
  };
}

main()
  .then((result) => { console.log(JSON.stringify(result)); process.exit(0); })
  .catch((error) => { console.error(error); process.exit(1); });
