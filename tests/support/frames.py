"""WebSocket frames written and read by hand, and small builders for the protocol tests.

The hand-written part (`raw_frame`, `masked_frame`, `parse_frame`, `read_frame`, ...) shares
no code with the package's codec, so that the package is checked against an implementation
of RFC 6455's framing it does not share. It is the tests' one frame reader: `RawClient`, the
scripted peers and the byte-stream checks all read frames with it. The last few builders
(`masked`, `server`, `client`, `frames_of`, `sent_frames`) drive the package's sans-I/O
objects for the protocol tests.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import NamedTuple

from websock_actors.protocol import Frame, FrameParser, Opcode, Role, WebSocketConnection, encode_frame

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

FIXED_KEY = b"\x37\xfa\x21\x3d"


# -- writing ----------------------------------------------------------------------------------


def mask_bytes(payload: bytes, key: bytes) -> bytes:
    """`payload` XORed with the 4-byte `key` repeated (masking and unmasking alike)."""
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def header_only(first: int, length: int, *, masked: bool = True) -> bytes:
    """Just the header (and mask key, FIXED_KEY) of a frame declaring `length` payload bytes."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = bytes((first, mask_bit | 126)) + struct.pack("!H", length)
    else:
        header = bytes((first, mask_bit | 127)) + struct.pack("!Q", length)
    return header + (FIXED_KEY if masked else b"")


def raw_frame(first: int, payload: bytes = b"", *, mask_key: bytes | None = FIXED_KEY) -> bytes:
    """A frame with a hand-set first byte (FIN, RSV, opcode); `mask_key=None` leaves it unmasked."""
    header = header_only(first, len(payload), masked=False)
    if mask_key is None:
        return header + payload
    return bytes((header[0], header[1] | 0x80)) + header[2:] + mask_key + mask_bytes(payload, mask_key)


def masked_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One client frame, masked with a random key."""
    return raw_frame((0x80 if fin else 0) | opcode, payload, mask_key=os.urandom(4))


def close_body(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def close_code(payload: bytes) -> int:
    assert len(payload) >= 2, f"close frame without a code: {payload!r}"
    return int(struct.unpack("!H", payload[:2])[0])


# -- reading ----------------------------------------------------------------------------------


class RawFrame(NamedTuple):
    fin: bool
    rsv: int  # the three RSV bits, 0-7
    opcode: int
    masked: bool
    payload: bytes  # unmasked


def _missing(data: bytes | bytearray, pos: int = 0) -> tuple[int, int, int]:
    """(bytes still missing for the frame at `pos`, its header size, its payload length)."""
    have = len(data) - pos
    if have < 2:
        return 2 - have, 0, 0
    second = data[pos + 1]
    n = second & 0x7F
    head = 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if second & 0x80 else 0)
    if have < head:
        return head - have, head, 0
    if n == 126:
        (n,) = struct.unpack_from("!H", data, pos + 2)
    elif n == 127:
        (n,) = struct.unpack_from("!Q", data, pos + 2)
    return max(0, head + n - have), head, n


def parse_frame(data: bytes | bytearray, pos: int = 0) -> tuple[RawFrame, int] | None:
    """The frame starting at `data[pos]` and the position after it; None while incomplete."""
    missing, head, n = _missing(data, pos)
    if missing:
        return None
    first, second = data[pos], data[pos + 1]
    payload = bytes(data[pos + head : pos + head + n])
    masked = bool(second & 0x80)
    if masked:
        payload = mask_bytes(payload, bytes(data[pos + head - 4 : pos + head]))
    return RawFrame(bool(first & 0x80), (first >> 4) & 0x7, first & 0x0F, masked, payload), pos + head + n


def parse_frames(data: bytes | bytearray) -> tuple[list[RawFrame], bytes]:
    """Every complete frame of `data`, and the incomplete rest."""
    frames: list[RawFrame] = []
    pos = 0
    while (parsed := parse_frame(data, pos)) is not None:
        frame, pos = parsed
        frames.append(frame)
    return frames, bytes(data[pos:])


def read_frame(sock: socket.socket, buffered: bytearray, read_size: int | None = None) -> RawFrame:
    """The next frame of `buffered` (consumed) followed by what `sock` sends.

    `read_size=None` reads no byte past the frame, so the next call may pass a fresh buffer;
    otherwise up to `read_size` bytes a read, the rest kept in `buffered` for the next call.
    EOFError when the peer closes first.
    """
    while missing := _missing(buffered)[0]:
        chunk = sock.recv(missing if read_size is None else max(missing, read_size))
        if not chunk:
            raise EOFError("connection closed by the peer")
        buffered += chunk
    parsed = parse_frame(buffered)
    assert parsed is not None
    frame, end = parsed
    del buffered[:end]
    return frame


# -- the package's sans-I/O objects -----------------------------------------------------------


def masked(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as a client sends it, built by the package's `encode_frame` (a fresh key)."""
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=True)


def server(**options: object) -> WebSocketConnection:
    return WebSocketConnection(Role.SERVER, **options)  # type: ignore[arg-type]


def client(**options: object) -> WebSocketConnection:
    return WebSocketConnection(Role.CLIENT, **options)  # type: ignore[arg-type]


def frames_of(data: bytes, *, from_client: bool) -> list[Frame]:
    """Parse bytes as the peer would: a server parser for client bytes and vice versa."""
    return list(FrameParser(expect_mask=from_client).feed(data))


def sent_frames(conn: WebSocketConnection) -> list[Frame]:
    """Drain `data_to_send()` and parse it as the peer would."""
    return frames_of(b"".join(conn.data_to_send()), from_client=conn.role is Role.CLIENT)


__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "FIXED_KEY",
    "PING",
    "PONG",
    "TEXT",
    "Opcode",
    "RawFrame",
    "client",
    "close_body",
    "close_code",
    "frames_of",
    "header_only",
    "mask_bytes",
    "masked",
    "masked_frame",
    "parse_frame",
    "parse_frames",
    "raw_frame",
    "read_frame",
    "sent_frames",
    "server",
]
