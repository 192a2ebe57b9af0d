"""HTTP/1.1 as the opening handshake needs it, sans I/O: heads parsed from bytes, answers rendered.

Request and response heads (bounded in bytes and header count), case-insensitive headers,
the comma-separated token lists and the Sec-WebSocket-Extensions grammar of RFC 6455
section 9.1, and plain answers (errors, pages) that close the connection.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeAlias
from urllib.parse import parse_qs

from ..errors import LocalHandshakeRefusal, RemoteHandshakeRefusal

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "Extension",
    "Headers",
    "Request",
    "Response",
    "error_response",
    "header_tokens",
    "parse_extensions",
    "parse_request",
    "parse_response",
    "render",
    "render_response",
]

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # a plain request's body: the server API's JSON
_MAX_HEADERS = 128
# A header name is an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')
_ESCAPE = re.compile(r"\\(.)")
# Characters a header value or a request target may not hold (tab is allowed in values).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# One entry of a Sec-WebSocket-Extensions header: the name and its (parameter, value) pairs.
Extension: TypeAlias = tuple[str, list[tuple[str, str | None]]]

class Headers:
    """HTTP headers in arrival order, looked up case-insensitively.

    `pack` keeps them as one bytes string until they are read again: an open connection
    holds its upgrade request's headers for its whole life, and a list of (name, value)
    strings, an object per string and per pair, costs far more than the bytes themselves
    (benchmarks/idle_rss.py measures the memory per connection)."""

    __slots__ = ("_items", "_packed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] | None = list(items)
        self._packed = b""

    @property
    def _list(self) -> list[tuple[str, str]]:
        items = self._items
        if items is None:
            lines = self._packed.decode("ascii").split("\r\n") if self._packed else []
            items = self._items = [(n, v) for n, _, v in (line.partition(":") for line in lines)]
            self._packed = b""
        return items

    def pack(self) -> None:
        """Hold the headers as bytes (ASCII: as parsed) until they are looked at again."""
        items = self._items
        if items is not None and all(n.isascii() and v.isascii() for n, v in items):
            self._packed = "\r\n".join(f"{n}:{v}" for n, v in items).encode("ascii")
            self._items = None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The values of `name` joined with ", " (RFC 9110 5.3), or `default`."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [v for k, v in self._list if k.lower() == lowered]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._list)

    def __len__(self) -> int:
        return len(self._list)

    def __repr__(self) -> str:
        return f"Headers({self._list!r})"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    version: str
    headers: Headers
    peer: Any = None  # the client's address, set by the server that received it
    scheme: str = "ws"  # "wss" when a trusted proxy's X-Forwarded-Proto says the client used TLS
    identity: Any = None  # what a typed app's authentication hook returned for it
    body: bytes = b""  # a plain HTTP request's body (Content-Length only; handshake.py reads it)

    @property
    def bare_path(self) -> str:
        """The path of the request target, without its query string."""
        return self.path.partition("?")[0]

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string, parsed (`?a=1&a=2&b=` -> `{"a": ["1", "2"]}`, as parse_qs gives)."""
        return parse_qs(self.path.partition("?")[2])


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
    skipped (RFC 9110 5.6.1). Raises LocalHandshakeRefusal(400) saying what is wrong and where.
    """
    extensions: list[Extension] = []
    end = len(value)

    def fail(pos: int, expected: str) -> LocalHandshakeRefusal:
        found = repr(value[pos]) if pos < end else "the end"
        shown = value if len(value) <= 64 else value[:64] + "..."  # an error never quotes a whole header
        return LocalHandshakeRefusal(400, f"expected {expected} at offset {pos} of {shown!r}, found {found}")

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
                        shown = argument[:64]
                        raise LocalHandshakeRefusal(400, f"quoted value of {param} is not a token: {shown!r}")
                else:
                    argument, pos = token(pos, "a parameter value")
                pos = skip(pos)
            params.append((param, argument))
        if pos < end and value[pos] != ",":
            raise fail(pos, "',' or ';'")
        extensions.append((name, params))
    return extensions


def _split_head(data: bytes, max_bytes: int) -> tuple[bytes, bytes] | None:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > max_bytes:
            raise LocalHandshakeRefusal(431, "request headers too large")
        return None
    if end + 4 > max_bytes:
        raise LocalHandshakeRefusal(431, "request headers too large")
    return data[:end], data[end + 4 :]


def _parse_header_lines(lines: list[bytes]) -> Headers:
    if len(lines) > _MAX_HEADERS:
        raise LocalHandshakeRefusal(431, "too many request headers")
    items: list[tuple[str, str]] = []
    for raw in lines:
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise LocalHandshakeRefusal(400, "non-ASCII bytes in a header line") from None
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise LocalHandshakeRefusal(400, f"malformed header line {line[:64]!r}")
        if _CONTROL.search(value):  # a bare CR or LF, NUL, ... (RFC 9110 5.5)
            raise LocalHandshakeRefusal(400, f"control character in the value of {name[:64]}")
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
        raise LocalHandshakeRefusal(400, "malformed request line")
    try:
        method, path, version = (p.decode("ascii") for p in parts)
    except UnicodeDecodeError:
        raise LocalHandshakeRefusal(400, "non-ASCII bytes in the request line") from None
    if _CONTROL.search(method) or _CONTROL.search(path) or "\t" in path:
        raise LocalHandshakeRefusal(400, "control character in the request line")
    if not version.startswith("HTTP/1."):
        raise LocalHandshakeRefusal(505, "HTTP/1.1 required")
    # Interned: every connection keeps its request, and they all say "GET" and "HTTP/1.1".
    return Request(sys.intern(method), path, sys.intern(version), _parse_header_lines(lines[1:])), rest


def render(status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(status: int, detail: str = "", headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An HTTP error answer whose plain-text body says why."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = (detail or phrase).encode("utf-8") + b"\n"
    return Response(status, phrase, Headers([("Content-Type", "text/plain; charset=utf-8"), *headers]), body)


def render_response(response: Response, *, head: bool = False) -> bytes:
    """Serialize a plain HTTP answer; the connection is closed after it. For a HEAD request
    (`head`), the body is left out and Content-Length still gives its size."""
    length = str(len(response.body))
    given = response.headers.get("Content-Length")
    if head and not response.body and given is not None and given.isdigit():
        length = given  # an application that already left the body out of its HEAD answer
    headers = [(k, v) for k, v in response.headers if k.lower() not in ("content-length", "connection")]
    if response.status not in (204, 304):  # no content, and a 304's length would be the 200's
        headers.append(("Content-Length", length))
    headers.append(("Connection", "close"))
    return render(response.status, response.reason, headers, b"" if head else response.body)


def parse_response(
    data: bytes, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> tuple[Response, bytes] | None:
    """Parse a response head: (response, bytes after it), or None when incomplete.

    An answer that is not HTTP/1.x raises RemoteHandshakeRefusal with no status.
    """
    try:
        split = _split_head(data, max_header_bytes)
        if split is None:
            return None
        head, rest = split
        lines = head.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        # Three ASCII digits (RFC 9110 15): isdigit() alone also accepts "²", and int() refuses
        # a number of over 4,300 digits with a ValueError.
        status_ok = len(parts) >= 2 and len(parts[1]) == 3 and parts[1].isascii() and parts[1].isdigit()
        if not status_ok or not parts[0].startswith("HTTP/1."):
            raise RemoteHandshakeRefusal(None, "malformed status line")
        headers = _parse_header_lines(lines[1:])
    except LocalHandshakeRefusal as exc:  # the head rules are the same both ways
        raise RemoteHandshakeRefusal(None, exc.reason.replace("request", "response")) from None
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers), rest
