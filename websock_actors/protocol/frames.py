"""RFC 6455 frames: serialize, parse a byte stream into frames, and mask payloads.

Pure functions and one incremental parser; no I/O. The parser reads every complete
frame out of whatever bytes it is fed, so one large `recv` yields many frames.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from ..errors import CloseCode, ProtocolError

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "BytesLike",
    "Frame",
    "FrameParser",
    "Opcode",
    "apply_mask",
    "encode_frame",
    "encode_unmasked",
]


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)

_Message = TypeVar("_Message")  # what the caller makes of a message (an event)

# What callers may pass as bytes. Spelled out, not just `bytes` (which mypy lets bytearray and
# memoryview stand for): the compiled build (setup.py) checks argument types at run time.
BytesLike = bytes | bytearray | memoryview

_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack
_UNPACK_16 = struct.Struct("!H").unpack_from
_UNPACK_64 = struct.Struct("!Q").unpack_from


def _apply_mask_int(data: BytesLike, mask: bytes) -> bytes:
    """XOR `data` with the repeated 4-byte `mask`, one big-integer XOR (no per-byte loop)."""
    n = len(data)
    if n == 0:
        return b""
    repeated = (mask * ((n >> 2) + 1))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(n, "little")


def _load_apply_mask() -> Callable[[BytesLike, bytes], bytes]:
    """The compiled XOR of `websockets` when installed (far faster), else pure Python."""
    try:
        from websockets.speedups import apply_mask as compiled
    except ImportError:  # pragma: no cover - depends on the installation
        return _apply_mask_int
    return compiled


apply_mask = _load_apply_mask()


@dataclass(slots=True)
class Frame:
    """One frame as parsed: the payload is already unmasked."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False


_KEY_BATCH = 4096
_keys = bytearray()


def _mask_key() -> bytes:
    """A fresh masking key from the OS's strong entropy, drawn from a batch: one syscall per 1,024 keys."""
    global _keys
    if not _keys:
        _keys = bytearray(os.urandom(_KEY_BATCH))
    key = bytes(_keys[-4:])
    del _keys[-4:]
    return key


