"""The master of `--workers N`: the port checked, the listeners opened (one per worker, client
addresses steered to them when per-IP caps must hold across workers), the workers forked and
supervised (scale/workers.py). Each worker imports the application after the fork."""

from __future__ import annotations

import argparse
import os
import ssl
from typing import TYPE_CHECKING

from .loading import prepared_app
from .serve import say_status_page, serve

if TYPE_CHECKING:
    import socket

    from ..scale.workers import Worker

__all__ = ["prefork"]


def prefork(args: argparse.Namespace, context: ssl.SSLContext | None) -> int:
    """The master of `--workers N`: bind-check the port, fork, supervise (scale/workers.py)."""
    import shutil
    import tempfile

    from ..scale.listeners import slot_listeners
    from ..scale.workers import prepare_listener, run_workers

    master = os.getpid()
    _import_the_library()

    listeners: list[socket.socket] | None = None
    try:
        listener = prepare_listener(args.host, args.port)
        if listener is None:  # SO_REUSEPORT: one per worker slot, kept by the master
            listeners = _steered_listeners(args) or slot_listeners(args.host, args.port, args.workers)
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None

    def serve_worker(worker: Worker) -> int:
        return serve(args, prepared_app(args), context, worker)  # the code on disk now

    if args.metrics or args.metrics_port is not None or args.status_page:  # the page shows the sum too
        args.metrics_dir = tempfile.mkdtemp(prefix="websock-actors-metrics-")  # fresh for this run
    say_status_page(args, args.host, args.port, context is not None)
    try:
        return run_workers(
            args.workers,
            serve_worker,
            listener=listener,
            listeners=listeners,
            shutdown_timeout=args.shutdown_timeout,
            worker_timeout=args.worker_timeout,
        )
    finally:
        if getattr(args, "metrics_dir", None) is not None and os.getpid() == master:
            shutil.rmtree(args.metrics_dir, ignore_errors=True)


def _import_the_library() -> None:
    """The library's own modules, once in the master: a worker then imports only the app's
    (what a restart is for), which keeps its start-up short."""
    import importlib

    for module in ("server", "typed", "typed.app", "compat.wsgi"):
        importlib.import_module(f"{__package__.rpartition('.')[0]}.{module}")


def _steered_listeners(args: argparse.Namespace) -> list[socket.socket] | None:
    """With per-IP caps under --workers, one listener per worker with each client address
    steered to one of them (scale/steering.py), so that the caps hold across workers. Not
    behind trusted proxies: their clients' addresses are in headers the kernel cannot see,
    and steering by the proxies' own would send nearly everything to one worker."""
    from ..scale.steering import steered_listeners

    per_ip = args.max_connections_per_ip is not None or args.max_handshakes_per_ip is not None
    if not per_ip or args.forwarded_allow_ips:
        return None
    return steered_listeners(args.host, args.port, args.workers)
