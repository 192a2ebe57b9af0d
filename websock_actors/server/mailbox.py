"""The connection actor's mailbox: what other greenlets queue for it, and the flush that
writes it all with one send.

A plain list bounded in bytes, no queue object: `send`, `send_frame`, `ping`, `close` and
`abort` append an item and wake the actor if it is parked on reading. Plain bytes in the
mailbox are frames already encoded (a broadcast, or the actor's own message encoded at
once); a `str` or `_Binary` queued by another greenlet is encoded by the actor, in order.
"""

from __future__ import annotations

import logging

from gevent import getcurrent

from ..errors import CloseCode, connection_closed
from ..protocol.connection import WebSocketConnection, close_payload
from ..protocol.deflate import MessageCompressor
from ..protocol.frames import BytesLike
from .broadcast import BroadcastFrame
from .transport import WAIT_READ, Transport

__all__ = ["Mailbox"]

log = logging.getLogger("websock_actors")


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


class Mailbox(Transport):
    """The outgoing side of a connection actor; safe to call from any greenlet of its hub."""

    __slots__ = (
        "_broadcast_compressor",
        "_close_deadline",
        "_close_holds",
        "_closing",
        "_deferred_close",
        "_encode_now",
        "_finished",
        "_open",
        "_outbox",
        "_protocol",
        "_queued",
        "close_code",
        "close_reason",
        "dropped",
    )

    def _init_mailbox(self) -> None:
        self.dropped = 0  # messages dropped by the "drop" overflow policy
        self._outbox: list[_MailItem] = []
        self._queued = 0
        self._closing = False  # a close was requested: no more data is accepted
        # Replies on their way (`hold_close`), and a close another greenlet asked for meanwhile:
        # queued once they are sent.
        self._close_holds = 0
        self._deferred_close: tuple[int | None, str] | None = None
        self._open = False
        self._finished = False
        # Once a close is requested: when the closing handshake (writes included) must be over.
        self._close_deadline: float | None = None
        # How the connection ended, once it has: what `send` raises with after the end.
        self.close_code: int | None = None
        self.close_reason = ""
        # The codec that encodes the mailbox, once the opening handshake accepted (`_start_protocol`).
        self._protocol: WebSocketConnection | None = None
        # permessage-deflate: the compressor of broadcasts to this connection (no context
        # takeover), and whether `send` in the actor may encode at once (not when compression
        # keeps context: then the mailbox's order decides).
        self._broadcast_compressor: MessageCompressor | None = None
        self._encode_now = True

    def _start_protocol(self, protocol: WebSocketConnection) -> None:
        """The handshake accepted: encode with `protocol` from now on."""
        deflate = protocol.deflate
        if deflate is not None:
            self._broadcast_compressor = deflate.shared
            self._encode_now = not deflate.local_context_takeover
        self._protocol = protocol

    @property
    def open(self) -> bool:
        """True from the end of the handshake until a close is requested or happens."""
        return self._open and not self._closing

    def send(self, message: str | BytesLike) -> None:
        """Queue a text (`str`) or binary (bytes-like) message; never blocks."""
        if not self._open or self._closing:  # `open`, without a property call per message
            raise connection_closed(self.close_code, self.close_reason)
        if getcurrent() is self._owner and self._encode_now:
            assert self._protocol is not None
            queued = self._enqueue(self._protocol.send_message(message))
        elif isinstance(message, str):
            # Counted in UTF-8 bytes, as it will go out (isascii is O(1) in CPython).
            size = len(message) if message.isascii() else len(message.encode("utf-8"))
            queued = self._enqueue(message, size)
        else:
            queued = self._enqueue(_Binary(bytes(message)), len(message))
        if queued:
            self.options.stats.messages_sent += 1

    def send_utf8(self, payload: bytes) -> None:
        """Queue a text message given as its UTF-8 bytes (valid UTF-8: JSON as pydantic
        writes it), without decoding it to a `str` to be encoded again; never blocks."""
        if getcurrent() is not self._owner or not self._encode_now:
            self.send(payload.decode())  # queued as text, encoded by the actor in order
            return
        if not self._open or self._closing:
            raise connection_closed(self.close_code, self.close_reason)
        assert self._protocol is not None
        if self._enqueue(self._protocol.send_utf8(payload)):
            self.options.stats.messages_sent += 1

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
        if self._enqueue(frame):
            self.options.stats.messages_sent += 1
            return True
        return False

    def send_backlog(self, frames: list[bytes]) -> int:
        """Queue encoded frames in one step, without waiting and beyond `max_queue_bytes`: a
        resume's replay, which must reach the mailbox whole before any live message (the
        replay is bounded by the rooms' history). Returns the frames queued (0 once closed)."""
        if not self.open or not frames:
            return 0
        compressor = self._broadcast_compressor
        for frame in frames:
            if type(frame) is BroadcastFrame and compressor is not None:
                frame = frame.compressed(compressor)
            self._enqueue(frame, bounded=False)
        self.options.stats.messages_sent += len(frames)
        return len(frames)

    def ping(self, payload: BytesLike = b"") -> None:
        if len(payload) > 125:
            raise ValueError("ping payload over 125 bytes")
        if self.open:
            self._enqueue(_Ping(bytes(payload)), 0)

    def close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after everything already queued is sent; waits for the peer's close frame.

        Asked by another greenlet (a server's drain) while replies are on their way (the
        handlers of the messages already read run, or their replies wait for their broadcasts
        to be kept: `hold_close`), the close waits for those replies: a request answered before
        the close frame was handled, one left unanswered was not, so a client may send it
        again after a resume without doing it twice."""
        close_payload(code, reason)  # validate now, in the caller
        if self._finished or self._closing or self._deferred_close is not None:
            return
        if self._close_holds and getcurrent() is not self._owner:  # not the one delivering
            self._deferred_close = (code, reason)
            return
        self._closing = True
        self._close_deadline = self._hub.loop.now() + self.options.close_timeout
        self._outbox.append(_Close(code, reason))
        self._wake()

    def hold_close(self) -> None:
        """Replies are on their way: a close asked for by another greenlet waits for them."""
        self._close_holds += 1

    def release_close(self) -> None:
        """The replies of one `hold_close` are queued: the close waits no longer for them."""
        self._close_holds -= 1
        deferred = self._deferred_close
        if deferred is not None and not self._close_holds:
            self._deferred_close = None
            self.close(*deferred)

    def abort(self, code: int = CloseCode.ABNORMAL, reason: str = "") -> None:
        """Drop the connection now: a best-effort close frame, then the TCP connection."""
        if self._finished or self._abort_reason is not None:
            return
        self._abort_reason = (code, reason)
        self._closing = True
        self._wake()  # a no-op in the actor itself: it checks the abort flag

    def _enqueue(self, item: _MailItem, size: int | None = None, *, bounded: bool = True) -> bool:
        size = len(item) if size is None else size  # type: ignore[arg-type]
        if self._queued and self._queued + size > self.options.max_queue_bytes and bounded:
            owner = self._owner
            if getcurrent() is not owner:
                return self._overflow()
            if owner is not self._hub:
                # The actor's own output (a handler's burst, in the actor or the shared runner)
                # is written now, waiting for the socket if need be: bounded memory, and
                # backpressure on this connection only.
                self._flush()
            # Else an inline handler's (the hub may not wait): it stays queued, the rest of
            # the read goes to the actor (inline.deliver), which writes it all.
        self._outbox.append(item)
        self._queued += size
        if self._wait_state == WAIT_READ and not self._wake_scheduled:
            self._wake()
        return True

    def _overflow(self) -> bool:
        if self.options.overflow == "drop":
            self.dropped += 1
            self.options.stats.drop("mailbox_full")
            return False
        log.debug("%r: outgoing queue full, closing", self)
        self.abort(CloseCode.TRY_AGAIN_LATER, "outgoing queue full")
        return False

    def _flush(self) -> None:
        """Encode what the mailbox holds, in order, and write it with one send call."""
        data = self._take_outbox()
        if data:
            self._write(data, self._close_deadline)

    def _take_outbox(self) -> bytes:
        """What the mailbox holds, encoded in order, as the bytes of one write; emptied."""
        items = self._outbox
        self._outbox = []
        self._queued = 0
        if len(items) == 1:  # the common case, one reply: no list of chunks, no join
            item = items[0]
            kind = type(item)
            if kind is bytes or kind is BroadcastFrame:
                return item  # type: ignore[return-value]
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
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
