"""The RFC 6455 connection state machine, sans I/O: bytes in, events out, bytes to send.

`WebSocketConnection.receive_data` turns received bytes into events (messages, pings,
pongs, the peer's close, a protocol failure). Replies the protocol owes the peer (pongs,
the close reply, the close frame that fails a connection) collect in `data_to_send()`.
The `send_*` methods return the bytes of a frame for the caller to write.

With a negotiated permessage-deflate codec (`deflate=`), RSV1 marks the first frame of a
compressed message; such messages are inflated frame by frame with the maximum message
size applied to the decompressed bytes, and data messages of `threshold` bytes or more are
sent compressed. Control frames are never compressed.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from enum import Enum
from typing import Final

from ..errors import CloseCode, ProtocolError
from .deflate import PerMessageDeflate
from .frames import (
    BytesLike,
    Frame,
    FrameParser,
    Opcode,
    apply_mask,
    encode_frame,
    encode_unmasked,
)

__all__ = [
    "DEFAULT_MAX_FRAGMENTS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BinaryMessage",
    "CloseReceived",
    "ConnectionLost",
    "ConnectionState",
    "Event",
    "PingReceived",
    "PongReceived",
    "ProtocolFailure",
    "Role",
    "TextMessage",
    "WebSocketConnection",
    "close_payload",
    "is_valid_close_code",
]

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
# Frames per message. Each costs parsing time, not memory (one buffer per message), so this
# bounds the CPU a message of 1-byte fragments can take; Autobahn's 9.* cases send 65,536.
DEFAULT_MAX_FRAGMENTS = 131_072

# Read per message, as module constants: an enum member read through its class costs
# several times a global's load.
_TEXT: Final = int(Opcode.TEXT)
_BINARY: Final = int(Opcode.BINARY)


class Role(Enum):
    SERVER = "server"
    CLIENT = "client"


class ConnectionState(Enum):
    CONNECTING = "connecting"  # the opening handshake (a ServerHandshake or ClientHandshake)
    OPEN = "open"
    CLOSING = "closing"  # we sent a close frame and wait for the peer's
    CLOSED = "closed"  # the close handshake is done, failed, or the transport ended


_CLOSED: Final = ConnectionState.CLOSED  # checked per read (see _TEXT)

@dataclass(slots=True)
class TextMessage:
    data: str


@dataclass(slots=True)
class BinaryMessage:
    data: bytes


@dataclass(slots=True)
class PingReceived:
    """A ping arrived; its pong is already queued in `data_to_send()`."""

    payload: bytes


@dataclass(slots=True)
class PongReceived:
    payload: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer's close frame arrived; the close handshake is complete once it is flushed."""

    code: int
    reason: str


@dataclass(slots=True)
class ProtocolFailure:
    """The peer broke the protocol; a close frame with `code` is queued; drop the transport."""

    code: int
    reason: str


@dataclass(slots=True)
class ConnectionLost:
    """The transport ended without a close handshake (close code 1006)."""

    code: int = CloseCode.ABNORMAL
    reason: str = ""


Event = (
    TextMessage
    | BinaryMessage
    | PingReceived
    | PongReceived
    | CloseReceived
    | ProtocolFailure
    | ConnectionLost
)


def is_valid_close_code(code: int) -> bool:
    """True for codes an endpoint may put in a close frame (RFC 6455 7.4, IANA registry)."""
    return (1000 <= code <= 1003) or (1007 <= code <= 1014) or (3000 <= code <= 4999)


