"""The connection actor: one greenlet that alone owns one socket and one protocol object.

Other greenlets never touch the socket: `send`, `send_frame`, `ping`, `close` and `abort`
put an item into the actor's mailbox (a plain list, bounded in bytes) and wake the actor
if it is parked. The actor drives the sans-I/O handshake, then reads in large chunks, feeds
the codec, delivers whole messages to the application, and writes everything queued in one
`send` call (socket I/O in `transport.py`). An idle connection has no extra greenlet, no
timer and no queue object.
"""

from __future__ import annotations

import _socket
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent

from ..errors import CloseCode, HandshakeRefused, connection_closed
from ..protocol.connection import (
    BinaryMessage,
    ConnectionState,
    PingReceived,
    ProtocolFailure,
    TextMessage,
    WebSocketConnection,
    close_payload,
)
from ..protocol.deflate import CompressorPool, DeflateParameters, MessageCompressor
from ..protocol.handshake import ServerHandshake
from ..protocol.http import Request, Response, error_response
from .broadcast import BroadcastFrame
from .options import ConnectionOptions
from .transport import TIMEOUT, WAIT_READ, Abort, Transport, TransportGone

if TYPE_CHECKING:
    from .app import Application

__all__ = ["Connection"]

log = logging.getLogger("websock_actors")

_ids = itertools.count(1)


