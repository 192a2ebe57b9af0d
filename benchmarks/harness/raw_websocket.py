"""A WebSocket client at the byte level, for clients that misbehave or must stay cheap (soak.py,
hostile_bounds.py): the request head, masked client frames, and server frames taken off a buffer."""

from __future__ import annotations

import base64
import os
import struct
from typing import Any

__all__ = [
    "HandshakeFailed", "client_frame", "frame_header", "mask", "read_handshake", "request_head",
    "server_frames", "text_frame"
]


class HandshakeFailed(Exception):
    """The server closed the handshake, or answered it with another status than 101."""


def request_head(port: int) -> bytes:
    """An opening handshake request for 127.0.0.1:`port` (a fresh key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def read_handshake(sock: Any, limit: int = 16384) -> bytes:
    """Read the answer to `request_head` from `sock`: the bytes that came behind the 101."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > limit:
            raise HandshakeFailed("no answer")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise HandshakeFailed(status.decode(errors="replace"))
    return rest


def mask(payload: bytes, key: bytes) -> bytes:
    """`payload` masked with the 4-byte `key` (one big-integer XOR, not a loop per byte)."""
    n = len(payload)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def frame_header(opcode: int, length: int, key: bytes) -> bytes:
    """The header of a final, masked client frame of `length` bytes, its masking key included."""
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + key


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A whole masked client frame (a fresh key)."""
    key = os.urandom(4)
    return frame_header(opcode, len(payload), key) + mask(payload, key)


def text_frame(text: str) -> bytes:
    return client_frame(0x1, text.encode())


def server_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Take the complete (unmasked) server frames off the front of `buf`: (opcode, payload)."""
    frames, pos, end = [], 0, len(buf)
    while end - pos >= 2:
        length, head = buf[pos + 1] & 0x7F, 2
        if length == 126:
            if end - pos < 4:
                break
            length, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
        elif length == 127:
            if end - pos < 10:
                break
            length, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
        if end - pos < head + length:
            break
        frames.append((buf[pos] & 0x0F, bytes(buf[pos + head : pos + head + length])))
        pos += head + length
    del buf[:pos]  # once: deleting per frame would copy the rest of the buffer each time
    return frames
