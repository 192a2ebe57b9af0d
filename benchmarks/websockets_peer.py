"""An echo server on `websockets` (asyncio), for same-machine comparisons with its compression.

    python benchmarks/websockets_peer.py PORT [--no-compression]
    python benchmarks/idle_rss.py --server '{py} benchmarks/websockets_peer.py {port}'

Compression is websockets' default ("deflate": 12-bit windows, memLevel 5, context
takeover); no keepalive pings, 16 MiB maximum message size, no logging.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int, compression: str | None) -> None:
    async with serve(
        echo, "127.0.0.1", port, compression=compression, max_size=16 << 20, ping_interval=None, backlog=1024
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    asyncio.run(main(int(sys.argv[1]), None if "--no-compression" in sys.argv[2:] else "deflate"))
