"""Which application to serve: `MODULE:ATTR` imported, and the typed App inside it; then
checked against the flags (`prepared_app`), in each process that serves it."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..server import Application
    from ..typed.app import App

__all__ = ["load_app", "prepared_app", "typed_app"]


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

def typed_app(app: Any) -> App | None:
    """The typed App served (behind a WSGIMount too), or None for a raw application."""
    from ..compat.wsgi import WSGIMount
    from ..typed.app import App

    if isinstance(app, WSGIMount):
        app = app.websocket_app
    return app if isinstance(app, App) else None


def prepared_app(args: argparse.Namespace) -> Application:
    """`args.app` imported and checked against the flags: in the process that serves it (a
    worker of `--workers N` imports it after the fork, so that a new one runs the code on disk)."""
    from ..server import Application

    app = load_app(args.app)
    if not isinstance(app, Application):
        raise SystemExit(f"error: {args.app} is not a websock_actors Application")
    typed = typed_app(app)
    if args.redis is not None and typed is None:
        raise SystemExit("error: --redis needs a typed App")
    if args.api_key is not None and typed is None:
        raise SystemExit("error: the server API (--api-key-file, $WEBSOCK_ACTORS_API_KEY) needs a typed App")
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
    return app
