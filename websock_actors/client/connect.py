"""`connect(url, ...)`: open a client connection, with the options it keeps for reopening."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence

from ..protocol.connection import DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.deflate import DeflateOptions
from ..protocol.http import DEFAULT_MAX_HEADER_BYTES
from .connection import ClientConnection, PushHandler
from .endpoint import Backoff, ClientOptions, HeadersLike, header_items

__all__ = ["connect"]


def connect(
    url: str,
    *,
    subprotocols: Sequence[str] | None = None,
    headers: HeadersLike | None = None,
    origin: str | None = None,
    compression: bool | DeflateOptions = False,
    open_timeout: float | None = 10.0,
    close_timeout: float = 10.0,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_queue: int = 1024,
    on_push: PushHandler | None = None,
    reconnect: Backoff | bool | None = None,
    on_reconnect: Callable[[ClientConnection], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    resume: bool = False,
    idle_read_delay: float = 0.0,
) -> ClientConnection:
    """Open a WebSocket connection to `url` (ws:// or wss://) and return it.

    - `subprotocols`: offered in order; the server's choice is `conn.subprotocol`.
    - `headers`: extra request headers; `origin`: the Origin header.
    - `compression`: offer permessage-deflate (True for the defaults, or DeflateOptions).
    - `open_timeout` bounds the TCP connection and the opening handshake (TimeoutError);
      `close_timeout` the closing handshake.
    - `max_message_size`: a larger message fails the connection with 1009.
    - `max_queue`: unsolicited messages kept for `recv` (the oldest are dropped past it and
      counted in `conn.dropped`); 0 keeps none: `on_push` alone sees them.
    - `on_push(message)`: called with each unsolicited message as it is read, in the reading
      greenlet: it must not block.
    - `reconnect`: a Backoff (True: the default one). Opening retries with backoff on
      network errors and HTTP 5xx/429; a connection lost with a code in RECONNECT_CODES
      opens again at the next `send`, `recv`, `request` or `ping` (what was in flight fails
      with ConnectionClosed), then calls `on_reconnect(conn)`, e.g. to join rooms again.
    - `resume`: for a typed server with resumption: reconnect (with `reconnect`'s backoff,
      the default one when not given) and resume the session: the rooms are restored and
      the broadcasts missed meanwhile are queued for `recv`, in order, before what follows;
      `conn.resumed` is the server's answer (`recovered`, `lost`, ...).
    - `ssl_context`: for wss:// (default: `ssl.create_default_context()`, which verifies the
      server's certificate and name).
    - `idle_read_delay`: while nobody waits on the connection, what arrives (a ping, the
      server's close, pushes) is read at once (0), or this many seconds later, in one go with
      whatever else came meanwhile: fewer reads, for many connections in one process.

    Raises RemoteHandshakeRefusal (its `status` is the status the server really answered: a
    refusal, 101 for an answer that breaks RFC 6455, None for one that is not HTTP),
    TimeoutError, or OSError.
    """
    if reconnect is True or (resume and reconnect is None):
        reconnect = Backoff()
    opts = ClientOptions(
        subprotocols=tuple(subprotocols or ()),
        headers=tuple(header_items(headers)),
        origin=origin,
        compression=DeflateOptions() if compression is True else (compression or None),
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        max_message_size=max_message_size,
        max_header_bytes=max_header_bytes,
        reconnect=reconnect or None,
        ssl_context=ssl_context,
        idle_read_delay=idle_read_delay,
    )
    conn = ClientConnection(
        url, opts, max_queue=max_queue, on_push=on_push, on_reconnect=on_reconnect, resume=resume
    )
    conn._open_with_retries()
    return conn
