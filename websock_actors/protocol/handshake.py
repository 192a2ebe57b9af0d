"""The opening handshake (RFC 6455 section 4), sans I/O, for both roles.

The server side parses an HTTP/1.1 Upgrade request from bytes, validates it, and builds
the 101 answer or an HTTP error answer. The client side builds the request and checks
the server's answer, `Sec-WebSocket-Accept` included.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TypeAlias

from ..errors import HandshakeError

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "Extension",
    "Headers",
    "Request",
    "Response",
    "accept_key",
    "build_request",
    "build_response",
    "error_response",
    "generate_key",
    "header_tokens",
    "parse_extensions",
    "parse_request",
    "parse_response",
    "render_response",
    "validate_request",
    "validate_response",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
_MAX_HEADERS = 128
# A header name is an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')
_ESCAPE = re.compile(r"\\(.)")

# One entry of a Sec-WebSocket-Extensions header: the name and its (parameter, value) pairs.
Extension: TypeAlias = tuple[str, list[tuple[str, str | None]]]


class Headers:
    """HTTP headers in arrival order, looked up case-insensitively."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The values of `name` joined with ", " (RFC 9110 5.3), or `default`."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self._items if k.lower() == lowered]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    version: str
    headers: Headers


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: Headers
    body: bytes = field(default=b"")


