"""`schema|asyncapi|typescript MODULE:ATTR`: a typed app's message documents, printed (or
written to `-o FILE`, for `typescript`)."""

from __future__ import annotations

import argparse

from .loading import load_app

__all__ = ["describe_app"]


def describe_app(args: argparse.Namespace) -> int:
    """Print the app's JSON Schema, AsyncAPI document or TypeScript types (no patching:
    nothing is served)."""
    import json

    from ..compat.wsgi import WSGIMount
    from ..typed.app import App
    from ..typed.typescript import typescript_definitions

    app = load_app(args.app)
    address = "/"
    if isinstance(app, WSGIMount):  # a typed app behind a WSGI app: described at its path
        address = app.websocket_path
        app = app.websocket_app
    if not isinstance(app, App):
        raise SystemExit(f"error: {args.app} is not a typed websock_actors.App (or a WSGIMount of one)")
    if args.command == "typescript":
        text = typescript_definitions(
            app.router, app.pushes, title=app.title, version=app.version, numbered=app.resumption is not None
        )
        if args.output is None:
            print(text, end="")
        else:
            try:
                with open(args.output, "w", encoding="utf-8") as file:
                    file.write(text)
            except OSError as exc:
                raise SystemExit(f"error: cannot write {args.output}: {exc.strerror}") from None
        return 0
    document = app.json_schema() if args.command == "schema" else app.asyncapi(address=address)
    print(json.dumps(document, indent=2))
    return 0

