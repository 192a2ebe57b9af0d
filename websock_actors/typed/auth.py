"""Authentication of typed apps, before the upgrade.

    @app.authenticate
    def who(request: AuthRequest) -> User:
        user = USERS.get(request.query.get("token", [""])[0])
        if user is None:
            raise AppRefusal(401, "a token is needed")
        return user                      # kept for the handlers: ctx.identity

The hook runs for every WebSocket upgrade request, before the 101: an identity (anything
but None) admits the connection, `AppRefusal(401 | 403, reason)` refuses it with that HTTP
status, None refuses it with 401, and any other exception answers 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from ..protocol.http import Headers, Request

__all__ = ["AuthRequest", "Authenticator"]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """The upgrade request as an authentication hook sees it.

    `path` is without the query string; `query` is it parsed (`urllib.parse.parse_qs`);
    `headers` are looked up case-insensitively; `cookies` are the Cookie header's name and
    value pairs (`http.cookies`); `peer` is the client's address as the TCP connection gives
    it; `request` is the whole request.
    """

    path: str
    query: dict[str, list[str]]
    headers: Headers
    cookies: dict[str, str]
    peer: Any
    request: Request

    @classmethod
    def of(cls, request: Request) -> AuthRequest:
        headers = request.headers
        return cls(request.bare_path, request.query, headers, _cookies(headers), request.peer, request)


Authenticator = Callable[[AuthRequest], Any]


def _cookies(headers: Headers) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for value in headers.get_all("Cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            continue
        cookies.update((name, morsel.value) for name, morsel in jar.items())
    return cookies
