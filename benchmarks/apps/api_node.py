"""The server of push_cost.py's API runs: the chat demo with its rate limits off, the server
API on with the key in $WEBSOCK_ACTORS_API_KEY and no API rate limit to speak of, on a
RedisBackplane or alone; the `serving` line protocol.

    WEBSOCK_ACTORS_API_KEY=... python -m benchmarks.apps.api_node REDIS_URL    # or "-"
"""

from __future__ import annotations

import os
import sys

from benchmarks.apps.serving import serve_app
from benchmarks.chat_unlimited import app
from websock_actors import EndpointOptions

if __name__ == "__main__":
    api = EndpointOptions(api_key=os.environ["WEBSOCK_ACTORS_API_KEY"], api_rate=1e9, api_burst=10**9)
    serve_app(app, sys.argv[1], endpoints=api)
