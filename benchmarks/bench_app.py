"""The benchmark protocol of the side-by-side bench, on websock_actors.

A text message ``broadcast:<payload>`` sends ``<payload>`` to every connected client, the
sender included (one encoded frame shared by all mailboxes; members that negotiated
permessage-deflate share one compressed copy); anything else, text or binary, is echoed
back unchanged.

    python benchmarks/bench_app.py PORT [--compression]
    websock-actors run benchmarks.bench_app:app --port PORT --no-patch --ping-interval 0
    websock-actors run benchmarks.bench_app:shared_app ...   (Application.shared_runner)

`--compression` (or WEBSOCK_ACTORS_COMPRESSION=1) accepts permessage-deflate offers with
the default `DeflateOptions`; it is off otherwise, like every peer of the bench.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import gevent

from websock_actors import (
    Application,
    Connection,
    HandshakeOptions,
    LimitOptions,
    Server,
    TimeoutOptions,
    WebSocketApp,
    encode_broadcast,
)

PREFIX = "broadcast:"
app = WebSocketApp()
shared_app = WebSocketApp(shared_runner=True)  # the same, its messages in the shared runner
members: set[Connection] = set()


@app.on_connect
@shared_app.on_connect
def joined(conn: Connection) -> None:
    members.add(conn)


@app.on_close
@shared_app.on_close
def left(conn: Connection, code: int, reason: str) -> None:
    members.discard(conn)


@app.on_message
@shared_app.on_message
def handle(conn: Connection, message: str | bytes) -> None:
    if isinstance(message, str) and message.startswith(PREFIX):
        frame = encode_broadcast(message[len(PREFIX) :])
        for member in list(members):
            member.send_frame(frame)
    else:
        conn.send(message)


def bench_server(app: Application, port: int, *, compression: bool = False) -> Server:
    """A server as the side-by-side bench runs one: on loopback, no connection limit, no
    pings (idle connections are measured as such), compression only when asked."""
    return Server(
        app,
        "127.0.0.1",
        port,
        limits=LimitOptions(max_connections=None),
        timeouts=TimeoutOptions(ping_interval=None),
        handshake=HandshakeOptions(compression=compression),
    )


def main() -> None:
    logging.disable(logging.CRITICAL)
    args = sys.argv[1:]
    compression = "--compression" in args or os.environ.get("WEBSOCK_ACTORS_COMPRESSION", "") == "1"
    app.inline = "--inline" in args or os.environ.get("WEBSOCK_ACTORS_INLINE", "") == "1"
    ports = [arg for arg in args if not arg.startswith("--")]
    port = int(ports[0]) if ports else 8765
    server = bench_server(app, port, compression=compression)
    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(server.stop, 2.0))
    server.serve_forever()


if __name__ == "__main__":
    main()
