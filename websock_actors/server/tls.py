"""TLS for the connection actor: the ssl module's sans-I/O `SSLObject` between socket and codec.

The actor keeps owning a plain non-blocking socket and its own parking, as without TLS:
ciphertext read from the socket goes into an incoming `MemoryBIO`, plaintext comes out of the
`SSLObject`; what it writes collects in an outgoing `MemoryBIO` that the transport sends. No
gevent SSL socket, no extra greenlet, and the TLS handshake runs in the actor's greenlet,
inside the opening handshake's deadline. A client that speaks plain TCP or garbage to the
TLS port is dropped with one DEBUG line.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from .connection import Connection
from .transport import MAIL, TIMEOUT, WAIT_READ, Transport, TransportGone

__all__ = ["TLSConnection"]

log = logging.getLogger("websock_actors")

_RAW_READ = 65536


class TLSConnection(Connection):
    """A `Connection` over TLS (`Server(listen=ListenOptions(ssl_context=...))`): made as a
    Connection, then given its context with `start_tls` before it runs (no `__init__` of its
    own, which would have to forward Connection's: the compiled build does not forward
    `**kwargs` to it)."""

    __slots__ = (
        "_incoming",
        "_outgoing",
        "_tls",
        "_tls_deadline",
        "_tls_done",
        "_tls_eof",
    )

    _incoming: ssl.MemoryBIO
    _outgoing: ssl.MemoryBIO
    _tls: ssl.SSLObject
    _tls_deadline: float
    _tls_eof: bool
    _tls_done: bool

    def start_tls(self, ssl_context: ssl.SSLContext) -> None:
        """Set up the TLS session, server side; called once, before `run`."""
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = ssl_context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._tls_deadline = 0.0
        self._tls_eof = False
        self._tls_done = False  # close_notify sent: what still comes is drained raw

    @property
    def tls_version(self) -> str | None:
        """The negotiated TLS version, e.g. "TLSv1.3"."""
        return self._tls.version()

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The client's certificate, when one was asked for and given (mutual TLS)."""
        return self._tls.getpeercert() or None

    # -- the handshakes --------------------------------------------------------------

    def _inline_reader(self) -> None:
        return None  # reading and writing TLS records may have to wait: always in the actor

    def _mail_dormant(self) -> None:
        self._revive(MAIL)  # TLS records are written by the actor, never from the hub

    def _handshake_deadline(self) -> float:
        return self._tls_deadline  # the TLS handshake and the WebSocket one share the timeout

    def _handshake(self) -> bytes | None:
        self._tls_deadline = self._hub.loop.now() + self.options.handshake_timeout
        if not self._tls_handshake():
            return None
        return super()._handshake()

    def _tls_handshake(self) -> bool:
        """Run the TLS handshake; False when it failed or timed out (the socket is then dropped)."""
        tls = self._tls
        while True:
            try:
                tls.do_handshake()
                self._send_ciphertext()
                return True
            except ssl.SSLWantReadError:
                self._send_ciphertext()
            except (ssl.SSLError, OSError) as exc:
                log.debug("%r: TLS handshake failed: %s", self, exc)
                self.options.stats.failed("tls")
                self._send_ciphertext()  # the alert, when the client is still there
                return False
            data = Transport._recv_nowait(self, _RAW_READ)
            if data is None:
                if self._park(WAIT_READ, self._tls_deadline) == TIMEOUT or self._abort_reason is not None:
                    log.debug("%r: TLS handshake timed out", self)
                    self.options.stats.failed("tls")
                    return False
                continue
            if not data:
                return False
            self._incoming.write(data)

    def _send_ciphertext(self, deadline: float | None = None) -> None:
        pending = self._outgoing.read()
        if pending:
            Transport._write(self, pending, deadline if deadline is not None else self._tls_deadline)

    # -- the transport, through TLS ------------------------------------------------------

    def _recv_nowait(self, size: int) -> bytes | None:
        """Plaintext, up to `size` bytes: what the TLS records read so far hold (b"" at the end
        of the stream or on a TLS error, None when nothing can be decrypted yet)."""
        if self._tls_done:
            return Transport._recv_nowait(self, size)
        if self._tls_eof:
            return b""
        tls = self._tls
        chunks: list[bytes] = []
        total = 0
        while total < size:
            try:
                chunk = tls.read(size - total)
            except ssl.SSLWantReadError:
                raw = Transport._recv_nowait(self, _RAW_READ)
                if raw is None:
                    break
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ssl.SSLError):
                self._tls_eof = True
                break
            if not chunk:
                self._tls_eof = True
                break
            chunks.append(chunk)
            total += len(chunk)
        if chunks:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return b"" if self._tls_eof else None

    def _write(self, data: bytes, deadline: float | None = None) -> None:
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:  # e.g. the peer's end of stream already came in: nothing goes out
            raise TransportGone() from exc
        Transport._write(self, self._outgoing.read(), deadline)

    def _send_if_possible(self, data: bytes) -> None:
        if self._write_pending:
            return
        try:
            self._tls.write(data)
        except ssl.SSLError:
            return
        Transport._send_if_possible(self, self._outgoing.read())

    def _close_transport(self, *, drain: bool) -> None:
        """Say close_notify (best effort), then half-close and drain as without TLS."""
        try:
            self._tls.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # SSLWantReadError: the peer's close_notify is not awaited
        pending = self._outgoing.read()
        if pending:
            Transport._send_if_possible(self, pending)
        self._tls_done = True
        super()._close_transport(drain=drain)