def encode_frame(
    opcode: int,
    payload: BytesLike,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = False,
    mask_key: bytes | None = None,
) -> bytes:
    """Serialize one frame. Clients set `mask=True` and a fresh random key is used (or
    `mask_key`, for a test that needs known bytes)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = _PACK_16(first, mask_bit | 126, length)
    else:
        header = _PACK_64(first, mask_bit | 127, length)
    if mask:
        key = _mask_key() if mask_key is None else mask_key
        return header + key + apply_mask(payload, key)
    return header + payload


# The two header bytes of every short final unmasked frame, by opcode and length.
_SHORT_HEADERS = [[bytes((0x80 | opcode, length)) for length in range(126)] for opcode in range(16)]


def encode_unmasked(opcode: int, payload: bytes) -> bytes:
    """`encode_frame(opcode, payload)`: a final frame, unmasked, no RSV bit (a server's
    message), with the header of a short one looked up instead of built."""
    length = len(payload)
    if length < 126:
        return _SHORT_HEADERS[opcode][length] + payload
    return encode_frame(opcode, payload)


class FrameParser:
    """Incremental frame parser: `feed` bytes, get back every complete frame.

    `expect_mask` is True on the server (client frames must be masked) and False on the
    client. A frame whose declared length exceeds `max_frame_size` fails at once with
    1009, before its payload is buffered. `allow_rsv1` is set when an extension that
    uses RSV1 (permessage-deflate) was negotiated.
    """

    __slots__ = ("_chunks", "_have", "_need", "allow_rsv1", "expect_mask", "max_frame_size")

    def __init__(
        self, *, expect_mask: bool, max_frame_size: int | None = None, allow_rsv1: bool = False
    ) -> None:
        self.expect_mask = expect_mask
        self.max_frame_size = max_frame_size
        self.allow_rsv1 = allow_rsv1
        # Bytes of an incomplete frame are kept as a list of chunks and joined only once
        # `_need` bytes are there, so a large frame arriving in pieces is copied once.
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return self._have

    @property
    def wanted(self) -> int:
        """Bytes still missing to complete the frame being received: more than 0 whenever
        bytes of a frame are held, 0 when none are."""
        return self._need - self._have if self._have else 0

    def feed_short_messages(
        self,
        data: bytes,
        messages: list[_Message],
        text: Callable[[str], _Message],
        binary: Callable[[bytes], _Message],
    ) -> int:
        """The fast path for the common shape: whole short messages from a client.

        Appends each final, masked, uncompressed text or binary frame of 1 to 125 bytes at the
        start of `data` to `messages`, as `text(payload decoded)` or `binary(payload)`, with
        no Frame object and no generator, and returns how many bytes of
        `data` those frames took. It stops at the first frame of another shape (a control
        frame, an empty or longer payload, a frame cut by the read, a text that is not valid
        UTF-8, ...): `feed` then parses it and all after it. It takes nothing while bytes of
        a frame are buffered, and nothing on the client (server frames are not masked).
        """
        if self._chunks or not self.expect_mask:
            return 0
        limit = self.max_frame_size
        end = len(data)
        pos = 0
        while end - pos > 6:
            first = data[pos]
            second = data[pos + 1]
            if not (0x80 < second < 0xFE and (first == 0x81 or first == 0x82)):
                break  # not FIN + text/binary without RSV bits, masked, 1 to 125 bytes
            stop = pos + second - 0x7A  # 2 header + 4 mask + payload bytes
            if stop > end or (limit is not None and second - 0x80 > limit):
                break
            # Slices of at most 125 bytes: cheaper copied than viewed through a memoryview.
            payload = apply_mask(data[pos + 6 : stop], data[pos + 2 : pos + 6])
            if first == 0x81:
                try:
                    messages.append(text(payload.decode()))
                except UnicodeDecodeError:
                    break  # `feed` fails the connection on it, after the messages before it
            else:
                messages.append(binary(payload))
            pos = stop
        return pos

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Yield every complete frame out of the buffered bytes plus `data`.

        A generator, so that frames before a broken one are handled before the
        ProtocolError for the broken one is raised.
        """
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            buf = b"".join(self._chunks)
            self._chunks = []
        else:
            buf = data
        view = memoryview(buf)
        need = 2
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            first = buf[pos]
            second = buf[pos + 1]
            length = second & 0x7F
            header_end = pos + 2
            if length == 126:
                if end - pos < 4:
                    need = 4
                    break
                length = _UNPACK_16(buf, header_end)[0]
                header_end += 2
            elif length == 127:
                if end - pos < 10:
                    need = 10
                    break
                length = _UNPACK_64(buf, header_end)[0]
                header_end += 8
            self._check_header(first, second, length)
            masked = second & 0x80
            payload_start = header_end + 4 if masked else header_end
            payload_end = payload_start + length
            if payload_end > end:
                need = payload_end - pos
                break
            if masked:
                payload = apply_mask(view[payload_start:payload_end], buf[header_end:payload_start])
            else:
                payload = buf[payload_start:payload_end]
            yield Frame(
                first & 0x0F,
                payload,
                bool(first & 0x80),
                bool(first & 0x40),
                bool(first & 0x20),
                bool(first & 0x10),
            )
            pos = payload_end
        if pos < end:
            rest = buf[pos:]
            self._chunks = [rest]
            self._have = len(rest)
            self._need = need
        else:
            self._have = 0

    def _check_header(self, first: int, second: int, length: int) -> None:
        opcode = first & 0x0F
        if opcode not in _KNOWN_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        if first & 0x30 or (first & 0x40 and not self.allow_rsv1):
            raise ProtocolError("reserved bits set without a negotiated extension")
        if bool(second & 0x80) != self.expect_mask:
            raise ProtocolError(
                "client frames must be masked" if self.expect_mask else "server frames must not be masked"
            )
        if opcode >= 0x8:
            if not first & 0x80:
                raise ProtocolError("fragmented control frame")
            if length > 125:
                raise ProtocolError("control frame payload over 125 bytes")
            if first & 0x40:
                raise ProtocolError("RSV1 set on a control frame")
        elif length > 0x7FFFFFFFFFFFFFFF:
            raise ProtocolError("64-bit payload length with the most significant bit set")
        elif self.max_frame_size is not None and length > self.max_frame_size:
            raise ProtocolError(
                f"frame of {length} bytes over the limit of {self.max_frame_size}",
                CloseCode.MESSAGE_TOO_BIG,
            )
