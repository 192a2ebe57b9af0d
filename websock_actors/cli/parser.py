"""The flags of `websock-actors`: the `run` command's, `emit`'s (cli/emit.py),
`schema|asyncapi MODULE:ATTR`, and `typescript MODULE:ATTR [-o FILE]`."""

from __future__ import annotations

import argparse

from ..protocol.connection import DEFAULT_MAX_FRAGMENTS
from ..protocol.deflate import DeflateOptions
from .emit import add_emit_parser

__all__ = ["build_parser"]

_DEFLATE = DeflateOptions()  # the defaults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="websock-actors", description="Actor-model WebSocket server on gevent."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve an application")
    run.add_argument("app", metavar="MODULE:ATTR", help="the application, e.g. examples.echo:app")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--no-patch", action="store_true", help="do not monkey-patch the standard library")
    run.add_argument(
        "--rate-limit-per",
        choices=("client", "connection"),
        help="whose buckets a typed app's rate limits fill: each client's (identity, else address;"
        " the app's default) or each connection's (load tests whose users share one address)",
    )
    run.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="processes serving the port (SO_REUSEPORT), or 'auto': one per CPU (default: 1, no fork)",
    )
    run.add_argument(
        "--reload",
        action="store_true",
        help="for development: restart on each change to a .py file of the app's source tree"
        " (needs the 'reload' extra: watchfiles); not with --workers",
    )
    run.add_argument(
        "--worker-timeout", type=float, default=30.0, metavar="SECONDS",
        help="with --workers: replace a worker whose event loop has not run for this long"
        " (a handler that never yields); 0: never (default: 30)",
    )  # fmt: skip
    run.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share the typed app's rooms between processes and hosts: redis://127.0.0.1:6379/0, or "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] to follow a Sentinel master, or "
        "redis+cluster://HOST:PORT[,HOST:PORT...]/ for a Redis Cluster (rooms spread over its masters)",
    )
    run.add_argument("--max-connections", type=int, default=10_000)
    run.add_argument(
        "--max-handshakes",
        type=int,
        default=None,
        help="sockets still in the opening handshake (default: as many as --max-connections)",
    )
    run.add_argument(
        "--max-message-size",
        type=int,
        default=None,
        help="bytes (default: the application's: 1 MiB for a typed App, 16 MiB for a raw app)",
    )
    run.add_argument("--max-fragments", type=int, default=DEFAULT_MAX_FRAGMENTS, help="frames per message")
    run.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=None,
        help="connections of one client IP (beyond: closed at accept, 429 behind a trusted proxy);"
        " with --workers, each IP is steered to one worker",
    )
    run.add_argument(
        "--max-handshakes-per-ip",
        type=float,
        default=None,
        help="handshakes per second of one client IP, as many at once (beyond: as for"
        " --max-connections-per-ip)",
    )
    run.add_argument(
        "--ipv6-prefix",
        type=int,
        default=64,
        metavar="BITS",
        help="the per-IP caps count an IPv6 client as its network of this many bits (default: 64)",
    )
    run.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="IPS",
        help="comma-separated proxy IPs or networks ('*': any) whose X-Forwarded-For and"
        " X-Forwarded-Proto give the client's address and scheme",
    )
    run.add_argument(
        "--origin",
        action="append",
        dest="origins",
        metavar="ORIGIN",
        help="an allowed Origin, e.g. https://chat.example.com (repeatable); others get 403."
        " Without it any Origin is accepted: see 'Cross-site WebSocket hijacking' in"
        " docs/howto/deployment.md",
    )
    run.add_argument("--ping-interval", type=float, default=20.0, help="seconds; 0 turns keepalive off")
    run.add_argument("--ping-timeout", type=float, default=20.0)
    run.add_argument("--shutdown-timeout", type=float, default=10.0)
    run.add_argument(
        "--metrics",
        action="store_true",
        help="answer GET /metrics (Prometheus) on the port; with --workers, summed over the workers",
    )
    run.add_argument(
        "--metrics-port", type=int, default=None, metavar="PORT", help="serve the metrics on this port"
    )
    run.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --metrics-port binds (default 127.0.0.1, whatever --host is:"
        " give 0.0.0.0 for a scraper on another host)",
    )
    run.add_argument(
        "--status-page",
        action="store_true",
        help="serve a live status page at GET /_status (connections, rooms, rates; behind a token);"
        " with --workers, the figures are summed over the workers",
    )
    run.add_argument(
        "--status-token",
        default=None,
        metavar="TOKEN",
        help="the status page's token (default: a random one, printed once at start)",
    )
    run.add_argument(
        "--no-client-js",
        dest="client_js",
        action="store_false",
        help="do not serve the browser client library at GET /_wsa/client.js",
    )
    run.add_argument(
        "--api-key-file",
        default=None,
        metavar="PATH",
        help="turn on the server API under /_api/ (a typed App's broadcast, send_to_user,"
        " disconnect_user, presence) with the key in this file (or in $WEBSOCK_ACTORS_API_KEY)",
    )
    run.add_argument(
        "--api-rate", type=float, default=1000.0, metavar="N", help="API requests per second (default 1000)"
    )
    run.add_argument(
        "--api-burst", type=int, default=1000, metavar="N", help="API requests at once (default 1000)"
    )
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one JSON object per line (time, level, event, connection, peer, code, ...);"
        " credentials are masked in both",
    )
    tls = run.add_argument_group("TLS (wss:// and https://)")
    tls.add_argument("--certfile", help="the server's certificate chain (PEM); turns TLS on")
    tls.add_argument("--keyfile", help="its private key (PEM), when not in --certfile")
    tls.add_argument("--ca-certs", help="CA certificates (PEM) for client certificates")
    tls.add_argument("--verify-client", action="store_true", help="require a client certificate (mutual TLS)")
    deflate = run.add_argument_group("permessage-deflate (RFC 7692)")
    deflate.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="accept permessage-deflate offers (default: off)",
    )
    deflate.add_argument(
        "--compression-threshold",
        type=int,
        default=_DEFLATE.threshold,
        help="send messages shorter than this many bytes uncompressed",
    )
    deflate.add_argument("--compression-level", type=int, default=_DEFLATE.level)
    deflate.add_argument("--compression-window-bits", type=int, default=_DEFLATE.window_bits)
    deflate.add_argument("--compression-mem-level", type=int, default=_DEFLATE.mem_level)
    deflate.add_argument(
        "--compression-context-takeover",
        action="store_true",
        help="keep compression context between messages (zlib state per connection)",
    )
    add_emit_parser(commands)
    for name, what in (("schema", "JSON Schema"), ("asyncapi", "AsyncAPI 3.0 document")):
        describe = commands.add_parser(name, help=f"print the {what} of a typed app's messages")
        describe.add_argument("app", metavar="MODULE:ATTR", help="a typed App, e.g. examples.chat:app")
    typescript = commands.add_parser(
        "typescript", help="print TypeScript types of a typed app's messages, with the reply of each request"
    )
    typescript.add_argument("app", metavar="MODULE:ATTR", help="a typed App, e.g. examples.chat:app")
    typescript.add_argument(
        "-o", "--output", metavar="FILE", help="write them to FILE (e.g. chat.d.ts) instead of stdout"
    )
    return parser


def _workers(value: str) -> int:
    from ..scale.workers import parse_workers

    try:
        return parse_workers(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

