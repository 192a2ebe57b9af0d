"""The typed echo's path from read to reply, timed on one real connection in this process.

    .venv/bin/python benchmarks/message_path.py [--tree DIR] [--app benchmarks.typed_echo_app:app]

A server `Connection` over a socketpair, opened as the server leaves it for its reader;
each step writes one masked request from the peer's end, calls `read_and_deliver` (what the
shared runner does for each ready connection) and reads the reply back. It prints the
microseconds per step (best of 5 runs of 100,000), the peer's two syscalls included, and the
same for the peer's syscalls alone. Without a load generator on the other core and without
the event loop, it moves far less from run to run than the figures of `typed_profile.py`:
a way to compare two builds' per-message code (`--tree`), not what a client sees.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b'{"type":"echo","id":12345,"text":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
STEPS = 100_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(ROOT), help="the checkout whose websock_actors is timed")
    parser.add_argument("--app", default="benchmarks.typed_echo_app:app")
    args = parser.parse_args()
    sys.path[:0] = [str(Path(args.tree).resolve()), str(ROOT)]

    from gevent import getcurrent

    from websock_actors.protocol.connection import Role, WebSocketConnection
    from websock_actors.protocol.frames import apply_mask
    from websock_actors.server.connection import Connection
    from websock_actors.server.inline import read_and_deliver
    from websock_actors.server.options import ConnectionOptions

    module, name = args.app.split(":")
    app = getattr(importlib.import_module(module), name)
    app.handle_start()
    ours, peer = socket.socketpair()
    buffer = memoryview(bytearray(65536))  # the server's shared read buffer
    conn = Connection(ours, ("127.0.0.1", 0), app, ConnectionOptions(), recv_buffer=buffer)
    conn._start_protocol(WebSocketConnection(Role.SERVER))
    conn._open = True
    app.handle_connect(conn)
    mask = os.urandom(4)
    frame = bytes((0x81, 0x80 | len(REQUEST))) + mask + apply_mask(REQUEST, mask)
    reader = getcurrent()  # the runner's part: this greenlet owns the connection meanwhile
    send, recv = peer.send, peer.recv

    def step() -> None:
        send(frame)
        read_and_deliver(conn, reader)
        recv(4096)

    reply = b'{"type":"echoed","id":12345,"text":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'

    def peer_only() -> None:
        send(frame)
        ours.recv(4096)
        ours.send(reply)
        recv(4096)

    send(frame)
    read_and_deliver(conn, reader)
    answer = recv(4096)
    if b'"echoed"' not in answer:
        print(f"unexpected answer: {answer!r}", file=sys.stderr)
        return 1
    for label, func in (("read to reply", step), ("the peer's syscalls alone", peer_only)):
        best = min(timeit.repeat(func, number=STEPS, repeat=5)) / STEPS * 1e6
        print(f"{label}: {best:.2f} us per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
