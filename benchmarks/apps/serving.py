"""How a benchmark's server process talks to its driver, over its stdout: `PORT <n>` once it
listens, `STATS <json>` on SIGUSR1 and once more after SIGTERM (which stops the server)."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import gevent

from websock_actors import Server

__all__ = ["log_warnings", "serve"]


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
