"""One node of redis_broadcast.py: the chat demo with its rate limits off, on a RedisBackplane
or alone, no keepalive pings; the `serving` line protocol.

    python -m benchmarks.apps.broadcast_node REDIS_URL    # or "-": no backplane
"""

from __future__ import annotations

import sys

from benchmarks.apps.serving import serve_app
from benchmarks.chat_unlimited import app

if __name__ == "__main__":
    serve_app(app, sys.argv[1], lambda backplane: {"node": backplane.node})
