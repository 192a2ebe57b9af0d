"""`schema|asyncapi MODULE:ATTR`: a typed app's message documents, printed."""

from __future__ import annotations

import argparse

from .loading import load_app

__all__ = ["describe_app"]


def describe_app(args: argparse.Namespace) -> int:
    """Print the app's JSON Schema or AsyncAPI document (no patching: nothing is served)."""
    import json

    from ..compat.wsgi import WSGIMount
    from ..typed.app import App

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