class _Binary:
    """A binary message queued by another greenlet (plain bytes in the mailbox are frames)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Close:
    __slots__ = ("code", "reason")

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason


class _Ping:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


_MailItem = bytes | str | _Binary | _Close | _Ping


class Connection(Transport):
    """One WebSocket connection, run as an actor. Applications receive it as `conn`.

    Safe to call from any greenlet of the server's hub: `send`, `send_frame`, `ping`,
    `close`, `abort`. Attributes: `id`, `address`, `request` (the upgrade request, with
    its headers), `subprotocol`, `state` (a dict for the application), and `recv_count`
    (batches of bytes received, which keepalive watches).
    """

    def __init__(
        self,
        sock: _socket.socket,
        address: Any,
        app: Application,
        options: ConnectionOptions,
        *,
        on_open: Callable[[Connection], Response | None] | None = None,
        on_finish: Callable[[Connection], None] | None = None,
        recv_buffer: memoryview | None = None,
        compressors: CompressorPool | None = None,
    ) -> None:
        self.id = next(_ids)
        self.address = address
        self.app = app
        self.options = options
        self.request: Request | None = None
        self.subprotocol: str | None = None
        self.state: dict[str, Any] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self.dropped = 0  # messages dropped by the "drop" overflow policy
        self.recv_count = 0
        self._on_open = on_open
        self._on_finish = on_finish
        self._init_transport(sock, recv_buffer)
        # permessage-deflate: the server's shared compressors; the one this connection
        # compresses broadcasts with (no context takeover); whether `send` in the actor
        # may encode at once (not when compression keeps context: mailbox order decides).
        self._compressors = compressors
        self._broadcast_compressor: MessageCompressor | None = None
        self._encode_now = True
        self._protocol: WebSocketConnection | None = None  # once the handshake accepted
        self._outbox: list[_MailItem] = []
        self._queued = 0
        self._closing = False  # a close was requested: no more data is accepted
        self._open = False
        self._finished = False
        self._abort_reason: tuple[int, str] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.address}>"

    # -- the mailbox: any greenlet -------------------------------------------------

    @property
    def open(self) -> bool:
        """True from the end of the handshake until a close is requested or happens."""
        return self._open and not self._closing

    @property
    def established(self) -> bool:
        """True once the opening handshake succeeded, closing or not."""
        return self._protocol is not None

    @property
    def compression(self) -> DeflateParameters | None:
        """The negotiated permessage-deflate parameters, or None when not compressed."""
        protocol = self._protocol
        if protocol is None or protocol.deflate is None:
            return None
        return protocol.deflate.params

    def send(self, message: str | bytes) -> None:
        """Queue a text (`str`) or binary (bytes-like) message; never blocks."""
        if not self.open:
            raise connection_closed(self.close_code, self.close_reason)
        if gevent.getcurrent() is self._greenlet and self._encode_now:
            assert self._protocol is not None
            self._enqueue(self._protocol.send_message(message))
        elif isinstance(message, str):
            self._enqueue(message, len(message))
        else:
            self._enqueue(_Binary(bytes(message)), len(message))

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already encoded frame (a broadcast encodes once for every member).

        Returns False instead of raising when the connection no longer takes data, so
        a fan-out loop never stops on one member. A `BroadcastFrame` goes out compressed
        to a connection that negotiated permessage-deflate without context takeover
        (compressed once for all such members).
        """
        if not self.open:
            return False
        if type(frame) is BroadcastFrame and self._broadcast_compressor is not None:
            frame = frame.compressed(self._broadcast_compressor)
        return self._enqueue(frame)

    def ping(self, payload: bytes = b"") -> None:
        if len(payload) > 125:
            raise ValueError("ping payload over 125 bytes")
        if self.open:
            self._enqueue(_Ping(payload), 0)

    def close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after everything already queued is sent; waits for the peer's close frame."""
        close_payload(code, reason)  # validate now, in the caller
        if self._finished or self._closing:
            return
        self._closing = True
        self._outbox.append(_Close(code, reason))
        self._wake()

    def abort(self, code: int = CloseCode.ABNORMAL, reason: str = "") -> None:
        """Drop the connection now: a best-effort close frame, then the TCP connection."""
        if self._finished or self._abort_reason is not None:
            return
        self._abort_reason = (code, reason)
        self._closing = True
        self._wake()  # a no-op in the actor itself: it checks the abort flag

    def _enqueue(self, item: _MailItem, size: int | None = None) -> bool:
        size = len(item) if size is None else size  # type: ignore[arg-type]
        if self._queued and self._queued + size > self.options.max_queue_bytes:
            if gevent.getcurrent() is not self._greenlet:
                return self._overflow()
            # The actor's own output (a handler's burst) is written now, waiting for the
            # socket if need be: bounded memory, and backpressure on this connection only.
            self._flush()
        self._outbox.append(item)
        self._queued += size
        if self._wait_state == WAIT_READ and not self._wake_scheduled:
            self._wake()
        return True

    def _overflow(self) -> bool:
        if self.options.overflow == "drop":
            self.dropped += 1
            return False
        log.info("%r: outgoing queue full, closing", self)
        self.abort(CloseCode.TRY_AGAIN_LATER, "outgoing queue full")
        return False

    # -- the actor -----------------------------------------------------------------

    def run(self) -> None:
        """The actor's body: handshake, message loop, close. Runs in its own greenlet."""
        self._greenlet = gevent.getcurrent()
        self._read_watcher = self._hub.loop.io(self._fd, 1)
        code: int = CloseCode.ABNORMAL
        reason = ""
        try:
            opened = self._handshake()
            if opened is None:
                return
            self._open = True
            try:
                self.app.handle_connect(self)
            except Exception:
                log.exception("%r: on_connect failed", self)
                self.abort(CloseCode.INTERNAL_ERROR, "internal error")
            code, reason = self._serve(*opened)
        except Abort as exc:
            code, reason = exc.code, exc.reason
            self._send_last_close(code, reason)
        except TransportGone:
            code, reason = CloseCode.ABNORMAL, ""
        except Exception:
            log.exception("%r: connection actor failed", self)
            code, reason = CloseCode.INTERNAL_ERROR, "internal error"
            self._send_last_close(code, reason)
        finally:
            self._finish(code, reason)

    def _finish(self, code: int, reason: str) -> None:
        was_open = self._open
        self._open = False
        self._closing = True
        self._finished = True
        self.close_code, self.close_reason = code, reason
        self._outbox = []
        self._release_transport()
        try:
            if was_open:
                try:
                    self.app.handle_close(self, code, reason)
                except Exception:
                    log.exception("%r: on_close failed", self)
        finally:
            if self._on_finish is not None:
                self._on_finish(self)

    def _serve(self, protocol: WebSocketConnection, first_data: bytes) -> tuple[int, str]:
        """The message loop: returns the close code and reason once the protocol is CLOSED."""
        recv = self._recv_nowait
        read_size = self.options.read_size
        receive_data = protocol.receive_data
        handle_message = self.app.handle_message
        closed = ConnectionState.CLOSED
        close_deadline: float | None = None
        data = first_data
        parked = True
        while True:
            if data:
                self.recv_count += 1
                for event in receive_data(data):
                    kind = type(event)
                    if kind is TextMessage or kind is BinaryMessage:
                        try:
                            handle_message(self, event.data)  # type: ignore[union-attr]
                        except Exception:
                            log.exception("%r: message handler failed", self)
                            self.abort(CloseCode.INTERNAL_ERROR, "internal error")
                    elif kind is PingReceived:
                        # The pong goes out in order with replies to messages around it.
                        self._outbox.extend(protocol.data_to_send())
                    elif kind is ProtocolFailure:
                        log.info("%r: protocol error: %s", self, event.reason)  # type: ignore[union-attr]
                control = protocol.data_to_send()  # a close reply, the close of a failure
                if control:
                    self._outbox.extend(control)
                if protocol.state is closed:
                    self._flush()
                    self._close_transport(drain=True)
                    return protocol.close_code or CloseCode.NO_STATUS, protocol.close_reason
            if self._abort_reason is not None:
                raise Abort(*self._abort_reason)
            if self._outbox:
                self._flush()
                if close_deadline is None and protocol.state is ConnectionState.CLOSING:
                    close_deadline = self._hub.loop.now() + self.options.close_timeout
            wanted = protocol.bytes_wanted  # read a large frame in few, big reads
            received = recv(wanted if wanted > read_size else read_size)
            if received is None:
                data = b""
                if self._outbox:
                    # Mail queued while a write was blocked woke no one (only a parked
                    # reader is woken): send it before parking.
                    continue
                if self._park(WAIT_READ, close_deadline) == TIMEOUT:
                    lost = protocol.connection_lost("close handshake timed out")
                    self._close_transport(drain=False)
                    return lost.code, lost.reason
                parked = True
                continue
            data = received
            if not parked:
                # Back-to-back batches from a flooding peer: let other actors run in between.
                gevent.sleep(0)
            parked = False
            if not data:
                lost = protocol.connection_lost()  # the end of the stream
                return lost.code, lost.reason

    # -- writing ---------------------------------------------------------------------

    def _flush(self) -> None:
        """Encode what the mailbox holds, in order, and write it with one send call."""
        items = self._outbox
        self._outbox = []
        self._queued = 0
        protocol = self._protocol
        assert protocol is not None
        chunks: list[bytes] = []
        for item in items:
            kind = type(item)
            if kind is bytes or kind is BroadcastFrame:
                chunks.append(item)  # type: ignore[arg-type]
            elif kind is str:
                chunks.append(protocol.send_text(item))  # type: ignore[arg-type]
            elif kind is _Binary:
                chunks.append(protocol.send_binary(item.data))  # type: ignore[union-attr]
            elif kind is _Ping:
                if not protocol.close_sent:
                    chunks.append(protocol.send_ping(item.payload))  # type: ignore[union-attr]
            elif kind is _Close:
                frame = protocol.send_close(item.code, item.reason)  # type: ignore[union-attr]
                if frame:
                    chunks.append(frame)
        if chunks:
            self._write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _send_last_close(self, code: int, reason: str) -> None:
        """Best effort, never blocking: tell the peer why before dropping the connection."""
        protocol = self._protocol
        if protocol is None or protocol.close_sent or code in (CloseCode.ABNORMAL, CloseCode.NO_STATUS):
            return
        if not self._write_pending:
            self._send_if_possible(protocol.send_close(code, reason))

    # -- the opening handshake ---------------------------------------------------------

    def _handshake(self) -> tuple[WebSocketConnection, bytes] | None:
        """Drive the sans-I/O handshake: the open protocol and the bytes after the request,
        or None when the request was refused or answered with a plain HTTP response."""
        options = self.options
        handshake = ServerHandshake(options.handshake, self._compressors)
        deadline = self._hub.loop.now() + options.handshake_timeout
        try:
            request = None
            while request is None:
                chunk = self._recv_nowait(options.read_size)
                if chunk is None:
                    if self._park(WAIT_READ, deadline) == TIMEOUT:
                        raise HandshakeRefused(408, "handshake timed out")
                    if self._abort_reason is not None:
                        raise HandshakeRefused(503, self._abort_reason[1] or "server shutting down")
                    continue
                if not chunk:
                    return None
                request = handshake.receive_data(chunk)
        except HandshakeRefused as exc:
            self._refuse(handshake, exc)
            return None
        self.request = request
        try:
            answer = self.app.handle_request(request)
            if answer is None:
                response, protocol = handshake.accept()
                for why in handshake.declined:
                    log.info("%r: permessage-deflate offer declined: %s", self, why)
                self.subprotocol = handshake.subprotocol
                # Admission comes last: the server counts an admitted connection against
                # its capacity, so nothing may refuse it after this.
                answer = self._on_open(self) if self._on_open is not None else None
        except HandshakeRefused as exc:
            self._refuse(handshake, exc)
            return None
        except Exception:
            # A bug in a request hook: answer 500 rather than drop the connection unanswered.
            log.exception("%r: request hook failed", self)
            answer = error_response(500, "internal server error")
        if answer is not None:
            self._respond(handshake.respond(answer))
            return None
        deflate = protocol.deflate
        if deflate is not None:
            self._broadcast_compressor = deflate.shared
            self._encode_now = not deflate.local_context_takeover
        self._protocol = protocol
        self._write(response)
        return protocol, handshake.rest

    def _refuse(self, handshake: ServerHandshake, error: HandshakeRefused) -> None:
        log.info("%r: handshake refused: %s", self, error)
        try:
            self.app.handle_refused(self.address, error)
        except Exception:
            log.exception("%r: on_refused failed", self)
        self._respond(handshake.refuse(error))

    def _respond(self, data: bytes) -> None:
        """Answer a plain HTTP request (an error or a page) and close the connection."""
        try:
            self._write(data)
        except TransportGone:
            return
        self._close_transport(drain=True)