def close_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame: empty, or a big-endian code and a UTF-8 reason."""
    if code is None or code == CloseCode.NO_STATUS:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        raise ValueError("close reason over 123 bytes")
    return code.to_bytes(2, "big") + encoded


def _truncate_reason(reason: str) -> str:
    encoded = reason.encode("utf-8")[:123]
    return encoded.decode("utf-8", "ignore")


class WebSocketConnection:
    """One WebSocket connection's protocol state, for either role."""

    __slots__ = (
        "_decoder",
        "_deflate",
        "_fragment_count",
        "_fragment_opcode",
        "_inflating",
        "_mask",
        "_message",
        "_message_size",
        "_outgoing",
        "_parser",
        "_plain",
        "_short_max",
        "bytes_wanted",
        "close_code",
        "close_reason",
        "close_received",
        "close_sent",
        "max_fragments",
        "max_message_size",
        "role",
        "state",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_fragments: int | None = DEFAULT_MAX_FRAGMENTS,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self.role = role
        self.max_message_size = max_message_size
        self.max_fragments = max_fragments
        self.state = ConnectionState.OPEN
        self.close_sent = False
        self.close_received = False
        # How the connection ended, once CLOSED: the peer's code, ours on a failure, or 1006.
        self.close_code: int | None = None
        self.close_reason = ""
        self._mask = role is Role.CLIENT
        self._deflate = deflate
        # Frames go out as they are written, no mask, no compression (a server without
        # permessage-deflate): the codec's common case, checked once per frame.
        self._plain = deflate is None and role is Role.SERVER
        # The longest client frame that `single_text` may take whole: a short one (under 126
        # bytes) within the message size limit; none on the client, where frames are not masked.
        limit = 125 if max_message_size is None else min(125, max_message_size)
        self._short_max = limit if role is Role.SERVER else -1
        self._parser = FrameParser(
            expect_mask=role is Role.SERVER, max_frame_size=max_message_size, allow_rsv1=deflate is not None
        )
        self._outgoing: list[bytes] = []
        # Bytes still missing from a partly received frame: a hint for the next read's size
        # (an attribute, not a property: read before every read of the connection).
        self.bytes_wanted = 0
        # The message being reassembled from fragments.
        self._fragment_opcode = 0
        self._message: bytearray | None = None  # from the second fragment on
        self._message_size = 0
        self._fragment_count = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self._inflating = False  # the message being reassembled is compressed

    @property
    def deflate(self) -> PerMessageDeflate | None:
        """The permessage-deflate codec, when that extension was negotiated."""
        return self._deflate

    # -- receiving -------------------------------------------------------------------

    def receive_data(self, data: BytesLike) -> list[Event]:
        """Feed received bytes (b"" at end of stream); return the events they complete."""
        if self.state is _CLOSED:
            return []
        if not data:
            return [self.connection_lost()]
        if type(data) is not bytes:
            data = bytes(data)
        parser = self._parser
        events: list[Event] = []
        if not self._fragment_opcode:
            # Whole short data frames, the common shape, without a Frame each (FrameParser).
            # It takes nothing while a frame is buffered: all taken leaves nothing wanted.
            pos = parser.feed_short_messages(data, events, TextMessage, BinaryMessage)
            if pos == len(data):
                return events
            if pos:
                data = data[pos:]
        try:
            for frame in parser.feed(data):
                event = self._handle_frame(frame)
                if event is not None:
                    events.append(event)
                    if type(event) is CloseReceived:
                        break  # nothing after the peer's close frame counts
        except ProtocolError as exc:
            events.append(self._fail(exc.code, exc.reason))
        self.bytes_wanted = parser.wanted
        return events

    def single_text(self, data: bytes) -> str | None:
        """The text of `data` when it is exactly one whole text message in one short frame
        from a client (final, masked, at most 125 bytes, valid UTF-8) and nothing is pending;
        else None, with nothing taken: `receive_data` then. The read of a client that waits
        for each answer, without an event object and a list."""
        n = len(data) - 6
        if (
            0 <= n <= self._short_max
            and data[0] == 0x81
            and data[1] == 0x80 | n
            and not self._fragment_opcode
            and not self.bytes_wanted  # the parser holds no part of a frame
            and self.state is not _CLOSED
        ):
            try:
                return apply_mask(data[6:], data[2:6]).decode()
            except UnicodeDecodeError:
                return None  # receive_data fails the connection with 1007
        return None

    def _handle_frame(self, frame: Frame) -> Event | None:
        opcode = frame.opcode
        if opcode == Opcode.TEXT or opcode == Opcode.BINARY:
            if self._fragment_opcode:
                raise ProtocolError("new data frame inside a fragmented message")
            if frame.rsv1:  # only ever set when permessage-deflate was negotiated
                return self._start_message(opcode, frame.payload, frame.fin, compressed=True)
            if frame.fin:
                if opcode == Opcode.TEXT:
                    try:
                        return TextMessage(frame.payload.decode("utf-8"))
                    except UnicodeDecodeError:
                        raise ProtocolError(
                            "invalid UTF-8 in a text message", CloseCode.INVALID_DATA
                        ) from None
                return BinaryMessage(frame.payload)
            return self._start_message(opcode, frame.payload, False, compressed=False)
        if opcode == Opcode.CONTINUATION:
            if not self._fragment_opcode:
                raise ProtocolError("continuation frame without a message to continue")
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
            return self._continue_fragmented(frame.payload, frame.fin)
        if opcode == Opcode.PING:
            if not self.close_sent:
                self._outgoing.append(encode_frame(Opcode.PONG, frame.payload, mask=self._mask))
            return PingReceived(frame.payload)
        if opcode == Opcode.PONG:
            return PongReceived(frame.payload)
        return self._receive_close(frame.payload)

    def _start_message(self, opcode: int, payload: bytes, fin: bool, *, compressed: bool) -> Event | None:
        """The first frame of a fragmented or a compressed message."""
        self._fragment_opcode = opcode
        self._message = None
        self._message_size = 0
        self._fragment_count = 0
        self._inflating = compressed
        self._decoder = None
        return self._continue_fragmented(payload, fin)

    def _continue_fragmented(self, payload: bytes, fin: bool) -> Event | None:
        payload = self._add_fragment(payload, final=fin)
        if not fin:
            return None
        opcode = self._fragment_opcode
        message = self._message
        self._fragment_opcode = 0
        self._message = None
        self._decoder = None
        if opcode == Opcode.TEXT:
            try:
                # A one-fragment message is decoded once; a longer one was checked piece by piece.
                return TextMessage((payload if message is None else message).decode("utf-8"))
            except UnicodeDecodeError:
                raise ProtocolError("invalid UTF-8 in a text message", CloseCode.INVALID_DATA) from None
        return BinaryMessage(payload if message is None else bytes(message))

    def _add_fragment(self, payload: bytes, *, final: bool) -> bytes:
        """Inflate and check one fragment, and add it to the message: one buffer, whatever
        the fragment count, so empty or 1-byte fragments cost no memory per fragment."""
        if self._inflating:
            assert self._deflate is not None
            limit = self.max_message_size
            if limit is not None:
                limit -= self._message_size
            payload = self._deflate.decompress(payload, final=final, limit=limit)
        self._message_size += len(payload)
        if self.max_message_size is not None and self._message_size > self.max_message_size:
            raise ProtocolError(
                f"message over the limit of {self.max_message_size} bytes", CloseCode.MESSAGE_TOO_BIG
            )
        self._fragment_count += 1
        if self.max_fragments is not None and self._fragment_count > self.max_fragments:
            raise ProtocolError("message in too many fragments", CloseCode.MESSAGE_TOO_BIG)
        if self._fragment_count == 1 and final:
            return payload  # a whole message in one frame: no buffer
        if self._fragment_opcode == Opcode.TEXT:
            # Checking each fragment as it comes fails fast on invalid UTF-8.
            decoder = self._decoder
            if decoder is None:
                decoder = self._decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                decoder.decode(payload, final)
            except UnicodeDecodeError:
                raise ProtocolError("invalid UTF-8 in a text message", CloseCode.INVALID_DATA) from None
        if self._message is None:
            self._message = bytearray(payload)
        elif payload:
            self._message += payload
        return payload

    def _receive_close(self, payload: bytes) -> Event:
        if len(payload) == 1:
            raise ProtocolError("close frame with a one-byte payload")
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not is_valid_close_code(code):
                raise ProtocolError(f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("invalid UTF-8 in a close reason", CloseCode.INVALID_DATA) from None
        else:
            code, reason = CloseCode.NO_STATUS, ""
        self.close_received = True
        self.close_code, self.close_reason = code, reason
        if not self.close_sent:
            # Echo the peer's code, as RFC 6455 5.5.1 suggests.
            self._outgoing.append(
                encode_frame(Opcode.CLOSE, payload[:2], mask=self._mask)
            )
            self.close_sent = True
        self.state = ConnectionState.CLOSED
        return CloseReceived(code, reason)

    def _fail(self, code: int, reason: str) -> ProtocolFailure:
        if not self.close_sent:
            self._outgoing.append(
                encode_frame(Opcode.CLOSE, close_payload(code, _truncate_reason(reason)), mask=self._mask)
            )
            self.close_sent = True
        self.state = ConnectionState.CLOSED
        self.close_code, self.close_reason = code, reason
        self._message = None
        return ProtocolFailure(code, reason)

    def connection_lost(self, reason: str = "") -> ConnectionLost:
        """The transport ended, or the driver gave up on it, without a close handshake (1006)."""
        if self.state is not ConnectionState.CLOSED:
            self.state = ConnectionState.CLOSED
            self.close_code, self.close_reason = CloseCode.ABNORMAL, reason
        return ConnectionLost(CloseCode.ABNORMAL, reason)

    def data_to_send(self) -> list[bytes]:
        """Frames the protocol itself owes the peer (pongs, close replies); empties the queue."""
        out = self._outgoing
        if out:
            self._outgoing = []
        return out

    # -- sending ---------------------------------------------------------------------

    def send_text(self, text: str) -> bytes:
        return self._data_frame(_TEXT, text.encode("utf-8"))

    def send_utf8(self, payload: bytes) -> bytes:
        """A text frame whose payload is already UTF-8 (JSON as pydantic writes it): no
        decode and encode on the way."""
        return self._data_frame(_TEXT, payload)

    def send_binary(self, data: BytesLike) -> bytes:
        return self._data_frame(_BINARY, bytes(data) if type(data) is not bytes else data)

    def _data_frame(self, opcode: int, payload: bytes) -> bytes:
        """One whole-message frame, compressed when negotiated and worth it."""
        if self._plain:
            return encode_unmasked(opcode, payload)
        deflate = self._deflate
        if deflate is not None and len(payload) >= deflate.threshold:
            compressed = deflate.compress(payload)
            if compressed is not None:
                return encode_frame(opcode, compressed, rsv1=True, mask=self._mask)
        if self._mask:
            return encode_frame(opcode, payload, mask=True)
        return encode_unmasked(opcode, payload)

    def send_message(self, data: str | BytesLike) -> bytes:
        """A text frame for `str`, a binary frame for bytes-like data (compressed when negotiated)."""
        if isinstance(data, str):
            return self._data_frame(_TEXT, data.encode())
        return self._data_frame(_BINARY, bytes(data))

    def send_ping(self, payload: BytesLike = b"") -> bytes:
        if len(payload) > 125:
            raise ValueError("ping payload over 125 bytes")
        return encode_frame(Opcode.PING, payload, mask=self._mask)

    def send_close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Start (or finish) the closing handshake; b"" when a close was already sent."""
        if self.close_sent:
            return b""
        frame = encode_frame(Opcode.CLOSE, close_payload(code, reason), mask=self._mask)
        self.close_sent = True
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.CLOSING
        return frame
