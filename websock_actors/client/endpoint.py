"""Where a client connects and how: the URL, name resolution, TCP and TLS, backoff, and
the opening handshake over what was opened.

`open_socket` opens the TCP connection (TLS for wss://, through gevent's SSL socket, with
any `ssl.SSLContext`) to a parsed `Target`; `open_connection` adds the opening handshake,
within the open timeout; `open_with_retries` tries again, spaced by `Backoff`, where
another try may help (network errors, HTTP 5xx and 429).
"""

from __future__ import annotations

import _socket
import functools
import itertools
import logging
import random
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.socket
import gevent.ssl
from gevent.timeout import Timeout

from ..errors import RemoteHandshakeRefusal
from ..protocol.connection import WebSocketConnection
from ..protocol.deflate import DeflateOptions
from ..protocol.handshake import ClientHandshake
from ..protocol.redact import mask_secrets, mask_url

__all__ = [
    "Backoff",
    "ClientOptions",
    "HeadersLike",
    "Target",
    "default_ssl_context",
    "header_items",
    "open_connection",
    "open_socket",
    "open_with_retries",
    "parse_url",
]

HeadersLike = Mapping[str, str] | Iterable[tuple[str, str]]

log = logging.getLogger("websock_actors.client")

# What opening gives: the socket, the finished handshake, the open protocol connection.
Opened = tuple[Any, ClientHandshake, WebSocketConnection]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between attempts to open a connection.

    The n-th delay is `initial * factor**n`, capped at `max_delay`, then scaled by a random
    factor in [1 - jitter, 1] so that many clients cut off at once do not return at once.
    `max_attempts` bounds the tries after the first failure (None: no bound).
    """

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    max_attempts: int | None = 8
    jitter: float = 0.5

    def delays(self) -> Iterator[float]:
        delay = self.initial
        attempts: Iterable[int] = itertools.count() if self.max_attempts is None else range(self.max_attempts)
        for _ in attempts:
            yield delay * (1.0 - self.jitter * random.random())
            delay = min(delay * self.factor, self.max_delay)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a ws:// or wss:// URL points."""

    host: str
    port: int
    resource: str  # path and query
    host_header: str
    secure: bool
    shown: str  # the URL for log lines and errors: credentials masked (protocol/redact.py)


def parse_url(url: str) -> Target:
    shown = mask_url(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {shown!r}")
    if parts.fragment or url.endswith("#"):
        raise ValueError(f"a WebSocket URL has no fragment (RFC 6455 3): {shown!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {shown!r}")
    secure = scheme == "wss"
    default_port = 443 if secure else 80
    port = parts.port or default_port
    literal = f"[{host}]" if ":" in host else host
    host_header = literal if port == default_port else f"{literal}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(host, port, resource, host_header, secure, shown)


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """Addresses for `host`: an IP literal without a resolver round trip, else gevent's resolver."""
    try:
        return _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM, 0, _socket.AI_NUMERICHOST)
    except _socket.gaierror:
        return gevent.socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)


def header_items(headers: HeadersLike | None) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What `connect` was given, kept for reopening (`reconnect=`)."""

    subprotocols: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    origin: str | None
    compression: DeflateOptions | None
    open_timeout: float | None
    close_timeout: float
    max_message_size: int | None
    max_header_bytes: int
    reconnect: Backoff | None
    ssl_context: ssl.SSLContext | None
    idle_read_delay: float = 0.0


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """One verifying context for every wss:// connection that brings none (loading the CA
    certificates for each would cost milliseconds per connection)."""
    return ssl.create_default_context()


def open_socket(target: Target, ssl_context: ssl.SSLContext | None) -> Any:
    """A connected gevent socket to `target` (TLS-wrapped for wss://), the first address
    that answers; the last error when none does."""
    error: OSError | None = None
    for family, kind, proto, _, address in _resolve(target.host, target.port):
        sock = gevent.socket.socket(family, kind, proto)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.secure:
            try:
                # gevent's SSL socket (cooperative) with the caller's context, of any class.
                return gevent.ssl.SSLSocket(
                    sock=sock, server_hostname=target.host, _context=ssl_context or default_ssl_context()
                )
            except BaseException:
                sock.close()
                raise
        return sock
    raise error or OSError(f"no address for {target.host!r}")


def open_connection(target: Target, opts: ClientOptions) -> Opened:
    """Open the socket and do the opening handshake, within `open_timeout` (TimeoutError).

    Returns the socket, the finished handshake (its response, subprotocol, and the bytes that
    came right behind the answer) and the open protocol connection.
    """
    timer = Timeout(opts.open_timeout) if opts.open_timeout is not None else None
    sock: Any = None
    if timer is not None:
        timer.start()
    try:
        sock = open_socket(target, opts.ssl_context)
        handshake = ClientHandshake(
            target.host_header,
            target.resource,
            subprotocols=opts.subprotocols,
            origin=opts.origin,
            headers=opts.headers,
            compression=opts.compression,
            max_header_bytes=opts.max_header_bytes,
            max_message_size=opts.max_message_size,
        )
        sock.sendall(handshake.data_to_send())
        protocol = None
        while protocol is None:
            protocol = handshake.receive_data(sock.recv(4096))
    except Timeout as exc:
        if sock is not None:
            sock.close()
        if exc is not timer:
            raise
        raise TimeoutError(f"opening {target.shown} took over {opts.open_timeout:g} s") from None
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        if timer is not None:
            timer.close()
    return sock, handshake, protocol


def open_with_retries(target: Target, opts: ClientOptions) -> Opened:
    """`open_connection`, tried again with `opts.reconnect`'s backoff where that may help."""
    backoff = opts.reconnect
    delays = backoff.delays() if backoff is not None else iter(())
    while True:
        try:
            return open_connection(target, opts)
        except (OSError, RemoteHandshakeRefusal) as exc:
            status = exc.status if isinstance(exc, RemoteHandshakeRefusal) else None
            if status is not None and status < 500 and status != 429:
                raise  # a refusal (or a broken answer) that another try would repeat
            delay = next(delays, None)
            if delay is None:
                raise
            why = mask_secrets(str(exc))
            log.info("connecting to %s failed (%s); next try in %.2f s", target.shown, why, delay)
            gevent.sleep(delay)
