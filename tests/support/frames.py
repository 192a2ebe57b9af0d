"""Small builders shared by the protocol tests."""

from __future__ import annotations

import struct

from websock_actors.protocol import Frame, FrameParser, Opcode, Role, WebSocketConnection, encode_frame
from websock_actors.protocol.frames import _apply_mask_int

FIXED_KEY = b"\x37\xfa\x21\x3d"


def masked(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as a client sends it (masked with a fresh key)."""
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=True)


def raw_frame(first: int, payload: bytes = b"", *, mask_key: bytes | None = FIXED_KEY) -> bytes:
    """A frame with a hand-set first byte (FIN, RSV, opcode), built without `encode_frame`.

    `mask_key=None` leaves it unmasked.
    """
    n = len(payload)
    mask_bit = 0 if mask_key is None else 0x80
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 65536:
        header = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        header = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    if mask_key is None:
        return header + payload
    return header + mask_key + _apply_mask_int(payload, mask_key)


def header_only(first: int, length: int, *, masked: bool = True) -> bytes:
    """Just the header (and mask key) of a frame declaring `length` payload bytes."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 65536:
        header = bytes((first, mask_bit | 126)) + struct.pack("!H", length)
    else:
        header = bytes((first, mask_bit | 127)) + struct.pack("!Q", length)
    return header + (FIXED_KEY if masked else b"")


def close_body(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


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
    "FIXED_KEY",
    "Opcode",
    "client",
    "close_body",
    "frames_of",
    "header_only",
    "masked",
    "raw_frame",
    "sent_frames",
    "server",
]
