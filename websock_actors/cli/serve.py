"""Serving in this process until a shutdown signal: the single process, or one worker of
`--workers N`. SIGTERM and SIGINT stop it (1001); SIGHUP re-executes a single process with
the code on disk (reexec.py); the master's DRAIN_SIGNAL drains a worker it replaced (1012)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..compiled import compiled_modules
from ..protocol.deflate import DeflateOptions
from .loading import typed_app

if TYPE_CHECKING:
    from ..scale.workers import Worker
    from ..server import Application

__all__ = ["backplane_class", "say_status_page", "serve"]

RELOAD_DRAIN = 2.0  # seconds, at most, of a --reload restart's drain: a development server


def serve(
    args: argparse.Namespace, app: Application, context: ssl.SSLContext | None, worker: Worker | None = None
) -> int:
    """Serve in this process until a shutdown signal: the single process, or one worker."""
    import signal

    import gevent

    from ..errors import ConfigurationError
    from ..scale.workers import DRAIN_SIGNAL, say
    from ..server import (
        EndpointOptions,
        HandshakeOptions,
        LimitOptions,
        ListenOptions,
        Server,
        TimeoutOptions,
    )
    from ..server.server import bind_listener
    from ..server.systemd_notify import Notifier
    from .reexec import inherited_listener
    from .reload import reloaded

    if args.redis is not None:
        typed = typed_app(app)
        assert typed is not None
        try:
            typed.use_backplane(backplane_class()(args.redis))
        except (ValueError, ConfigurationError) as exc:
            from ..protocol.redact import mask_secrets, mask_url

            raise SystemExit(f"error: --redis {mask_url(args.redis)}: {mask_secrets(str(exc))}") from None
    listen = ListenOptions(
        reuse_port=worker is not None,  # each worker binds --metrics-port too (and its own, if no slot's)
        listener=inherited_listener(args.host, args.port) if worker is None else worker.listener,
        ssl_context=context,
        forwarded_allow_ips=args.forwarded_allow_ips.split(",") if args.forwarded_allow_ips else None,
    )
    if worker is None and listen.listener is None:  # bound here: SIGHUP hands it over an exec
        try:
            listen = dataclasses.replace(listen, listener=bind_listener(args.host, args.port, listen))
        except OSError as exc:  # the port is taken, the address is not ours, ...
            raise _cannot_listen(args, exc) from None
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
            handshake=HandshakeOptions(origins=args.origins, compression=_deflate_options(args)),
            listen=listen,
            endpoints=EndpointOptions(
                metrics=args.metrics and args.metrics_port is None,
                metrics_port=args.metrics_port,
                metrics_host=args.metrics_host,
                metrics_dir=getattr(args, "metrics_dir", None),
                status_token=args.status_token if args.status_page else None,
                api_key=args.api_key,
                api_rate=args.api_rate,
                api_burst=args.api_burst,
                client_js=args.client_js,
            ),
        )
    except ConfigurationError as exc:
        raise SystemExit(f"error: {exc}") from None

    notifier = Notifier.from_environ() if worker is None else Notifier(None)  # else the master tells systemd
    handover: list[int] = []  # the listener's descriptor kept for the exec, once decided

    def shutdown(restart: bool = False) -> None:
        if not restart:
            handover.clear()  # SIGTERM during a SIGHUP's drain: stop, no exec
            notifier.stopping()
        gevent.spawn(server.stop, args.shutdown_timeout, restart=restart)

    def reexec_with_new_code() -> None:
        if handover or server.stopped:
            return
        handover.append(-1)  # one at a time
        drain = min(args.shutdown_timeout, RELOAD_DRAIN) if reloaded() else args.shutdown_timeout
        gevent.spawn(_check_then_drain, args.app, server, listen, handover, drain, notifier)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, shutdown)
    if worker is None:
        gevent.signal_handler(signal.SIGHUP, reexec_with_new_code)
    else:  # SIGHUP is the master's (a rolling restart); this worker ignores it
        gevent.signal_handler(DRAIN_SIGNAL, shutdown, True)
    try:
        server.start()
    except OSError as exc:  # the port is taken, the address is not ours, ...
        raise _cannot_listen(args, exc) from None
    host, port = server.address
    url = f"{'wss' if context is not None else 'ws'}://{host}:{port}/"
    hot_path = "compiled (mypyc)" if compiled_modules() else "interpreted"
    logging.getLogger("websock_actors").info("hot path: %s", hot_path)
    if worker is None:
        notifier.ready()  # the port listens: systemd's Type=notify
        say(f"websock-actors: serving {args.app} on {url}")
        say_status_page(args, host, port, context is not None)
    else:
        me = f"worker {worker.index} (pid {os.getpid()})"
        worker.ready()  # first: whoever reads the line below may kill it, and it has started
        say(f"websock-actors: {me} serving {args.app} on {url}")
        if worker.stop_requested:  # signalled before the handlers above were in place
            shutdown(restart=worker.drain_requested)
        gevent.spawn(_watch_master, worker, shutdown)
    server.serve_forever()
    if handover and handover[0] >= 0:
        from .reexec import reexec

        say("websock-actors: drained: executing the new code")
        reexec(handover[0])
    say("websock-actors: stopped" if worker is None else f"websock-actors: {me} stopped")
    return 0


def _check_then_drain(
    spec: str, server: Any, listen: Any, handover: list[int], timeout: float, notifier: Any
) -> None:
    """SIGHUP without --workers: if the new code imports, keep the listener for the exec and
    drain (1012); else say why, and serve on with the code loaded. systemd hears RELOADING=1,
    and READY=1 from the process after the exec (the same pid)."""
    from ..scale.workers import say
    from .reexec import import_problem

    say(f"websock-actors: SIGHUP: checking that {spec} imports")
    problem = import_problem(spec)
    if problem is not None:
        logging.getLogger("websock_actors").error(
            "SIGHUP: the new code of %s does not start; serving on with the old one:\n%s", spec, problem
        )
        handover.clear()
        return
    if not handover or server.stopped:  # SIGTERM meanwhile
        return
    handover[0] = os.dup(listen.listener.fileno())  # the socket outlives the server's close
    notifier.reloading()
    server.stop(timeout, restart=True)


def _cannot_listen(args: argparse.Namespace, exc: OSError) -> SystemExit:
    return SystemExit(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")


def _watch_master(worker: Worker, shutdown: Callable[[], None]) -> None:
    """A worker whose master died stops (gracefully) instead of serving on, unsupervised."""
    import gevent

    while not worker.orphaned:
        gevent.sleep(1.0)
    logging.getLogger("websock_actors").warning("the master (pid %d) is gone: stopping", worker.master)
    shutdown()

def _deflate_options(args: argparse.Namespace) -> DeflateOptions | bool:
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

def say_status_page(args: argparse.Namespace, host: str, port: int, tls: bool) -> None:
    """Where the status page is, once: with the token when it was generated (a given one is
    not echoed into the logs)."""
    from urllib.parse import quote

    from ..scale.workers import say

    if not args.status_page:
        return
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{shown}:{port}/_status"
    if args.status_token_generated:
        url += f"?token={quote(args.status_token, safe='')}"
    say(f"websock-actors: status page at {url}")

def backplane_class() -> Any:
    try:
        from ..scale.redis_backplane import RedisBackplane
    except ImportError as exc:
        raise SystemExit(
            f"error: --redis needs redis-py: pip install 'websock-actors[redis]' ({exc})"
        ) from None
    return RedisBackplane

