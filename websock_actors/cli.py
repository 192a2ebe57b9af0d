"""The command line: `websock-actors run MODULE:ATTR --host HOST --port PORT`, and
`websock-actors schema|asyncapi MODULE:ATTR` to print a typed app's message documents.

`run` applies `gevent.monkey.patch_all()` before it imports the application, so that
blocking standard-library calls in handlers become cooperative (`--no-patch` turns that
off). The library itself never patches; only this entry point does.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import ssl
import sys
from typing import Any

from .protocol.connection import DEFAULT_MAX_FRAGMENTS
from .protocol.deflate import DeflateOptions

__all__ = ["load_app", "main"]

_DEFLATE = DeflateOptions()  # the defaults


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="websock-actors", description="Actor-model WebSocket server on gevent."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve an application")
    run.add_argument("app", metavar="MODULE:ATTR", help="the application, e.g. examples.echo:app")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--no-patch", action="store_true", help="do not monkey-patch the standard library")
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
        help="open connections of one client IP (429 beyond)",
    )
    run.add_argument(
        "--max-handshakes-per-ip",
        type=float,
        default=None,
        help="handshakes per second of one client IP, as many at once (429 beyond)",
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
        " Without it any Origin is accepted: see the README on cross-site WebSocket hijacking",
    )
    run.add_argument("--ping-interval", type=float, default=20.0, help="seconds; 0 turns keepalive off")
    run.add_argument("--ping-timeout", type=float, default=20.0)
    run.add_argument("--shutdown-timeout", type=float, default=10.0)
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
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
    for name, what in (("schema", "JSON Schema"), ("asyncapi", "AsyncAPI 3.0 document")):
        describe = commands.add_parser(name, help=f"print the {what} of a typed app's messages")
        describe.add_argument("app", metavar="MODULE:ATTR", help="a typed App, e.g. examples.chat:app")
    return parser


def load_app(spec: str) -> Any:
    """Import `MODULE:ATTR` with the current directory first on the path."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"error: expected MODULE:ATTR, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"error: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise SystemExit(f"error: {module_name!r} has no attribute {attr!r}") from None


def _compression(args: argparse.Namespace) -> DeflateOptions | bool:
    if not args.compression:
        return False
    try:
        return DeflateOptions(
            threshold=args.compression_threshold,
            level=args.compression_level,
            window_bits=args.compression_window_bits,
            mem_level=args.compression_mem_level,
            context_takeover=args.compression_context_takeover,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _run(args: argparse.Namespace) -> int:
    if not args.no_patch:
        from gevent import monkey

        monkey.patch_all()
    import signal

    import gevent

    from .errors import ConfigurationError
    from .server import Application, Server, tls_context

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = load_app(args.app)
    if not isinstance(app, Application):
        raise SystemExit(f"error: {args.app} is not a websock_actors Application")
    try:
        context = None
        if args.certfile:
            context = tls_context(
                args.certfile, args.keyfile, ca_certs=args.ca_certs, verify_client=args.verify_client
            )
        elif args.keyfile or args.ca_certs or args.verify_client:
            raise SystemExit("error: --keyfile, --ca-certs and --verify-client need --certfile")
        server = Server(
            app,
            args.host,
            args.port,
            max_connections=args.max_connections,
            max_handshakes=args.max_handshakes,
            max_connections_per_ip=args.max_connections_per_ip,
            max_handshakes_per_second_per_ip=args.max_handshakes_per_ip,
            forwarded_allow_ips=args.forwarded_allow_ips.split(",") if args.forwarded_allow_ips else None,
            max_message_size="app" if args.max_message_size is None else args.max_message_size,
            max_fragments=args.max_fragments,
            origins=args.origins,
            ping_interval=args.ping_interval or None,
            ping_timeout=args.ping_timeout or None,
            compression=_compression(args),
            ssl_context=context,
        )
    except ConfigurationError as exc:
        raise SystemExit(f"error: {exc}") from None
    except (OSError, ssl.SSLError) as exc:  # a missing or unreadable certificate or key
        raise SystemExit(f"error: cannot load the TLS certificate: {exc}") from None

    def shutdown() -> None:
        gevent.spawn(server.stop, args.shutdown_timeout)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        gevent.signal_handler(signum, shutdown)  # SIGHUP too: a closed terminal stops gracefully
    try:
        server.start()
    except OSError as exc:  # the port is taken, the address is not ours, ...
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host, port = server.address
    scheme = "wss" if context is not None else "ws"
    print(f"websock-actors: serving {args.app} on {scheme}://{host}:{port}/", flush=True)
    server.serve_forever()
    print("websock-actors: stopped", flush=True)
    return 0


def _describe(args: argparse.Namespace) -> int:
    """Print the app's JSON Schema or AsyncAPI document (no patching: nothing is served)."""
    import json

    from .compat.wsgi import WSGIMount
    from .typed.app import App

    app = load_app(args.app)
    address = "/"
    if isinstance(app, WSGIMount):  # a typed app behind a WSGI app: described at its path
        address = app.websocket_path
        app = app.websocket_app
    if not isinstance(app, App):
        raise SystemExit(f"error: {args.app} is not a typed websock_actors.App (or a WSGIMount of one)")
    document = app.json_schema() if args.command == "schema" else app.asyncapi(address=address)
    print(json.dumps(document, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    return _describe(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