def header_tokens(value: str | None) -> list[str]:
    """The comma-separated tokens of a header value, stripped and lower-cased."""
    if not value:
        return []
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def parse_extensions(value: str) -> list[Extension]:
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 section 9.1) into (name, params).

    `extension *( ";" param [ "=" ( token / quoted-string ) ] )`, comma-separated, with
    optional whitespace; a parameter without a value has None. Empty list elements are
    skipped (RFC 9110 5.6.1). Raises HandshakeError(400) saying what is wrong and where.
    """
    extensions: list[Extension] = []
    end = len(value)

    def fail(pos: int, expected: str) -> HandshakeError:
        found = repr(value[pos]) if pos < end else "the end"
        return HandshakeError(400, f"expected {expected} at offset {pos} of {value!r}, found {found}")

    def skip(pos: int) -> int:
        return _OWS.match(value, pos).end()  # type: ignore[union-attr]

    def token(pos: int, what: str) -> tuple[str, int]:
        match = _TOKEN.match(value, pos)
        if match is None:
            raise fail(pos, what)
        return match.group(), match.end()

    pos = skip(0)
    while pos < end:
        if value[pos] == ",":
            pos = skip(pos + 1)
            continue
        name, pos = token(pos, "an extension name")
        params: list[tuple[str, str | None]] = []
        pos = skip(pos)
        while pos < end and value[pos] == ";":
            param, pos = token(skip(pos + 1), "a parameter name")
            argument: str | None = None
            pos = skip(pos)
            if pos < end and value[pos] == "=":
                pos = skip(pos + 1)
                quoted = _QUOTED.match(value, pos)
                if quoted is not None:
                    argument, pos = _ESCAPE.sub(r"\1", quoted.group(1)), quoted.end()
                    # RFC 6455 9.1: a quoted value must be a token once unquoted.
                    if not _TOKEN.fullmatch(argument):
                        raise HandshakeError(400, f"quoted value of {param} is not a token: {argument!r}")
                else:
                    argument, pos = token(pos, "a parameter value")
                pos = skip(pos)
            params.append((param, argument))
        if pos < end and value[pos] != ",":
            raise fail(pos, "',' or ';'")
        extensions.append((name, params))
    return extensions


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def generate_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def _split_head(data: bytes, max_bytes: int) -> tuple[bytes, bytes] | None:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > max_bytes:
            raise HandshakeError(431, "request headers too large")
        return None
    if end + 4 > max_bytes:
        raise HandshakeError(431, "request headers too large")
    return data[:end], data[end + 4 :]


def _parse_header_lines(lines: list[bytes]) -> Headers:
    if len(lines) > _MAX_HEADERS:
        raise HandshakeError(431, "too many request headers")
    items: list[tuple[str, str]] = []
    for raw in lines:
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise HandshakeError(400, "non-ASCII bytes in a header line") from None
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise HandshakeError(400, f"malformed header line {line[:64]!r}")
        items.append((name, value.strip(" \t")))
    return Headers(items)


def parse_request(
    data: bytes, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> tuple[Request, bytes] | None:
    """Parse a request head from `data`: (request, bytes after it), or None when incomplete."""
    split = _split_head(data, max_header_bytes)
    if split is None:
        return None
    head, rest = split
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HandshakeError(400, "malformed request line")
    try:
        method, path, version = (p.decode("ascii") for p in parts)
    except UnicodeDecodeError:
        raise HandshakeError(400, "non-ASCII bytes in the request line") from None
    if not version.startswith("HTTP/1."):
        raise HandshakeError(505, "HTTP/1.1 required")
    return Request(method, path, version, _parse_header_lines(lines[1:])), rest


def validate_request(request: Request) -> str:
    """Check a WebSocket upgrade request (RFC 6455 4.2.1); return its `Sec-WebSocket-Key`."""
    headers = request.headers
    if request.method != "GET":
        raise HandshakeError(405, "WebSocket upgrade needs GET", [("Allow", "GET")])
    if request.version != "HTTP/1.1":
        raise HandshakeError(400, "WebSocket upgrade needs HTTP/1.1")
    if len(headers.get_all("Host")) != 1:
        raise HandshakeError(400, "missing or repeated Host header")
    if "websocket" not in header_tokens(headers.get("Upgrade")):
        raise HandshakeError(
            426, "missing Upgrade: websocket header", [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        )
    if "upgrade" not in header_tokens(headers.get("Connection")):
        raise HandshakeError(400, "missing Connection: upgrade header")
    version = headers.get("Sec-WebSocket-Version")
    if version is None:
        raise HandshakeError(426, "missing Sec-WebSocket-Version", [("Sec-WebSocket-Version", "13")])
    if version.strip() != "13":
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version", [("Sec-WebSocket-Version", "13")])
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise HandshakeError(400, "missing or repeated Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise HandshakeError(400, "Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes, base64-encoded")
    return key


def _render(status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def build_response(
    key: str,
    *,
    subprotocol: str | None = None,
    extensions: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """The 101 Switching Protocols answer for a validated request."""
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    headers.extend(extra_headers)
    return _render(101, "Switching Protocols", headers)


def error_response(status: int, detail: str = "", headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An HTTP error answer whose plain-text body says why."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = (detail or phrase).encode("utf-8") + b"\n"
    return Response(status, phrase, Headers([("Content-Type", "text/plain; charset=utf-8"), *headers]), body)


def render_response(response: Response) -> bytes:
    """Serialize a plain HTTP answer; the connection is closed after it."""
    headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-length", "connection")]
    headers.append(("Content-Length", str(len(response.body))))
    headers.append(("Connection", "close"))
    return _render(response.status, response.reason, headers, response.body)


# -- client side --------------------------------------------------------------------


def build_request(
    host: str,
    path: str,
    key: str,
    *,
    subprotocols: Iterable[str] = (),
    extensions: str | None = None,
    origin: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    headers = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    protocols = list(subprotocols)
    if protocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    if origin:
        headers.append(("Origin", origin))
    headers.extend(extra_headers)
    lines = [f"GET {path or '/'} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_response(
    data: bytes, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> tuple[Response, bytes] | None:
    """Parse a response head: (response, bytes after it), or None when incomplete."""
    split = _split_head(data, max_header_bytes)
    if split is None:
        return None
    head, rest = split
    lines = head.split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ", 2)
    # isascii: str.isdigit() also accepts "²" and other digits that int() refuses.
    status_ok = len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit()
    if not status_ok or not parts[0].startswith("HTTP/1."):
        raise HandshakeError(502, "malformed status line")
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", _parse_header_lines(lines[1:])), rest


def validate_response(
    response: Response, key: str, subprotocols: Iterable[str] = (), *, extensions: Iterable[str] = ()
) -> str | None:
    """Check the server's answer to our upgrade request; return the chosen subprotocol.

    `extensions` names the extensions offered: the answer may accept only those (check its
    parameters with the extension's own code, e.g. `deflate.client_accept`).
    """
    if response.status != 101:
        raise HandshakeError(response.status, f"server answered {response.status} {response.reason}")
    headers = response.headers
    if "websocket" not in header_tokens(headers.get("Upgrade")):
        raise HandshakeError(502, "response lacks Upgrade: websocket")
    if "upgrade" not in header_tokens(headers.get("Connection")):
        raise HandshakeError(502, "response lacks Connection: upgrade")
    if headers.get("Sec-WebSocket-Accept") != accept_key(key):
        raise HandshakeError(502, "wrong Sec-WebSocket-Accept")
    chosen = headers.get("Sec-WebSocket-Protocol")
    if chosen is not None and chosen not in set(subprotocols):
        raise HandshakeError(502, f"server chose a subprotocol we did not offer: {chosen!r}")
    accepted = headers.get("Sec-WebSocket-Extensions")
    if accepted:
        try:
            names = {name for name, _ in parse_extensions(accepted)}
        except HandshakeError as exc:
            raise HandshakeError(502, f"malformed Sec-WebSocket-Extensions: {exc.reason}") from None
        if not names <= set(extensions):
            raise HandshakeError(502, "server accepted an extension we did not offer")
    return chosen
