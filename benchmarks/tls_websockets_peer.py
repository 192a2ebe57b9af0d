"""The bench protocol on `websockets` (asyncio), plain or TLS: the peer of benchmarks/tls_cost.py.

    python benchmarks/tls_websockets_peer.py PORT [--certfile chain.pem --keyfile key.pem]

Like benchmarks/bench_app.py: a text message ``broadcast:<payload>`` sends ``<payload>`` to
every connected client, the sender included (websockets' own `broadcast()`: one encoded frame,
no backpressure); anything else, text or binary, is echoed back unchanged. No compression, no
keepalive pings, 16 MiB maximum message size, no logging; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl

from websockets.asyncio.server import ServerConnection, broadcast, serve

PREFIX = "broadcast:"
members: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    members.add(ws)
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith(PREFIX):
                broadcast(members, message[len(PREFIX) :])
            else:
                await ws.send(message)
    finally:
        members.discard(ws)


async def main(port: int, context: ssl.SSLContext | None) -> None:
    async with serve(
        handler, "127.0.0.1", port, ssl=context, compression=None, max_size=16 << 20,
        ping_interval=None, backlog=1024,
    ) as server:  # fmt: skip
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        await server.wait_closed()


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("port", type=int)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    tls = None
    if args.certfile:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # as websock_actors.tls_context
        tls.load_cert_chain(args.certfile, args.keyfile)
    asyncio.run(main(args.port, tls))
