"""The master of `--workers N`: the port checked, the workers forked and supervised
(scale/workers.py), client addresses steered when per-IP caps must hold across them."""

from __future__ import annotations

import argparse
import os
import ssl
from typing import TYPE_CHECKING

from .serve import say_status_page, serve

if TYPE_CHECKING:
    import socket

    from ..scale.workers import Worker
    from ..server import Application

__all__ = ["prefork"]


def prefork(args: argparse.Namespace, app: Application, context: ssl.SSLContext | None) -> int:
    """The master of `--workers N`: bind-check the port, fork, supervise (scale/workers.py)."""
    import shutil
    import tempfile

    from ..scale.workers import prepare_listener, run_workers

    master = os.getpid()

    try:
        listener = prepare_listener(args.host, args.port)
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    steered = _steered_listeners(args) if listener is None else None

    def serve_worker(worker: Worker) -> int:
        if steered is not None:  # worker i serves listener i: the addresses steered to it
            worker.listener = steered[worker.index - 1]
            for other in steered:
                if other is not worker.listener:
                    other.close()  # the master keeps them open: the group keeps its order
        return serve(args, app, context, worker)

    if args.metrics or args.metrics_port is not None or args.status_page:  # the page shows the sum too
        args.metrics_dir = tempfile.mkdtemp(prefix="websock-actors-metrics-")  # fresh for this run
    say_status_page(args, args.host, args.port, context is not None)
    try:
        return run_workers(
            args.workers,
            serve_worker,
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
    from ..scale.steering import steered_listeners

    per_ip = args.max_connections_per_ip is not None or args.max_handshakes_per_ip is not None
    if not per_ip or args.forwarded_allow_ips:
        return None
    return steered_listeners(args.host, args.port, args.workers)

