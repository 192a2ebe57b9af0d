"""The command line: `websock-actors run MODULE:ATTR --host HOST --port PORT`, and
`websock-actors schema|asyncapi MODULE:ATTR` to print a typed app's message documents.

`run` applies `gevent.monkey.patch_all()` before it imports the application, so that
blocking standard-library calls in handlers become cooperative (`--no-patch` turns that
off). The library itself never patches; only this entry point does.

`run --workers N` (or `auto`: one per CPU) serves the port from N processes (scale/workers.py):
the app is imported and checked once, then the workers are forked, each serving as a single
process would. `--redis URL` puts the typed app's rooms on Redis, shared by every process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .compiled import compiled_modules
from .protocol.connection import DEFAULT_MAX_FRAGMENTS
from .protocol.deflate import DeflateOptions

if TYPE_CHECKING:
    import socket

    from .scale.workers import Worker
    from .server import Application
    from .typed.app import App

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
        "--worker-timeout", type=float, default=30.0, metavar="SECONDS",
        help="with --workers: replace a worker whose event loop has not run for this long"
        " (a handler that never yields); 0: never (default: 30)",
    )  # fmt: skip
    run.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share the typed app's rooms between processes and hosts, e.g. redis://127.0.0.1:6379/0",
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
    for name, what in (("schema", "JSON Schema"), ("asyncapi", "AsyncAPI 3.0 document")):
        describe = commands.add_parser(name, help=f"print the {what} of a typed app's messages")
        describe.add_argument("app", metavar="MODULE:ATTR", help="a typed App, e.g. examples.chat:app")
    return parser


def _workers(value: str) -> int:
    from .scale.workers import parse_workers

    try:
        return parse_workers(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    if args.workers > 1 and args.port == 0:
        raise SystemExit("error: --workers needs a fixed --port: the workers all listen on it (SO_REUSEPORT)")
    if args.worker_timeout < 0:
        raise SystemExit(f"error: --worker-timeout must be 0 (off) or more, not {args.worker_timeout:g}")
    _status_token(args)
    if not args.no_patch:
        from gevent import monkey

        monkey.patch_all()

    from .server import Application
    from .server.logs import configure_logging

    configure_logging(args.log_level, args.log_format, process=args.workers > 1)
    app = load_app(args.app)
    if not isinstance(app, Application):
        raise SystemExit(f"error: {args.app} is not a websock_actors Application")
    typed = _typed(app)
    if args.redis is not None:
        if typed is None:
            raise SystemExit("error: --redis needs a typed App")
        _backplane_class()  # imported once, before any fork: a missing redis-py fails here
    if args.rate_limit_per is not None:
        if typed is None:
            raise SystemExit("error: --rate-limit-per needs a typed App")
        typed.rate_limit_per = args.rate_limit_per
    if args.workers > 1 and args.redis is None and typed is not None and not typed.has_backplane:
        # Whether the app uses rooms shows when it does: each use raises ConfigurationError
        # (a handler's sender gets `handler_error`, the log says why).
        typed.refuse_rooms(
            f"{args.app} uses rooms: with --workers {args.workers} every process would keep"
            " its own rooms (a message reaches only the members in its process);"
            " add --redis redis://HOST:PORT/DB to share them"
        )
    context = _tls_context(args)
    if args.workers == 1:
        return _serve(args, app, context)
    return _prefork(args, app, context)


def _status_token(args: argparse.Namespace) -> None:
    """The status page's token, chosen once (before any fork: every worker takes the same)."""
    import secrets

    args.status_token_generated = False
    if not args.status_page:
        if args.status_token is not None:
            raise SystemExit("error: --status-token needs --status-page")
        return
    if args.status_token is None:
        args.status_token = secrets.token_urlsafe(24)
        args.status_token_generated = True
    elif not args.status_token.strip():
        raise SystemExit("error: --status-token may not be empty")


def _say_status_page(args: argparse.Namespace, host: str, port: int, tls: bool) -> None:
    """Where the status page is, once: with the token when it was generated (a given one is
    not echoed into the logs)."""
    from urllib.parse import quote

    from .scale.workers import say

    if not args.status_page:
        return
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{port}/_status"
    if args.status_token_generated:
        url += f"?token={quote(args.status_token, safe='')}"
    say(f"websock-actors: status page at {url}")


def _typed(app: Any) -> App | None:
    """The typed App served (behind a WSGIMount too), or None for a raw application."""
    from .compat.wsgi import WSGIMount
    from .typed.app import App

    if isinstance(app, WSGIMount):
        app = app.websocket_app
    return app if isinstance(app, App) else None


def _backplane_class() -> Any:
    try:
        from .scale.redis_backplane import RedisBackplane
    except ImportError as exc:
        raise SystemExit(
            f"error: --redis needs redis-py: pip install 'websock-actors[redis]' ({exc})"
        ) from None
    return RedisBackplane


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """Built once (before any fork): a missing or unreadable certificate fails at once."""
    from .errors import ConfigurationError
    from .server import tls_context

    if not args.certfile:
        if args.keyfile or args.ca_certs or args.verify_client:
            raise SystemExit("error: --keyfile, --ca-certs and --verify-client need --certfile")
        return None
    try:
        return tls_context(
            args.certfile, args.keyfile, ca_certs=args.ca_certs, verify_client=args.verify_client
        )
    except ConfigurationError as exc:
        raise SystemExit(f"error: {exc}") from None
    except (OSError, ssl.SSLError) as exc:  # a missing or unreadable certificate or key
        raise SystemExit(f"error: cannot load the TLS certificate: {exc}") from None


