"""Where an idle connection's memory goes, measured inside the server.

Starts a server (bench_app's raw echo, or `--app module:attr`) in a child process with
tracemalloc on, opens `--conns` idle connections to it (the client of `idle_rss.py`), then asks
the child (SIGUSR1) for its figures, per connection:

- `rss_kib`: the child's VmRSS growth (tracemalloc's own bookkeeping included, so higher
  than `idle_rss.py`'s figure, which runs without it);
- `traced`: what Python's allocator handed out since the server started listening, by the
  source line that allocated it (a parked greenlet's saved C stack shows on the line of the
  switch that parked it);
- `objects`: the Python objects one connection reaches that another does not (its own), by
  type, with `sys.getsizeof`;
- `greenlets`: live greenlets, and the bytes of C stack they keep saved. Not traced: the
  16 KiB block of frames CPython gives each started greenlet, of which a parked one keeps
  at least one page resident.

    python benchmarks/idle_breakdown.py --conns 2000
    python benchmarks/idle_breakdown.py --conns 2000 --app benchmarks.typed_echo_app:app
    python benchmarks/idle_breakdown.py --conns 2000 --compression --message   # after one echo

Loopback only, bounded in time; the child is stopped by its PID.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _reachable(root: Any, stop: set[int]) -> dict[int, Any]:
    """Objects reachable from `root` through gc referents, not crossing `stop` (shared ones)."""
    seen: dict[int, Any] = {}
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in stop or isinstance(obj, (type, type(sys))):
            continue
        if callable(obj) and not hasattr(obj, "__self__"):  # functions and classes: shared
            continue
        seen[id(obj)] = obj
        todo.extend(gc.get_referents(obj))
    return seen


def _own_objects(conns: list[Any], shared: list[Any]) -> dict[str, list[int]]:
    """Per type: count and bytes of the objects the first connection reaches and the second not."""
    stop = {id(obj) for obj in shared}
    first = _reachable(conns[0], stop | {id(conns[1])})
    second = _reachable(conns[1], stop | {id(conns[0])})
    table: dict[str, list[int]] = {}
    for key, obj in first.items():
        if key in second:
            continue
        row = table.setdefault(type(obj).__qualname__, [0, 0])
        row[0] += 1
        row[1] += sys.getsizeof(obj)
    return dict(sorted(table.items(), key=lambda item: -item[1][1]))


def serve(port: int, spec: str, compression: bool) -> None:
    """The child: serve, and on SIGUSR1 print the figures as one JSON line."""
    import gevent
    from greenlet import greenlet

    from benchmarks.bench_app import bench_server

    module, _, attr = spec.partition(":")
    app = getattr(importlib.import_module(module), attr)
    tracemalloc.start(1)
    server = bench_server(app, port, compression=compression)
    server.start()
    gevent.sleep(0.3)
    gc.collect()
    before = tracemalloc.take_snapshot()
    rss_before = _rss_kib()

    def report() -> None:
        gc.collect()
        conns = list(server.connections.values())
        count = len(conns) or 1
        after = tracemalloc.take_snapshot()
        traced = []
        total = 0
        for stat in after.compare_to(before, "lineno"):
            total += stat.size_diff
            if stat.size_diff >= 16 * count:
                frame = stat.traceback[0]
                where = f"{os.path.relpath(frame.filename, ROOT)}:{frame.lineno}"
                traced.append([where, round(stat.size_diff / count, 1), round(stat.count_diff / count, 2)])
        greenlets = [obj for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead]
        shared = [server, app, server.options, gevent.get_hub(), server._recv_buffer, server._compressors]
        result = {
            "conns": len(conns),
            "rss_kib": round((_rss_kib() - rss_before) / count, 2),
            "traced_bytes": round(total / count, 1),
            "traced": traced,
            "greenlets": len(greenlets),
            "greenlet_stack_saved_bytes": sum(g._stack_saved for g in greenlets),
            "objects": _own_objects(conns, shared) if len(conns) >= 2 else {},
        }
        print(json.dumps(result), flush=True)

    gevent.signal_handler(signal.SIGUSR1, lambda: gevent.spawn(report))
    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(server.stop, 1.0))
    server.serve_forever()


def _echo_text(client: Any) -> None:
    """One text message (a typed app's echo request, which bench_app echoes too) and its answer."""
    from websock_actors.protocol import BinaryMessage, TextMessage

    client.sock.sendall(client.protocol.send_text(json.dumps({"type": "echo", "text": "idle breakdown"})))
    while True:
        chunk = client.sock.recv(65536)
        if not chunk:
            raise EOFError("closed before the answer")
        events = client.protocol.receive_data(chunk)
        if any(isinstance(event, (TextMessage, BinaryMessage)) for event in events):
            return


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--app", default="benchmarks.bench_app:app")
    parser.add_argument("--compression", action="store_true")
    parser.add_argument("--no-offer", action="store_true", help="the client offers no extension")
    parser.add_argument("--message", action="store_true", help="one echo on each connection first")
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.app, args.compression)
        return 0
    if not 2 <= args.conns <= 10_000:
        parser.error("--conns must be between 2 and 10000")

    from benchmarks.harness.ports import free_port, wait_for_port
    from benchmarks.harness.processes import raise_fd_limit
    from benchmarks.idle_rss import Client, run_all

    raise_fd_limit(args.conns + 1000)
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port), "--app", args.app]
    if args.compression:
        command.append("--compression")
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    clients = [Client(port, offer=not args.no_offer) for _ in range(args.conns)]
    try:
        if (why := wait_for_port(port, 20, process=child)) is not None:
            raise SystemExit(why)
        time.sleep(0.5)
        failed = run_all(clients, Client.open, 200, 120)
        if args.message:
            failed += run_all(clients, _echo_text, 200, 120)
        time.sleep(args.hold)
        child.send_signal(signal.SIGUSR1)
        assert child.stdout is not None
        line = child.stdout.readline()
        result = json.loads(line)
        result["failed"] = failed
        print(json.dumps({key: value for key, value in result.items() if key not in ("traced", "objects")}))
        print("traced, bytes and blocks per connection, by the line that allocated them:")
        for where, size, blocks in result["traced"]:
            print(f"  {size:8.1f} {blocks:6.2f}  {where}")
        print("own objects of one connection, by type (count, bytes):")
        for name, (count, size) in result["objects"].items():
            print(f"  {size:6d} {count:4d}  {name}")
        return 0
    finally:
        for client in clients:
            client.close()
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


if __name__ == "__main__":
    sys.exit(main())
