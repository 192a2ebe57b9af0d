#!/usr/bin/env node
// Load generator for the typed-path benchmark (loopback only, bounded in time).
//
//   node typed_load.js echo --url ws://127.0.0.1:PORT/ --mode typed|raw [--conns 100] [--window 16] [--duration 5]
//     typed: sends {"type":"echo","id":N,"text":<32 x>} and waits for the reply carrying id N
//     raw:   sends 32 bytes of text and waits for the same text back
//   node typed_load.js broadcast --url ws://127.0.0.1:PORT/ [--conns 1000] [--messages 200] [--window 8]
//     chat protocol: N receivers join room "bench"; one sender says M messages (at most W in flight,
//     each "said" with its id); reports receiver deliveries per second.
//   broadcast options for several server processes (each absent: the behaviour and output above):
//     --urls ws://A/,ws://B/  receivers round-robin over these URLs (instead of --url)
//     --sender-url ws://A/    the sender's URL (default: the first of --urls, or --url)
//     --idle-url U --idle-conns K [--idle-room R]  K more connections join room R ("elsewhere")
//                             on U before the receivers; the "message" frames they get are counted
//     --settle MS             after every join, wait until no frame came for MS ms before saying
//     --sync                  print READY on stderr once joined (and settled) and wait for a line on
//                             stdin; print DONE once delivered and wait for another before closing
//     --timeout S             stop waiting for deliveries S s after the first say (report what came)
//     --limit S               the hard time limit of the whole run (default 120 s)
//     --external              no sender: the M messages ("m0".."m<M-1>", `ts` their wall-clock send
//                             time in seconds) come from elsewhere (an Emitter); needs --sync
//   with any of them the JSON also has: expected, delivered, missing, members_short/over (receivers
//   that got fewer/more than M messages), out_of_order, idle_conns, idle_messages, join_s, elapsed_s.
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
const urls = opt('urls') !== undefined ? opt('urls').split(',') : [url];
const loopback = (u) => /^ws:\/\/(127\.\d+\.\d+\.\d+|localhost)(:\d+)?\//.test(u || '');
if (![...urls, opt('sender-url', urls[0]), opt('idle-url', urls[0])].every(loopback)) {
  console.error('a ws:// URL on loopback is required');
  process.exit(2);
}
const hardLimit = setTimeout(() => { console.error('time limit reached'); process.exit(3); }, +opt('limit', 120) * 1000);
hardLimit.unref();

function open(n, urlOf = () => url) {
  return Promise.all(Array.from({ length: n }, (_, k) => new Promise((resolve, reject) => {
    const ws = new WebSocket(urlOf(k), { perMessageDeflate: false, skipUTF8Validation: true });
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

async function joinAll(sockets, room, prefix, onMessage) {
  await Promise.all(sockets.map((ws, i) => new Promise((resolve) => {
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'joined') resolve();
      else onMessage(m, i);
    });
    ws.send(JSON.stringify({ type: 'join', id: i, room, name: prefix + i }));
  })));
}

async function broadcast() {
  const conns = +opt('conns', 1000), messages = +opt('messages', 200), window = +opt('window', 8);
  const external = argv.includes('--external');
  const extended = ['urls', 'sender-url', 'idle-url', 'settle', 'sync', 'timeout', 'limit', 'external']
    .some((name) => argv.includes('--' + name));
  const senderUrl = opt('sender-url', urls[0]);
  const settle = +opt('settle', 0), sync = argv.includes('--sync'), timeout = opt('timeout');
  let lastFrame = performance.now();
  let idle = [], idleMessages = 0;
  const joinStart = performance.now();
  const idleConns = opt('idle-url') !== undefined ? +opt('idle-conns', 1) : 0;
  if (idleConns) {
    idle = await open(idleConns, () => opt('idle-url'));
    await joinAll(idle, opt('idle-room', 'elsewhere'), 'idle', (m) => {
      lastFrame = performance.now();
      if (m.type === 'message') idleMessages++;
    });
  }
  const receivers = [];
  for (let i = 0; i < conns; i += 100) {
    receivers.push(...await open(Math.min(100, conns - i), (k) => urls[(i + k) % urls.length]));
  }
  let delivered = 0, outOfOrder = 0;
  const latencies = [];
  const sentAt = new Map();
  const got = new Array(conns).fill(0), last = new Array(conns).fill(-1);
  let done;
  const allDelivered = new Promise((r) => { done = r; });
  await Promise.all(receivers.map((ws, i) => new Promise((resolve) => {
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (extended) lastFrame = performance.now();
      if (m.type === 'joined') resolve();
      else if (m.type === 'message') {
        latencies.push(external ? Date.now() - m.ts * 1000 : performance.now() - sentAt.get(m.text));
        if (extended) {
          got[i]++;
          const n = +m.text.slice(1);
          if (n <= last[i]) outOfOrder++;
          last[i] = n;
        }
        if (++delivered === conns * messages) done();
      }
    });
    ws.send(JSON.stringify({ type: 'join', id: i, room: 'bench', name: 'r' + i }));
  })));
  const [sender] = external ? [null] : await open(1, () => senderUrl);
  if (!external) {
    await new Promise((resolve) => {
      sender.on('message', (data) => { if (JSON.parse(data).type === 'joined') resolve(); });
      sender.send(JSON.stringify({ type: 'join', id: 'j', room: 'bench', name: 'sender' }));
    });
  }
  const joinSeconds = (performance.now() - joinStart) / 1000;
  while (settle && performance.now() - lastFrame < settle) await new Promise((r) => setTimeout(r, settle / 4));
  if (sync) { process.stderr.write('READY\n'); await nextLine(); }
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
  if (!external) {
    sender.on('message', (data) => { if (JSON.parse(data).type === 'said') { inflight--; say(); } });
    say();
  }
  if (timeout !== undefined) {
    await Promise.race([allDelivered, new Promise((r) => setTimeout(r, +timeout * 1000))]);
  } else {
    await allDelivered;
  }
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  if (sync) { process.stderr.write('DONE\n'); await nextLine(); }
  for (const ws of [...idle, ...receivers, ...(sender ? [sender] : [])]) ws.terminate();
  const result = { scenario: 'broadcast', conns, messages, deliveries_per_s: Math.round(delivered / elapsed),
                   p50_ms: +percentile(latencies, 0.5).toFixed(3), p99_ms: +percentile(latencies, 0.99).toFixed(3) };
  if (!extended) return result;
  return { ...result, urls: urls.length, expected: conns * messages, delivered, missing: conns * messages - delivered,
           members_short: got.filter((n) => n < messages).length, members_over: got.filter((n) => n > messages).length,
           out_of_order: outOfOrder, idle_conns: idleConns, idle_messages: idleMessages,
           join_s: +joinSeconds.toFixed(3), elapsed_s: +elapsed.toFixed(3) };
}

(scenario === 'echo' ? echo() : scenario === 'broadcast' ? broadcast() : Promise.reject(new Error('scenario?')))
  .then((result) => { console.log(JSON.stringify(result)); process.exit(0); })
  .catch((error) => { console.error(error); process.exit(1); });
