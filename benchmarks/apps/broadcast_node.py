"""One node of redis_broadcast.py: the chat demo with its rate limits off, on a RedisBackplane
or alone, no keepalive pings; the `serving` line protocol.

    python -m benchmarks.apps.broadcast_node REDIS_URL    # or "-": no backplane
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from benchmarks.apps.serving import log_warnings, serve
from benchmarks.chat_unlimited import app
from websock_actors import RedisBackplane, Server


def main() -> None:
    log_warnings()
    url = sys.argv[1]
    backplane = RedisBackplane(url) if url != "-" else None
    if backplane is not None:
        app.use_backplane(backplane)
    server = Server(app, "127.0.0.1", 0, ping_interval=None, max_connections=20000)

    def stats() -> dict[str, Any]:
        out: dict[str, Any] = {"broadcast_failures": app.rooms.broadcast_failures}
        if backplane is not None:
            out.update(dataclasses.asdict(backplane.stats), connected=backplane.connected)
            out["node"] = backplane.node
        return out

    serve(server, stats)


if __name__ == "__main__":
    main()
