"""Server memory per idle connection, with a client that offers permessage-deflate.

The side-by-side bench (../shared/bench) measures KiB per idle connection with a client that
never offers compression; this does the same (the server's VmRSS before and after holding N
connections, divided by N) with a client that offers `permessage-deflate;
client_max_window_bits`, as browsers do, then once more after one echoed message on each
connection (state made lazily at the first message shows there).

    python benchmarks/idle_rss.py --conns 10000                    # bench_app, compression off
    python benchmarks/idle_rss.py --conns 10000 --compression      # bench_app --compression
    python benchmarks/idle_rss.py --conns 10000 --server 'python peer.py {port}'   # any server
    python benchmarks/idle_rss.py --conns 10000 --app benchmarks.typed_echo_app:app  # typed

`--app MODULE:ATTR` serves that app with `websock-actors run` (keepalive off, no connection
cap, `--compression` passed on); its echo is a typed one, `{"type": "echo", "text": ...}`
sent as text and answered with any text message.

Loopback only; every step has a time limit; the server is stopped by its PID. One JSON line with
the figures is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gevent
import gevent.pool
from gevent import socket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.ports import free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import pinned, raise_fd_limit  # noqa: E402
from benchmarks.harness.procstat import rss_kib  # noqa: E402
from websock_actors.protocol import (  # noqa: E402
    BinaryMessage,
    DeflateOptions,
    PerMessageDeflate,
    Role,
    TextMessage,
    WebSocketConnection,
    build_request,
    generate_key,
    parse_extensions,
    parse_response,
)
from websock_actors.protocol.deflate import parse_parameters  # noqa: E402

OFFER = "permessage-deflate; client_max_window_bits"  # what Chrome and Firefox send
# What this client does once the server answered: keep context, 15-bit windows (like a browser).
CLIENT_OPTIONS = DeflateOptions(threshold=0, window_bits=15, context_takeover=True)


class Client:
    """One connection: the handshake, then one message and its echo."""

    def __init__(self, port: int, offer: bool) -> None:
        self.port = port
        self.offer = offer
        self.sock: socket.socket | None = None
        self.protocol: WebSocketConnection | None = None
        self.compressed = False

    def open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        key = generate_key()
        offer = OFFER if self.offer else None
        sock.sendall(build_request(f"127.0.0.1:{self.port}", "/", key, extensions=offer))
        data = b""
        while (parsed := parse_response(data)) is None:
            chunk = sock.recv(4096)
            if not chunk:
                raise EOFError("closed during the handshake")
            data += chunk
        response, _ = parsed
        if response.status != 101:
            raise RuntimeError(f"handshake answered {response.status}")
        codec = None
        answer = response.headers.get("Sec-WebSocket-Extensions")
        if answer:
            [(_, params)] = parse_extensions(answer)
            codec = PerMessageDeflate(parse_parameters(params, response=True), CLIENT_OPTIONS, server=False)
            self.compressed = True
        self.protocol = WebSocketConnection(Role.CLIENT, max_message_size=None, deflate=codec)
        self.sock = sock

    def echo(self, payload: bytes) -> None:
        assert self.sock is not None and self.protocol is not None
        self.sock.sendall(self.protocol.send_binary(payload))
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed before the echo")
            for event in self.protocol.receive_data(chunk):
                if isinstance(event, BinaryMessage):
                    if event.data != payload:
                        raise RuntimeError("wrong echo")
                    return

    def typed_echo(self, payload: bytes) -> None:
        """A typed app's echo request, answered by any text message."""
        assert self.sock is not None and self.protocol is not None
        request = json.dumps({"type": "echo", "text": payload.decode()})
        self.sock.sendall(self.protocol.send_text(request))
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("closed before the echo")
            if any(isinstance(event, TextMessage) for event in self.protocol.receive_data(chunk)):
                return

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def run_all(clients: list[Client], action: Callable[[Client], None], concurrency: int, timeout: float) -> int:
    """Run `action` on every client, `concurrency` at a time; the number of failures."""
    pool = gevent.pool.Pool(concurrency)
    failures = 0

    def one(client: Client) -> None:
        nonlocal failures
        try:
            action(client)
        except Exception:
            failures += 1

    with gevent.Timeout(timeout, TimeoutError(f"not done within {timeout}s")):
        for client in clients:
            pool.spawn(one, client)
        pool.join()
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conns", type=int, default=10_000)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds to wait before reading the RSS")
    parser.add_argument("--message-size", type=int, default=4096, help="0: no message after the idle reading")
    parser.add_argument("--no-offer", action="store_true", help="the client offers no extension")
    parser.add_argument("--compression", action="store_true", help="start bench_app with --compression")
    parser.add_argument("--server", help="server command with {port} (default: benchmarks/bench_app.py)")
    parser.add_argument("--app", help="MODULE:ATTR served by `websock-actors run` (a typed app)")
    parser.add_argument("--cpu", default="0", help="taskset CPU list for the server ('' for none)")
    parser.add_argument("--max-time", type=float, default=300.0, help="limit for the whole run, seconds")
    args = parser.parse_args()
    if not 1 <= args.conns <= 20_000:
        parser.error("--conns must be between 1 and 20000")

    wanted = raise_fd_limit(args.conns + 1000)  # the server inherits it
    if wanted < args.conns + 100:
        raise SystemExit(f"file descriptor limit {wanted} is too low for {args.conns} connections")

    port = free_port()
    if args.server:
        command = shlex.split(args.server.replace("{port}", str(port)).replace("{py}", sys.executable))
    elif args.app:
        command = [sys.executable, "-m", "websock_actors", "run", args.app, "--port", str(port), "--no-patch"]
        command += ["--ping-interval", "0", "--max-connections", str(args.conns + 100)]
        if args.compression:
            command.append("--compression")
    else:
        command = [sys.executable, str(ROOT / "benchmarks" / "bench_app.py"), str(port)]
        if args.compression:
            command.append("--compression")
    command = pinned(args.cpu or None, command)
    proc = subprocess.Popen(command, cwd=ROOT)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("--max-time reached")))
    signal.alarm(int(args.max_time))
    clients: list[Client] = []
    try:
        if (why := wait_for_port(port, 20, process=proc)) is not None:
            raise SystemExit(why)
        time.sleep(0.5)  # let the server settle after start-up before the first reading
        before = rss_kib(proc.pid)
        clients = [Client(port, offer=not args.no_offer) for _ in range(args.conns)]
        started = time.monotonic()
        failed = run_all(clients, Client.open, 200, 120)
        connect_s = time.monotonic() - started
        gevent.sleep(args.hold)
        held = rss_kib(proc.pid)
        result: dict[str, object] = {
            "command": " ".join(command),
            "conns": args.conns,
            "offer": None if args.no_offer else OFFER,
            "compressed": sum(c.compressed for c in clients),
            "failed": failed,
            "connects_per_s": round(args.conns / connect_s),
            "rss_before_kib": before,
            "rss_held_kib": held,
            "kib_per_idle_conn": round((held - before) / args.conns, 2),
        }
        if args.message_size:
            payload = (b"websock_actors idle rss " * (args.message_size // 24 + 1))[: args.message_size]
            echo = Client.typed_echo if args.app else Client.echo
            echo_failed = run_all(clients, lambda client: echo(client, payload), 200, 120)
            gevent.sleep(args.hold)
            after = rss_kib(proc.pid)
            result.update(
                message_size=args.message_size,
                echo_failed=echo_failed,
                rss_after_message_kib=after,
                kib_per_conn_after_message=round((after - before) / args.conns, 2),
            )
        print(
            f"{args.conns} connections ({result['compressed']} compressed, {failed} failed): "
            f"{result['kib_per_idle_conn']} KiB per idle connection"
            + (
                f", {result['kib_per_conn_after_message']} KiB after one {args.message_size}-byte echo each"
                if args.message_size
                else ""
            )
        )
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
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
