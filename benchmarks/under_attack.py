"""Under attack: ping round trips of one well-behaved client while the chat server is abused.

    .venv/bin/python benchmarks/under_attack.py                      # 5,000 idle sockets, 30 s
    .venv/bin/python benchmarks/under_attack.py --duration 10 --idle 500

The server (`websock-actors run examples.chat:app --no-patch`, on CPU 0, its output in --log)
gets from this process:
1. --idle pre-handshake sockets, silent or half a request head (--reopen: opened again once
   closed);
2. one attacker sending worst-case invalid typed messages just under 1 MiB (--attack-size),
   --attack-inflight at a time: a list of `{}`, 200 long keys, nested `[`, a 1 MiB room name,
   a number of ~1 MiB digits;
3. one client pinging every --interval for --duration seconds.
Printed: the round trips (p50/p90/p99/max, overall and per 5 s), what became of the idle
sockets, the attacker's answers and the server's time per kind, its CPU, RSS and fds. Target
p99 < 50 ms; exit 0 unless something crashed. Bounded: duration + 60 s kills the server (by
PID) and exits 3. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
import traceback
from collections import Counter, deque
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.socket
import gevent.subprocess
from greenlet import GreenletExit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.chat_server import start_server, stop_server  # noqa: E402
from benchmarks.harness.logs import log_summary  # noqa: E402
from benchmarks.harness.ports import free_port  # noqa: E402
from benchmarks.harness.processes import raise_fd_limit  # noqa: E402
from benchmarks.harness.procstat import cpu_times, fd_count, status_kib  # noqa: E402
from benchmarks.harness.stats import nearest_rank as percentile  # noqa: E402
from websock_actors.client import ConnectionClosed, RemoteHandshakeRefusal, connect  # noqa: E402

OPEN_CONCURRENCY = 200  # idle sockets connecting at once
WINDOW = 5.0  # seconds per line of the round-trip series


# -- the attack --------------------------------------------------------------------------


def attack_payloads(size: int) -> dict[str, str]:
    """The attacker's messages, each `size` bytes or a little under; the `id` names the kind."""

    def fill(head: str, unit: str, tail: str) -> str:
        count = (size - len(head) - len(tail)) // len(unit)
        return head + unit * count + tail

    key_count = (size - 100) // 5010
    long_keys = ",".join(f'"{"k" * 4995}{i:05d}":0' for i in range(key_count))
    nest = (size - 80) // 2
    return {
        "list_of_empty_objects": fill("[", "{},", "{}]"),
        "say_list_100k": '{"type":"say","id":"say_list_100k","room":"lobby","text":['
        + ",".join(["{}"] * 100_000)
        + "]}",
        "say_5000_char_keys": '{"type":"say","id":"say_5000_char_keys","room":"lobby","text":"hi",'
        + long_keys
        + "}",
        "say_nested_lists": '{"type":"say","id":"say_nested_lists","room":"lobby","text":'
        + "[" * nest
        + "]" * nest
        + "}",
        "join_1mib_room": fill('{"type":"join","id":"join_1mib_room","name":"a","room":"', "x", '"}'),
        "say_1mib_number": fill('{"type":"say","id":"say_1mib_number","room":"lobby","text":', "9", "}"),
    }


