#!/usr/bin/env node
// Load generator for the server API (loopback only, bounded in time).
//
//   node api_load.js --url http://127.0.0.1:PORT/_api/broadcast --key KEY --body JSON
//                    [--conns 1] [--duration 5] [--warmup 1]
//     --conns loops, each sending one POST at a time on its own keep-alive connection (an
//     http.Agent with keepAlive and maxSockets = conns); counts the answers of the measured
//     --duration after --warmup seconds.
// Prints one JSON line: requests/s, p50/p99 latency, answers by status, and how many TCP
// connections were opened in all (conns when every request reused its connection).
'use strict';
const http = require('http');
const { performance } = require('perf_hooks');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf('--' + name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const url = new URL(opt('url'));
const body = Buffer.from(opt('body', '{}'));
const conns = +opt('conns', 1), duration = +opt('duration', 5), warmup = +opt('warmup', 1);
const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
let opened = 0;
const headers = {
  'Authorization': 'Bearer ' + opt('key'), 'Content-Type': 'application/json', 'Content-Length': body.length,
};

function post() {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers },
      (answer) => { answer.resume(); answer.on('end', () => resolve(answer.statusCode)); });
    request.on('socket', (socket) => { if (!socket.counted) { socket.counted = true; opened++; } });
    request.on('error', reject);
    request.end(body);
  });
}

async function run() {
  const start = performance.now(), measureFrom = start + warmup * 1000, end = measureFrom + duration * 1000;
  const latencies = [], statuses = {};
  const loop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const status = await post();
      if (t0 >= measureFrom) {
        latencies.push(performance.now() - t0);
        statuses[status] = (statuses[status] || 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: conns }, loop));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (p) => latencies.length ? +latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))].toFixed(3) : null;
  return { conns, requests_per_s: Math.round(latencies.length / duration), p50_ms: at(0.5), p99_ms: at(0.99),
           statuses, connections_opened: opened };
}

const limit = setTimeout(() => { console.error('api_load: time limit'); process.exit(2); }, (duration + warmup + 30) * 1000);
run().then((result) => { clearTimeout(limit); console.log(JSON.stringify(result)); })
  .catch((error) => { console.error(error); process.exit(1); });
