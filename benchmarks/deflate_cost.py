"""What permessage-deflate costs the server in CPU, per echoed message, and saves on the wire.

Starts benchmarks/bench_app.py (with or without --compression) pinned to one CPU, opens C
connections that offer permessage-deflate like a browser, and echoes messages of a given
kind and size for a few seconds, one in flight per connection. Reports messages per
second, the server's CPU time per message (from /proc/PID/stat) and the bytes per message
on the wire in each direction.

    python benchmarks/deflate_cost.py --size 4096 --kind json             # compression off
    python benchmarks/deflate_cost.py --size 4096 --kind json --compression

Loopback only; bounded by --duration and --max-time; the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gevent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.ports import free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import pinned  # noqa: E402
from benchmarks.harness.procstat import cpu_seconds  # noqa: E402
from benchmarks.idle_rss import Client  # noqa: E402

PAYLOADS = {
    # chat-like JSON: repetitive keys, varied values
    "json": b"".join(
        b'{"type": "say", "id": %d, "room": "lobby", "user": "user%d", "text": "message number %d"}, '
        % (i, i % 97, i * 7919 % 100_003)
        for i in range(60_000)
    ),
    "random": os.urandom(2 << 20),  # incompressible
}


class CountingClient(Client):
    """A client that counts the bytes it sends and receives."""

    def __init__(self, port: int, offer: bool) -> None:
        super().__init__(port, offer)
        self.sent = 0
        self.received = 0

    def echo(self, payload: bytes) -> None:
        assert self.sock is not None and self.protocol is not None
        data = self.protocol.send_binary(payload)
        self.sent += len(data)
        self.sock.sendall(data)
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("closed before the echo")
            self.received += len(chunk)
            for event in self.protocol.receive_data(chunk):
                if getattr(event, "data", None) == payload:
                    return
                raise RuntimeError(f"unexpected {type(event).__name__}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--kind", choices=sorted(PAYLOADS), default="json")
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--compression", action="store_true", help="start bench_app with --compression")
    parser.add_argument("--cpu", default="0")
    parser.add_argument("--max-time", type=float, default=120.0)
    args = parser.parse_args()
    if not 1 <= args.size <= 2 << 20 or not 1 <= args.conns <= 1000 or not 0 < args.duration <= 60:
        parser.error("--size up to 2 MiB, --conns up to 1000, --duration up to 60 s")

    port = free_port()
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_app.py"), str(port)]
    if args.compression:
        command.append("--compression")
    command = pinned(args.cpu or None, command)
    proc = subprocess.Popen(command, cwd=ROOT)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("--max-time reached")))
    signal.alarm(int(args.max_time))
    clients: list[CountingClient] = []
    try:
        if (why := wait_for_port(port, 20, process=proc)) is not None:
            raise SystemExit(why)
        clients = [CountingClient(port, offer=True) for _ in range(args.conns)]
        for client in clients:
            client.open()
        data = PAYLOADS[args.kind]
        # Different messages per connection and per round (no caching helps anyone).
        payloads = [data[i * 997 % len(data) :][: args.size] for i in range(64)]
        payloads = [p if len(p) == args.size else data[: args.size] for p in payloads]
        counts = [0] * len(clients)
        deadline = [0.0]

        def loop(index: int) -> None:
            client = clients[index]
            while time.monotonic() < deadline[0]:
                client.echo(payloads[(index + counts[index]) % len(payloads)])
                counts[index] += 1

        deadline[0] = time.monotonic() + 0.5  # warm-up, not counted
        gevent.joinall([gevent.spawn(loop, i) for i in range(len(clients))], raise_error=True)
        counts = [0] * len(clients)
        for client in clients:
            client.sent = client.received = 0
        cpu_before = cpu_seconds(proc.pid)
        started = time.monotonic()
        deadline[0] = started + args.duration
        gevent.joinall([gevent.spawn(loop, i) for i in range(len(clients))], raise_error=True)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(proc.pid) - cpu_before
        total = sum(counts)
        result = {
            "compression": args.compression,
            "negotiated": sum(c.compressed for c in clients),
            "kind": args.kind,
            "size": args.size,
            "conns": args.conns,
            "msgs_per_s": round(total / elapsed),
            "server_cpu_us_per_msg": round(cpu / total * 1e6, 1),
            "server_cpu_share": round(cpu / elapsed, 2),
            "wire_bytes_in_per_msg": round(sum(c.sent for c in clients) / total),
            "wire_bytes_out_per_msg": round(sum(c.received for c in clients) / total),
        }
        print(json.dumps(result))
        return 0
    finally:
        signal.alarm(0)
        for client in clients:
            client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
