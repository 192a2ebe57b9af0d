"""Broadcast frames: a server frame encoded once and shared by every member's mailbox.

Server frames are unmasked, so the same bytes serve every receiver. A member that
negotiated permessage-deflate without context takeover compresses with the server's shared
`MessageCompressor`, so the compressed frame too is made once per compressor and shared.
"""

from __future__ import annotations

from ..protocol.deflate import MessageCompressor
from ..protocol.frames import Opcode, encode_frame

__all__ = ["BroadcastFrame", "encode_broadcast"]


class BroadcastFrame(bytes):
    """An uncompressed server frame, encoded once to go into many mailboxes.

    For connections that compress with a shared `MessageCompressor` (permessage-deflate
    without context takeover), `compressed` makes the compressed frame once per compressor
    and keeps it, so every such member gets the same bytes too.
    """

    _opcode: int
    _payload_at: int
    _compressed: dict[MessageCompressor, bytes]

    def compressed(self, compressor: MessageCompressor) -> bytes:
        """This frame compressed by `compressor` (itself when under its threshold or when
        compression does not make it smaller)."""
        if len(self) - self._payload_at < compressor.threshold:
            return self
        frame = self._compressed.get(compressor)
        if frame is None:
            payload = compressor.compress(memoryview(self)[self._payload_at :])
            frame = self if payload is None else encode_frame(self._opcode, payload, rsv1=True)
            self._compressed[compressor] = frame
        return frame


def encode_broadcast(message: str | bytes, *, text: bool = False) -> BroadcastFrame:
    """Encode a server frame once, to put the same bytes into many mailboxes (`send_frame`):
    a text frame for `str` (or for UTF-8 bytes with `text`), a binary frame for bytes."""
    if isinstance(message, str):
        opcode, payload = Opcode.TEXT, message.encode("utf-8")
    else:
        opcode, payload = (Opcode.TEXT if text else Opcode.BINARY), bytes(message)
    frame = BroadcastFrame(encode_frame(opcode, payload))
    frame._opcode = opcode
    frame._payload_at = len(frame) - len(payload)
    frame._compressed = {}
    return frame
