"""`run`: the flags checked, then the app served by this process, by `--workers N` forked
processes (each imports it), or, with `--reload`, by a child restarted on each change."""

from __future__ import annotations

import argparse
import os
import ssl
import sys

from .loading import prepared_app
from .prefork import prefork
from .reload import reloaded, supervise
from .serve import backplane_class, serve

__all__ = ["read_api_key", "run_app"]


def run_app(args: argparse.Namespace) -> int:
    if args.reload and args.workers > 1:  # exit 2, as argparse for a usage error
        refusal = "error: --reload serves from one process: drop --workers (SIGHUP restarts workers)"
        print(refusal, file=sys.stderr)
        return 2
    if args.workers > 1 and args.port == 0:
        raise SystemExit("error: --workers needs a fixed --port: the workers all listen on it (SO_REUSEPORT)")
    if args.worker_timeout < 0:
        raise SystemExit(f"error: --worker-timeout must be 0 (off) or more, not {args.worker_timeout:g}")
    if args.reload and not reloaded():
        return supervise(args)  # a plain process: it watches the files and runs the server
    _status_token(args)
    read_api_key(args)
    if not args.no_patch:
        from gevent import monkey

        monkey.patch_all()

    from ..server.logs import configure_logging

    configure_logging(args.log_level, args.log_format, process=args.workers > 1)
    if args.redis is not None:
        backplane_class()  # imported once, before any fork: a missing redis-py fails here
    context = _tls_context(args)
    if args.workers == 1:
        return serve(args, prepared_app(args), context)
    return prefork(args, context)  # each worker imports the app after the fork


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

def read_api_key(args: argparse.Namespace) -> None:
    """The server API's key: from --api-key-file, else $WEBSOCK_ACTORS_API_KEY (never a
    plain flag: a command line is visible to every user of the host); None: the API is off."""
    key = os.environ.get("WEBSOCK_ACTORS_API_KEY")
    source = "$WEBSOCK_ACTORS_API_KEY"
    if args.api_key_file is not None:
        source = args.api_key_file
        try:
            with open(args.api_key_file, encoding="utf-8") as file:
                key = file.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"error: cannot read --api-key-file: {exc}") from None
    if key is not None and not key.strip():
        raise SystemExit(f"error: the API key in {source} is empty")
    args.api_key = key.strip() if key is not None else None


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """Built once (before any fork): a missing or unreadable certificate fails at once."""
    from ..errors import ConfigurationError
    from ..server import tls_context

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

