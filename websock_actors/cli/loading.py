"""Which application to serve: `MODULE:ATTR` imported, and the typed App inside it."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..typed.app import App

__all__ = ["load_app", "typed_app"]


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