def _prefork(args: argparse.Namespace, app: Application, context: ssl.SSLContext | None) -> int:
    """The master of `--workers N`: bind-check the port, fork, supervise (scale/workers.py)."""
    import shutil
    import tempfile

    from .scale.workers import prepare_listener, run_workers

    master = os.getpid()

    try:
        listener = prepare_listener(args.host, args.port)
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    steered = _steered_listeners(args) if listener is None else None

    def serve(worker: Worker) -> int:
        if steered is not None:  # worker i serves listener i: the addresses steered to it
            worker.listener = steered[worker.index - 1]
            for other in steered:
                if other is not worker.listener:
                    other.close()  # the master keeps them open: the group keeps its order
        return _serve(args, app, context, worker)

    if args.metrics or args.metrics_port is not None or args.status_page:  # the page shows the sum too
        args.metrics_dir = tempfile.mkdtemp(prefix="websock-actors-metrics-")  # fresh for this run
    _say_status_page(args, args.host, args.port, context is not None)
    try:
        return run_workers(
            args.workers,
            serve,
            listener=listener,
            shutdown_timeout=args.shutdown_timeout,
            worker_timeout=args.worker_timeout,
        )
    finally:
        if getattr(args, "metrics_dir", None) is not None and os.getpid() == master:
            shutil.rmtree(args.metrics_dir, ignore_errors=True)


def _steered_listeners(args: argparse.Namespace) -> list[socket.socket] | None:
    """With per-IP caps under --workers, one listener per worker with each client address
    steered to one of them (scale/steering.py), so that the caps hold across workers. Not
    behind trusted proxies: their clients' addresses are in headers the kernel cannot see,
    and steering by the proxies' own would send nearly everything to one worker."""
    from .scale.steering import steered_listeners

    per_ip = args.max_connections_per_ip is not None or args.max_handshakes_per_ip is not None
    if not per_ip or args.forwarded_allow_ips:
        return None
    return steered_listeners(args.host, args.port, args.workers)


def _serve(
    args: argparse.Namespace, app: Application, context: ssl.SSLContext | None, worker: Worker | None = None
) -> int:
    """Serve in this process until a shutdown signal: the single process, or one worker."""
    import signal

    import gevent

    from .errors import ConfigurationError
    from .scale.workers import say
    from .server import EndpointOptions, HandshakeOptions, LimitOptions, ListenOptions, Server, TimeoutOptions

    if args.redis is not None:
        typed = _typed(app)
        assert typed is not None
        try:
            typed.use_backplane(_backplane_class()(args.redis))
        except (ValueError, ConfigurationError) as exc:
            from .protocol.redact import mask_secrets, mask_url

            raise SystemExit(f"error: --redis {mask_url(args.redis)}: {mask_secrets(str(exc))}") from None
    try:
        server = Server(
            app,
            args.host,
            args.port,
            limits=LimitOptions(
                max_connections=args.max_connections,
                max_handshakes=args.max_handshakes,
                max_connections_per_ip=args.max_connections_per_ip,
                max_handshakes_per_second_per_ip=args.max_handshakes_per_ip,
                ipv6_prefix=args.ipv6_prefix,
                max_message_size="app" if args.max_message_size is None else args.max_message_size,
                max_fragments=args.max_fragments,
            ),
            timeouts=TimeoutOptions(args.ping_interval or None, args.ping_timeout or None),  # 0: off
            handshake=HandshakeOptions(origins=args.origins, compression=_compression(args)),
            listen=ListenOptions(
                reuse_port=worker is not None and worker.listener is None,
                listener=None if worker is None else worker.listener,
                ssl_context=context,
                forwarded_allow_ips=args.forwarded_allow_ips.split(",") if args.forwarded_allow_ips else None,
            ),
            endpoints=EndpointOptions(
                metrics=args.metrics and args.metrics_port is None,
                metrics_port=args.metrics_port,
                metrics_host=args.metrics_host,
                metrics_dir=getattr(args, "metrics_dir", None),
                status_token=args.status_token if args.status_page else None,
            ),
        )
    except ConfigurationError as exc:
        raise SystemExit(f"error: {exc}") from None

    def shutdown() -> None:
        gevent.spawn(server.stop, args.shutdown_timeout)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        gevent.signal_handler(signum, shutdown)  # SIGHUP too: a closed terminal stops gracefully
    try:
        server.start()
    except OSError as exc:  # the port is taken, the address is not ours, ...
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    host, port = server.address
    url = f"{'wss' if context is not None else 'ws'}://{host}:{port}/"
    hot_path = "compiled (mypyc)" if compiled_modules() else "interpreted"
    logging.getLogger("websock_actors").info("hot path: %s", hot_path)
    if worker is None:
        say(f"websock-actors: serving {args.app} on {url}")
        _say_status_page(args, host, port, context is not None)
    else:
        me = f"worker {worker.index} (pid {os.getpid()})"
        worker.ready()  # first: whoever reads the line below may kill it, and it has started
        say(f"websock-actors: {me} serving {args.app} on {url}")
        if worker.stop_requested:  # signalled before the handlers above were in place
            shutdown()
        gevent.spawn(_watch_master, worker, shutdown)
    server.serve_forever()
    say("websock-actors: stopped" if worker is None else f"websock-actors: {me} stopped")
    return 0


def _watch_master(worker: Worker, shutdown: Callable[[], None]) -> None:
    """A worker whose master died stops (gracefully) instead of serving on, unsupervised."""
    import gevent

    while not worker.orphaned:
        gevent.sleep(1.0)
    logging.getLogger("websock_actors").warning("the master (pid %d) is gone: stopping", worker.master)
    shutdown()


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
