"""What one client connection costs: memory per open connection, and CPU per round trip.

    .venv/bin/python benchmarks/scale_client_cost.py [--conns 5000] [--round-trips 100000]

An echo server (`examples.echo`) runs in a subprocess on CPU 0; this process, on CPU 1 and not
monkey-patched, opens --conns connections with `websock_actors.client.connect` and reports:
- KiB of RSS per open, idle connection (the kernel's socket buffers are not in RSS);
- the same with one extra greenlet per connection parked in `recv` (the design the client
  avoids: a reader greenlet per connection);
- CPU microseconds in this process per round trip (`send` + `recv` of a 32-byte text), with
  100 greenlets each driving its own connection, and per `request` through the typed path
  (the chat server, `say` answered by `said` after the sender's own `message` push).
Loopback only; bounded by --conns and --round-trips; the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import gevent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.ports import wait_for_port  # noqa: E402
from benchmarks.harness.processes import pinned, raise_fd_limit, stop_process  # noqa: E402
from benchmarks.harness.procstat import own_cpu_seconds, rss_kib  # noqa: E402
from websock_actors.client import ClientConnection, connect  # noqa: E402


def start_server(app: str, port: int, conns: int) -> subprocess.Popen[bytes]:
    options = ["--port", str(port), "--no-patch", "--max-connections", str(conns + 100)]
    options += ["--log-level", "WARNING", "--rate-limit-per", "connection"]  # its clients share one address
    command = pinned(0, [sys.executable, "-m", "websock_actors", "run", app, *options])
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if (why := wait_for_port(port, 20, poll=0.1, connect_timeout=1)) is not None:
        server.kill()
        raise RuntimeError(why)
    return server


def echo_round_trips(conns: list[ClientConnection], total: int) -> float:
    per = total // len(conns)

    def drive(ws: ClientConnection) -> None:
        for _ in range(per):
            ws.send("0123456789abcdef0123456789abcdef")
            ws.recv(timeout=10)

    start = own_cpu_seconds()
    gevent.joinall([gevent.spawn(drive, ws) for ws in conns], raise_error=True)
    return (own_cpu_seconds() - start) / (per * len(conns)) * 1e6


def chat_requests(conns: list[ClientConnection], total: int) -> float:
    per = total // len(conns)

    def drive(n: int, ws: ClientConnection) -> None:
        ws.request({"type": "join", "room": f"room-{n}", "name": f"user-{n}"})
        for _ in range(per):
            ws.request({"type": "say", "room": f"room-{n}", "text": "hello"})

    start = own_cpu_seconds()
    gevent.joinall([gevent.spawn(drive, n, ws) for n, ws in enumerate(conns)], raise_error=True)
    return (own_cpu_seconds() - start) / (per * len(conns)) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conns", type=int, default=5000)
    parser.add_argument("--round-trips", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=18970)
    args = parser.parse_args()
    raise_fd_limit(args.conns + 1000)
    os.sched_setaffinity(0, {1})

    server = start_server("examples.echo:app", args.port, args.conns)
    try:
        url = f"ws://127.0.0.1:{args.port}/"
        warm = [connect(url, max_queue=16) for _ in range(50)]  # imports, first allocations
        base = rss_kib("self")
        conns = [connect(url, max_queue=16) for _ in range(args.conns)]
        per_conn = (rss_kib("self") - base) / args.conns
        readers = [gevent.spawn(ws.recv) for ws in conns]
        gevent.idle()  # every reader is parked in its recv
        per_reader = (rss_kib("self") - base) / args.conns - per_conn
        gevent.killall(readers)
        echo_us = echo_round_trips(conns[:100], args.round_trips)
        for ws in warm + conns:
            ws.close()
    finally:
        stop_process(server, 30)

    server = start_server("examples.chat:app", args.port, 200)
    try:
        conns = [connect(url, max_queue=0) for _ in range(100)]
        request_us = chat_requests(conns, args.round_trips // 2)
        for ws in conns:
            ws.close()
    finally:
        stop_process(server, 30)

    print(f"{args.conns} open client connections: {per_conn:.1f} KiB of RSS each")
    print(f"a reader greenlet parked in recv on each would add {per_reader:.1f} KiB each")
    print(f"echo round trip (send + recv), 100 connections busy: {echo_us:.1f} us of client CPU")
    print(f"chat request (say -> push + said), 100 connections busy: {request_us:.1f} us of client CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
