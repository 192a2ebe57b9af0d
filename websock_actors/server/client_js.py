"""GET /_wsa/client.js: the browser client library (clients/js/src/client.js), served.

The bytes are read and gzipped once, when the server is made; every answer is one of two
prepared bodies. Each representation has a strong ETag (a hash of its own bytes: the gzipped
one differs from the plain one, as RFC 9110 asks of content codings), and a request whose
`If-None-Match` names either (or `*`) gets 304 without a body.

`Cache-Control: no-cache` with the ETag, not a max-age: the URL carries no version, and the
library speaks the resume protocol of the server it is loaded from, so a browser asks again
on every page load (a 304 of a few hundred bytes) instead of running an older copy for an
hour after an upgrade. Everything else under /_wsa/ is reserved: 404.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

from ..protocol.http import Headers, Request, Response, error_response, header_tokens

__all__ = ["CLIENT_JS_PATH", "WSA_PATH", "ClientScript", "accepts_gzip"]

WSA_PATH = "/_wsa"  # the server's own files, reserved whether the client is served or not
CLIENT_JS_PATH = WSA_PATH + "/client.js"

_CONTENT_TYPE = "text/javascript; charset=utf-8"


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def accepts_gzip(value: str | None) -> bool:
    """Whether an Accept-Encoding value accepts gzip (`gzip`, `x-gzip` or `*`, not at q=0)."""
    allowed: dict[str, bool] = {}
    for token in header_tokens(value):
        coding, _, params = token.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, q = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(q)
                except ValueError:
                    weight = 0.0
        allowed[coding.strip()] = weight > 0
    if "gzip" in allowed or "x-gzip" in allowed:
        return allowed.get("gzip", False) or allowed.get("x-gzip", False)
    return allowed.get("*", False)


def _matches(if_none_match: str | None, etags: tuple[str, ...]) -> bool:
    """Whether If-None-Match names one of `etags` (weak comparison, as RFC 9110 13.1.2 says)."""
    if if_none_match is None:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") in etags:
            return True
    return False


class ClientScript:
    """The library's two representations (plain and gzipped), and the answer to a request."""

    __slots__ = ("_gzip", "_gzip_etag", "_plain", "_plain_etag")

    def __init__(self, source: bytes | None = None) -> None:
        if source is None:
            source = resources.files("websock_actors").joinpath("static/client.js").read_bytes()
        self._plain = source
        self._gzip = gzip.compress(source, 9, mtime=0)
        self._plain_etag, self._gzip_etag = _etag(self._plain), _etag(self._gzip)

    @property
    def gzip_size(self) -> int:
        """The size of the gzipped body, as served to a client that accepts gzip."""
        return len(self._gzip)

    def answer(self, request: Request, upgrade: bool) -> Response:
        """GET or HEAD of /_wsa/client.js: 200, or 304; 404 for other paths under /_wsa/ and
        for an upgrade, 405 for other methods."""
        if upgrade or request.bare_path != CLIENT_JS_PATH:
            return error_response(404, "not found")
        if request.method not in ("GET", "HEAD"):
            return error_response(405, "GET or HEAD", [("Allow", "GET, HEAD")])
        zipped = accepts_gzip(request.headers.get("Accept-Encoding"))
        etag = self._gzip_etag if zipped else self._plain_etag
        headers = [("ETag", etag), ("Cache-Control", "no-cache"), ("Vary", "Accept-Encoding")]
        if _matches(request.headers.get("If-None-Match"), (self._plain_etag, self._gzip_etag)):
            return Response(304, "Not Modified", Headers(headers))
        headers.append(("Content-Type", _CONTENT_TYPE))
        if zipped:
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, "OK", Headers(headers), self._gzip if zipped else self._plain)