class Attacker:
    def __init__(self, url: str, size: int, stop: gevent.event.Event) -> None:
        self.url = url
        self.stop = stop
        self.payloads = attack_payloads(size)
        self.kinds = list(self.payloads)
        self.turn = 0
        self.ws: Any = None
        self.ws_seen: Any = None
        self.lock = gevent.lock.Semaphore()
        self.sent: Counter[str] = Counter()
        self.bytes_sent = 0
        self.took: dict[str, list[float]] = {kind: [] for kind in self.kinds}
        self.in_flight: deque[str] = deque()  # kinds sent, oldest first: replies come in order
        self.replies: dict[str, Counter[str]] = {kind: Counter() for kind in self.kinds}
        self.reply_max: Counter[str] = Counter()
        self.mismatched = 0  # replies whose id is not the oldest message in flight
        self.closes: Counter[str] = Counter()
        self.connects = 0
        self.connect_failures: Counter[str] = Counter()
        self.timeouts = 0

    def on_push(self, message: str | bytes) -> None:
        try:
            reply = json.loads(message)
        except ValueError:
            reply = {}
        kind = self.in_flight.popleft() if self.in_flight else "?"
        message_id = reply.get("id")
        if message_id is not None and message_id != kind:
            self.mismatched += 1
        code = f"{reply.get('type')}/{reply.get('code')}" + (" (no id)" if message_id is None else "")
        self.replies.setdefault(kind, Counter())[code] += 1
        self.reply_max[kind] = max(self.reply_max[kind], len(message))

    def connection(self) -> Any:
        with self.lock:
            while self.ws is None or self.ws.closed:
                if self.stop.is_set():
                    return None
                try:
                    self.ws = connect(
                        self.url, open_timeout=10, close_timeout=2, max_queue=0, on_push=self.on_push
                    )
                    self.connects += 1
                except (OSError, TimeoutError, RemoteHandshakeRefusal) as exc:
                    self.connect_failures[type(exc).__name__] += 1
                    self.stop.wait(0.5)
            return self.ws

    def run(self) -> None:
        while not self.stop.is_set():
            ws = self.connection()
            if ws is None:
                return
            if ws is not self.ws_seen:  # a new connection: what was in flight is lost
                self.ws_seen = ws
                self.in_flight.clear()
            kind = self.kinds[self.turn % len(self.kinds)]
            self.turn += 1
            payload = self.payloads[kind]
            started = time.monotonic()
            try:
                self.in_flight.append(kind)  # before the write: the write lock keeps this order
                ws.send(payload)
                self.sent[kind] += 1
                self.bytes_sent += len(payload)
                ws.ping(timeout=30)  # its pong comes after the server has answered the message
                self.took[kind].append(time.monotonic() - started)
            except ConnectionClosed as exc:
                self.closes[f"{exc.code} after {kind}"] += 1
            except TimeoutError:
                self.timeouts += 1


# -- the idle sockets --------------------------------------------------------------------


class Idle:
    PARTIAL = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upg"

    def __init__(self, port: int, reopen: bool) -> None:
        self.port = port
        self.reopen = reopen
        self.gate = gevent.lock.Semaphore(OPEN_CONCURRENCY)
        self.attempted = 0
        self.connected = 0
        self.open = 0
        self.connect_failures: Counter[str] = Counter()
        self.closed_after: list[float] = []
        self.closed_how: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()

    def run(self, index: int, stop: gevent.event.Event) -> None:
        first = True
        while first or (self.reopen and not stop.is_set()):
            first = False
            sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                with self.gate:
                    self.attempted += 1
                    sock.settimeout(10)
                    try:
                        sock.connect(("127.0.0.1", self.port))
                        if index % 2:
                            sock.sendall(self.PARTIAL)
                    except OSError as exc:
                        self.connect_failures[type(exc).__name__] += 1
                        stop.wait(0.5)
                        continue
                self.connected += 1
                self.open += 1
                opened = time.monotonic()
                sock.settimeout(None)
                answer = b""
                try:
                    while True:
                        data = sock.recv(4096)
                        if not data:
                            how = "EOF"
                            break
                        answer += data
                except OSError as exc:
                    how = type(exc).__name__
                finally:
                    self.open -= 1
                self.closed_after.append(time.monotonic() - opened)
                self.closed_how[how] += 1
                if answer:
                    self.answers[answer.split(b"\r\n", 1)[0].decode(errors="replace")[:60]] += 1
            finally:
                sock.close()


# -- figures -----------------------------------------------------------------------------


