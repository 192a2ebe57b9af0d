"""How a benchmark's server process talks to its driver, over its stdout: `PORT <n>` once it
listens, `STATS <json>` on SIGUSR1 and once more after SIGTERM (which stops the server)."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import gevent

from websock_actors import App, EndpointOptions, LimitOptions, RedisBackplane, Server, TimeoutOptions

__all__ = ["log_warnings", "serve", "serve_app"]


def log_warnings() -> None:
    """WARNING and worse on stderr, with their time (the driver keeps stderr in a log file)."""
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve(server: Server, stats: Callable[[], dict[str, Any]]) -> None:
    """Start `server`, print its port, serve until SIGTERM (a 5 s drain), print the last stats."""

    def report() -> None:
        print("STATS " + json.dumps(stats()), flush=True)

    gevent.signal_handler(signal.SIGUSR1, report)
    gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(server.stop, 5.0))
    server.start()
    print("PORT", server.address[1], flush=True)
    server.serve_forever()
    report()


def serve_app(
    app: App,
    url: str,
    more: Callable[[RedisBackplane], dict[str, Any]] | None = None,
    endpoints: EndpointOptions | None = None,
) -> None:
    """Serve `app` on a free port of 127.0.0.1 without keepalive pings, on a RedisBackplane(url)
    unless `url` is "-", with `endpoints` (the server API, say). Its STATS: broadcast_failures,
    and the backplane's counters and `connected` with whatever `more` adds."""
    log_warnings()
    backplane = RedisBackplane(url) if url != "-" else None
    if backplane is not None:
        app.use_backplane(backplane)
    limits, timeouts = LimitOptions(max_connections=20000), TimeoutOptions(ping_interval=None)
    server = Server(app, "127.0.0.1", 0, limits=limits, timeouts=timeouts, endpoints=endpoints)

    def stats() -> dict[str, Any]:
        out: dict[str, Any] = {"broadcast_failures": app.rooms.broadcast_failures}
        if backplane is not None:
            out.update(dataclasses.asdict(backplane.stats), connected=backplane.connected)
            out.update(more(backplane) if more is not None else {})
        return out

    serve(server, stats)
