"""The plain HTTP side of a typed App: its pages, and the authentication hook that runs
before a WebSocket upgrade.

A plain GET gets the page registered for its path (`app.page`); with pages, an unknown path
gets 404 rather than the server's 426. An upgrade request goes through `@app.authenticate`
first: an identity admits it (kept on the request, later `ctx.identity`), `AppRefusal` or None
refuses it with an HTTP status.
"""

from __future__ import annotations

import logging

from ..errors import AppRefusal
from ..protocol.http import Headers, Request, Response, error_response, header_tokens
from .auth import Authenticator, AuthRequest

__all__ = ["HttpSide"]

log = logging.getLogger("websock_actors")


class HttpSide:
    """The pages of one App and its authentication hook."""

    def __init__(self) -> None:
        self.pages: dict[str, Response] = {}
        self.authenticator: Authenticator | None = None

    def add_page(self, path: str, body: str | bytes, content_type: str) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.pages[path] = Response(200, "OK", Headers([("Content-Type", content_type)]), data)

    def handle_request(self, request: Request) -> Response | None:
        """Plain GETs get the app's pages; with pages, an unknown path gets 404 (not 426)."""
        plain = "websocket" not in header_tokens(request.headers.get("Upgrade"))
        if plain and request.method in ("GET", "HEAD"):
            page = self.pages.get(request.bare_path)
            if page is None and self.pages:
                return error_response(404, "not found")
            return page
        if not plain and self.authenticator is not None:
            return authenticated(request, self.authenticator)
        return None


def authenticated(request: Request, authenticate: Authenticator) -> Response | None:
    """Run the hook: None to go on (the identity kept on the request), or the refusal.
    Any exception but AppRefusal propagates: the server answers 500 and logs it."""
    try:
        identity = authenticate(AuthRequest.of(request))
    except AppRefusal as exc:
        log.debug("%s: authentication refused (%d): %s", request.peer, exc.status, exc.reason[:64])
        return error_response(exc.status, exc.reason, exc.headers)
    if identity is None:
        return error_response(401, "authentication required")
    request.identity = identity
    return None