def quantiles_ms(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "no samples"
    return " / ".join(f"{percentile(ordered, q) * 1000:.2f}" for q in (0.5, 0.9, 0.99)) + (
        f" / {ordered[-1] * 1000:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of pinging")
    parser.add_argument("--idle", type=int, default=5000, help="idle pre-handshake sockets")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between pings")
    parser.add_argument("--attack-inflight", type=int, default=2, help="attack messages in flight")
    parser.add_argument("--attack-size", type=int, default=1024 * 1024 - 64, help="bytes per attack message")
    parser.add_argument("--reopen", action="store_true", help="open a closed idle socket again at once")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--log", type=Path, default=Path("/tmp/websock_actors_under_attack/server.log"))
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra argument for `websock-actors run` (repeatable)")  # fmt: skip
    args = parser.parse_args()
    hard_limit = args.duration + 60
    started = time.monotonic()
    crashed: list[str] = []

    fd_limit = raise_fd_limit()
    if fd_limit < args.idle + 200:
        sys.exit(f"only {fd_limit} file descriptors allowed; {args.idle} idle sockets need more")
    port = args.port or free_port()
    url = f"ws://127.0.0.1:{port}/"
    args.log.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(port, args.server_arg, args.log, hard_limit)
    if server is None:
        return 1
    pid = server.pid
    stop = gevent.event.Event()

    def guarded(fn: Any, *fn_args: Any) -> None:
        try:
            fn(*fn_args)
        except GreenletExit:
            raise
        except Exception:
            crashed.append(traceback.format_exc())

    # 1. The idle sockets.
    idle = Idle(port, args.reopen)
    opening = time.monotonic()
    idlers = [gevent.spawn(guarded, idle.run, i, stop) for i in range(args.idle)]
    while idle.attempted < args.idle and time.monotonic() - opening < 20:
        gevent.sleep(0.1)
    while idle.connected + sum(idle.connect_failures.values()) < args.idle:
        if time.monotonic() - opening > 20:
            break
        gevent.sleep(0.1)
    print(f"idle sockets: {idle.connected} connected, {dict(idle.connect_failures) or 'none'} failed, in "
          f"{time.monotonic() - opening:.1f} s; server fds {fd_count(pid)}", flush=True)  # fmt: skip

    # 2 and 3. The attacker, then the pinger.
    attacker = Attacker(url, args.attack_size, stop)
    attackers = [gevent.spawn(guarded, attacker.run) for _ in range(args.attack_inflight)]
    gevent.sleep(0.5)
    rtts: list[tuple[float, float]] = []  # (t, round trip)
    ping_failures: Counter[str] = Counter()
    cpu_before = cpu_times(pid)
    measure_start = time.monotonic()
    try:
        ws = connect(url, open_timeout=10, close_timeout=5, max_queue=16)
    except (OSError, TimeoutError, RemoteHandshakeRefusal) as exc:
        crashed.append(f"the pinger could not connect: {exc!r}")
        ws = None
    if ws is not None:
        print(f"pinging every {args.interval * 1000:.0f} ms for {args.duration:.0f} s under attack "
              f"({args.attack_inflight} in flight)...", flush=True)  # fmt: skip
        end = time.monotonic() + args.duration
        next_ping = time.monotonic()
        while (now := time.monotonic()) < end:
            try:
                rtts.append((now - measure_start, ws.ping(timeout=5)))
            except TimeoutError:
                ping_failures["no pong in 5 s"] += 1
            except ConnectionClosed as exc:
                ping_failures[f"closed {exc.code}"] += 1
                try:
                    ws = connect(url, open_timeout=5, close_timeout=5, max_queue=16)
                except (OSError, TimeoutError, RemoteHandshakeRefusal) as exc2:
                    ping_failures[f"reconnect {type(exc2).__name__}"] += 1
            next_ping = max(next_ping + args.interval, time.monotonic())
            gevent.sleep(next_ping - time.monotonic())
    measured = time.monotonic() - measure_start
    cpu_after = cpu_times(pid)
    rss, peak, fds = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"), fd_count(pid)
    kept, closed = idle.open, len(idle.closed_after)

    # The end: stop the attack, let go of the idle sockets, stop the server.
    stop.set()
    gevent.joinall(attackers, timeout=35)
    gevent.killall([g for g in attackers if not g.dead], timeout=5)
    if attacker.ws is not None and not attacker.ws.closed:
        attacker.ws.abort()
    if ws is not None and not ws.closed:
        try:
            ws.close(timeout=5)
        except ConnectionClosed:
            pass
    gevent.killall(idlers, timeout=10)
    died = server.poll() is not None
    server_status = stop_server(server, hard_limit - (time.monotonic() - started) - 5)
    tracebacks, levels, warnings = log_summary(args.log, ("WARNING", "ERROR", "CRITICAL"), 8)
    signal.alarm(0)

    # -- print ---------------------------------------------------------------------------
    values = [rtt for _, rtt in rtts]
    ordered = sorted(values)
    p99 = percentile(ordered, 0.99)
    print(f"\nping round trips: {len(values)} in {measured:.1f} s, failures {dict(ping_failures) or 0}")
    print(f"  p50 / p90 / p99 / max: {quantiles_ms(values)}")
    print(f"  target p99 < 50 ms: {'met' if p99 < 0.050 else 'MISSED'}")
    print(f"  per {WINDOW:.0f} s (p50 / p90 / p99 / max):")
    for start in range(0, int(measured // WINDOW + 1)):
        window = [rtt for t, rtt in rtts if start * WINDOW <= t < (start + 1) * WINDOW]
        if window:
            span = f"{start * WINDOW:4.0f}-{(start + 1) * WINDOW:3.0f} s"
            print(f"    {span}  n={len(window):4d}  {quantiles_ms(window)}")
    print(f"\nidle sockets ({args.idle}, {'reopened' if args.reopen else 'opened once'}): "
          f"{idle.connected} connections made, connect failures {dict(idle.connect_failures) or 0}; "
          f"at the end of the measurement the server kept {kept} open and had closed {closed}")  # fmt: skip
    if idle.closed_after:
        after = sorted(idle.closed_after)
        print(f"  closed after p50 {percentile(after, 0.5):.1f} s, min {after[0]:.1f} s, "
              f"max {after[-1]:.1f} s; how: {dict(idle.closed_how)}; "
              f"answers: {dict(idle.answers) or 'none'}")  # fmt: skip
    print(f"\nattacker: {sum(attacker.sent.values())} messages, {attacker.bytes_sent / 2**20:.0f} MiB in "
          f"{measured:.1f} s ({attacker.bytes_sent / 2**20 / measured:.1f} MiB/s), {attacker.connects} "
          f"connection(s), connect failures {dict(attacker.connect_failures) or 0}, closes "
          f"{dict(attacker.closes) or 0}, timeouts {attacker.timeouts}, replies whose id was not the oldest "
          f"message in flight {attacker.mismatched}")  # fmt: skip
    print("  per kind: sent, replies (id, type/code), largest reply, server time p50 / max (send to pong)")
    for kind in attacker.kinds:
        took = sorted(attacker.took[kind])
        replies = dict(attacker.replies[kind])
        timing = f"{percentile(took, 0.5) * 1000:.1f} / {took[-1] * 1000:.1f} ms" if took else "-"
        print(f"    {kind:22s} {attacker.sent[kind]:5d}  {replies}  {attacker.reply_max[kind]} B  {timing}")
    user = cpu_after[0] - cpu_before[0]
    system = cpu_after[1] - cpu_before[1]
    print(f"\nserver: CPU over the measurement {user:.1f} s user + {system:.1f} s system = "
          f"{(user + system) / measured:.0%} of a core; total {sum(cpu_after):.1f} s; "
          f"RSS {rss / 1024:.1f} MiB (peak {peak / 1024:.1f} MiB); fds {fds}")  # fmt: skip
    print(f"  log lines by level: {dict(levels)}; lines containing 'Traceback': {tracebacks}")
    for line in warnings:
        print(f"  log: {line}")
    print(f"  {'died during the run, exit status' if died else 'exit status after SIGTERM:'} {server_status}")
    for text in crashed:
        print("driver error:\n" + text)
    failed = died or server_status != 0 or tracebacks > 0 or bool(crashed)
    print(f"\n{'something crashed' if failed else 'no crash'} ({time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
