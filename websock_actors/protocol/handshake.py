"""The opening handshake (RFC 6455 section 4), sans I/O: one object per connection and role.

A handshake object is a connection in its CONNECTING state. `ServerHandshake` reads a
client's upgrade request from bytes, checks it against the server's `HandshakePolicy`
(Origin, subprotocols, permessage-deflate) and answers: the 101 with an open
`WebSocketConnection` and its codec, or an HTTP refusal. `ClientHandshake` writes the
request, reads the server's answer, checks it (`Sec-WebSocket-Accept` included) and opens
the client's connection. The drivers (server, client) only move bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import LocalHandshakeRefusal, RemoteHandshakeRefusal
from .connection import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    ConnectionState,
    Role,
    WebSocketConnection,
)
from .deflate import (
    EXTENSION_NAME,
    CompressorPool,
    DeflateOptions,
    DeflateParameters,
    PerMessageDeflate,
    client_accept,
    client_offer,
    server_negotiate,
)
from .http import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    Request,
    Response,
    error_response,
    header_tokens,
    parse_extensions,
    parse_request,
    parse_response,
    render,
    render_response,
)

__all__ = [
    "ClientHandshake",
    "HandshakePolicy",
    "ServerHandshake",
    "accept_key",
    "build_request",
    "build_response",
    "generate_key",
    "validate_request",
    "validate_response",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def generate_key() -> str:
    return base64.b64encode(os.urandom(16)).decode("ascii")


def validate_request(request: Request) -> str:
    """Check a WebSocket upgrade request (RFC 6455 4.2.1); return its `Sec-WebSocket-Key`."""
    headers = request.headers
    if request.method != "GET":
        raise LocalHandshakeRefusal(405, "WebSocket upgrade needs GET", [("Allow", "GET")])
    if request.version != "HTTP/1.1":
        raise LocalHandshakeRefusal(400, "WebSocket upgrade needs HTTP/1.1")
    if len(headers.get_all("Host")) != 1:
        raise LocalHandshakeRefusal(400, "missing or repeated Host header")
    if "websocket" not in header_tokens(headers.get("Upgrade")):
        raise LocalHandshakeRefusal(
            426, "missing Upgrade: websocket header", [("Upgrade", "websocket"), ("Connection", "Upgrade")]
        )
    if "upgrade" not in header_tokens(headers.get("Connection")):
        raise LocalHandshakeRefusal(400, "missing Connection: upgrade header")
    version = headers.get("Sec-WebSocket-Version")
    if version is None:
        raise LocalHandshakeRefusal(
            426, "missing Sec-WebSocket-Version", [("Sec-WebSocket-Version", "13")]
        )
    if version.strip() != "13":
        raise LocalHandshakeRefusal(
            426, "unsupported Sec-WebSocket-Version", [("Sec-WebSocket-Version", "13")]
        )
    keys = headers.get_all("Sec-WebSocket-Key")
    if len(keys) != 1:
        raise LocalHandshakeRefusal(400, "missing or repeated Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise LocalHandshakeRefusal(400, "Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise LocalHandshakeRefusal(400, "Sec-WebSocket-Key must be 16 bytes, base64-encoded")
    return key


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
    return render(101, "Switching Protocols", headers)


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


# -- the server side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandshakePolicy:
    """What a server accepts in an opening handshake, and the limits of the connection it opens."""

    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # a plain HTTP request's body (the server API's)
    origins: Sequence[str | None] | None = None  # None: any Origin
    subprotocols: Sequence[str] = ()  # in the server's order of preference
    compression: DeflateOptions | None = None  # permessage-deflate, when not None
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS


class ServerHandshake:
    """One client's opening handshake, as the server sees it.

    `receive_data` until it returns the request; then `accept` (which validates it and
    negotiates) gives the 101 answer and the open connection, or raises LocalHandshakeRefusal,
    whose answer `refuse` renders. `state` is CONNECTING until then, OPEN or CLOSED after.
    """

    __slots__ = (
        "_body_wanted", "_buffer", "_compressors", "_head", "declined", "policy", "request", "rest", "state",
        "subprotocol",
    )  # fmt: skip

    def __init__(self, policy: HandshakePolicy, compressors: CompressorPool | None = None) -> None:
        self.policy = policy
        self.state = ConnectionState.CONNECTING
        self.request: Request | None = None
        self.rest = b""  # bytes the client sent after its request head (its first frames)
        self.subprotocol: str | None = None
        self.declined: list[str] = []  # why permessage-deflate offers were declined, for the log
        self._buffer = b""
        self._compressors = compressors
        self._head: Request | None = None  # a plain request whose body is still coming
        self._body_wanted = 0

    def receive_data(self, data: bytes) -> Request | None:
        """Feed bytes of the request head (and of a plain request's body): the request once it
        is complete, else None.

        Raises LocalHandshakeRefusal (400, 411, 413, 431, 505) for a head that cannot be a
        request, or a body that is chunked or over `policy.max_body_bytes`.
        """
        if self.request is not None:
            self.rest += data
            return self.request
        head = self._head
        if head is not None:
            self._buffer += data
            return self._body_done(head) if len(self._buffer) >= self._body_wanted else None
        self._buffer += data
        parsed = parse_request(self._buffer, self.policy.max_header_bytes)
        if parsed is None:
            return None
        request, rest = parsed
        wanted = 0 if _is_upgrade(request) else self._body_length(request)
        if not wanted:
            self.request, self.rest = request, rest
            self._buffer = b""
            return request
        self._head, self._body_wanted, self._buffer = request, wanted, rest
        return self._body_done(request) if len(rest) >= wanted else None

    def _body_length(self, request: Request) -> int:
        """The length of a plain request's body; only Content-Length bodies, and bounded."""
        headers = request.headers
        if headers.get("Transfer-Encoding") is not None:
            raise LocalHandshakeRefusal(411, "a request body needs Content-Length (no chunked encoding)")
        value = headers.get("Content-Length")
        if value is None:
            return 0
        value = value.strip()
        if not value.isdigit() or not value.isascii() or len(headers.get_all("Content-Length")) > 1:
            raise LocalHandshakeRefusal(400, "invalid Content-Length")
        length = int(value)
        if length > self.policy.max_body_bytes:
            raise LocalHandshakeRefusal(413, "request body too large")
        return length

    def _body_done(self, head: Request) -> Request:
        wanted = self._body_wanted
        head.body, self.rest = self._buffer[:wanted], self._buffer[wanted:]
        self._buffer, self._head, self.request = b"", None, head
        return head

    @property
    def is_upgrade(self) -> bool:
        """The request asks for a WebSocket (`Upgrade: websocket`); False for plain HTTP."""
        request = self.request
        return request is not None and _is_upgrade(request)

    def accept(self) -> tuple[bytes, WebSocketConnection]:
        """Check the request and negotiate: the 101 answer and the open connection.

        Raises LocalHandshakeRefusal (405, 400, 426, 403) when the request may not be upgraded.
        """
        request = self.request
        if request is None:
            raise RuntimeError("accept() before the request head was received")
        policy = self.policy
        key = validate_request(request)
        if policy.origins is not None and request.headers.get("Origin") not in policy.origins:
            raise LocalHandshakeRefusal(403, "origin not allowed")
        self.subprotocol = self._choose_subprotocol(request)
        params = self._negotiate_compression(request)
        deflate = None
        if params is not None:
            assert policy.compression is not None
            if self._compressors is None:
                self._compressors = CompressorPool(policy.compression)
            deflate = PerMessageDeflate(params, policy.compression, server=True, pool=self._compressors)
        connection = WebSocketConnection(
            Role.SERVER,
            max_message_size=policy.max_message_size,
            max_fragments=policy.max_fragments,
            deflate=deflate,
        )
        answer = build_response(
            key, subprotocol=self.subprotocol, extensions=None if params is None else params.header()
        )
        self.state = ConnectionState.OPEN
        return answer, connection

    def refuse(self, error: LocalHandshakeRefusal) -> bytes:
        """The HTTP answer for a refusal; the connection closes after it."""
        self.state = ConnectionState.CLOSED
        return render_response(error_response(error.status, error.reason, error.headers))

    def respond(self, response: Response) -> bytes:
        """A plain HTTP answer instead of the upgrade (a page, or a refusal of the application's)."""
        self.state = ConnectionState.CLOSED
        return render_response(response, head=self.request is not None and self.request.method == "HEAD")

    def _choose_subprotocol(self, request: Request) -> str | None:
        offered = header_tokens(request.headers.get("Sec-WebSocket-Protocol"))
        for candidate in self.policy.subprotocols:
            if candidate.lower() in offered:
                return candidate
        return None

    def _negotiate_compression(self, request: Request) -> DeflateParameters | None:
        options = self.policy.compression
        if options is None:
            return None
        accepted, self.declined = server_negotiate(request.headers.get("Sec-WebSocket-Extensions"), options)
        return accepted


# -- the client side ------------------------------------------------------------------------


def validate_response(
    response: Response, key: str, subprotocols: Iterable[str] = (), *, extensions: Iterable[str] = ()
) -> str | None:
    """Check the server's answer to our upgrade request; return the chosen subprotocol.

    `extensions` names the extensions offered: the answer may accept only those (check its
    parameters with the extension's own code, e.g. `deflate.client_accept`).
    """
    if response.status != 101:
        raise RemoteHandshakeRefusal(
            response.status, f"server answered {response.status} {response.reason}", response
        )
    headers = response.headers
    if "websocket" not in header_tokens(headers.get("Upgrade")):
        raise RemoteHandshakeRefusal(101, "response lacks Upgrade: websocket", response)
    if "upgrade" not in header_tokens(headers.get("Connection")):
        raise RemoteHandshakeRefusal(101, "response lacks Connection: upgrade", response)
    if headers.get("Sec-WebSocket-Accept") != accept_key(key):
        raise RemoteHandshakeRefusal(101, "wrong Sec-WebSocket-Accept", response)
    chosen = headers.get("Sec-WebSocket-Protocol")
    if chosen is not None and chosen not in set(subprotocols):
        raise RemoteHandshakeRefusal(
            101, f"server chose a subprotocol we did not offer: {chosen!r}", response
        )
    accepted = headers.get("Sec-WebSocket-Extensions")
    if accepted:
        try:
            names = {name for name, _ in parse_extensions(accepted)}
        except LocalHandshakeRefusal as exc:
            reason = f"malformed Sec-WebSocket-Extensions: {exc.reason}"
            raise RemoteHandshakeRefusal(101, reason, response) from None
        if not names <= set(extensions):
            raise RemoteHandshakeRefusal(101, "server accepted an extension we did not offer", response)
    return chosen


class ClientHandshake:
    """Our opening handshake with a server: `data_to_send` gives the request; `receive_data`
    reads the answer until it returns the open connection (then `response`, `subprotocol`
    and `rest`, the frames that came right behind the answer, are set).

    Raises RemoteHandshakeRefusal for an answer other than a valid 101.
    """

    __slots__ = (
        "_buffer",
        "_compression",
        "_key",
        "_max_header_bytes",
        "_max_message_size",
        "_offer",
        "_request",
        "_subprotocols",
        "response",
        "rest",
        "state",
        "subprotocol",
    )

    def __init__(
        self,
        host: str,
        resource: str,
        *,
        subprotocols: Sequence[str] = (),
        origin: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        compression: DeflateOptions | None = None,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.state = ConnectionState.CONNECTING
        self._key = generate_key()
        self._subprotocols = tuple(subprotocols)
        self._compression = compression
        self._offer = client_offer(compression) if compression is not None else None
        self._max_header_bytes = max_header_bytes
        self._max_message_size = max_message_size
        self._request = build_request(
            host,
            resource,
            self._key,
            subprotocols=self._subprotocols,
            extensions=self._offer,
            origin=origin,
            extra_headers=headers,
        )
        self._buffer = b""
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.rest = b""

    def data_to_send(self) -> bytes:
        """The upgrade request."""
        return self._request

    def receive_data(self, data: bytes) -> WebSocketConnection | None:
        """Feed bytes of the answer (b"" when the server closed): the open connection once
        the answer is complete and valid, else None."""
        if not data:
            self.state = ConnectionState.CLOSED
            raise RemoteHandshakeRefusal(None, "the server closed the connection during the handshake")
        self._buffer += data
        try:
            parsed = parse_response(self._buffer, self._max_header_bytes)
            if parsed is None:
                return None
            response, self.rest = parsed
            self.response = response
            offered = (EXTENSION_NAME,) if self._offer is not None else ()
            self.subprotocol = validate_response(response, self._key, self._subprotocols, extensions=offered)
            deflate = None
            if self._compression is not None:
                header = response.headers.get("Sec-WebSocket-Extensions")
                params = client_accept(header, self._compression)
                if params is not None:
                    deflate = PerMessageDeflate(params, self._compression, server=False)
        except RemoteHandshakeRefusal:
            self.state = ConnectionState.CLOSED
            raise
        self.state = ConnectionState.OPEN
        self._buffer = b""
        return WebSocketConnection(Role.CLIENT, max_message_size=self._max_message_size, deflate=deflate)


def _is_upgrade(request: Request) -> bool:
    return "websocket" in header_tokens(request.headers.get("Upgrade"))
