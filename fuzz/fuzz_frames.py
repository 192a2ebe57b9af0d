"""Fuzz the connection state machine: WebSocketConnection.receive_data, both roles.

Input layout: byte 0 picks the codec (bit 0: permessage-deflate; bits 1-7: the negotiated
parameters), byte 1 how the rest is cut into receive_data calls (0: all at once), the rest
is the bytes the peer sent. The same bytes go to a server connection (which expects masked
frames) and to a client one (which expects unmasked frames), then b"" (the end of stream).

receive_data may not raise at all: a broken peer becomes a ProtocolFailure event. The
checks below also hold it to what it promises: only Event types come out, none after the
peer's close or a failure, no message over max_message_size, only bytes to send.

    python fuzz/fuzz_frames.py --seconds 60
"""

from __future__ import annotations

import random
import struct
import zlib

import _harness
import atheris

with atheris.instrument_imports(include=["websock_actors"]):
    from websock_actors.protocol import (
        BinaryMessage,
        CloseReceived,
        ConnectionLost,
        ConnectionState,
        DeflateOptions,
        DeflateParameters,
        PerMessageDeflate,
        PingReceived,
        PongReceived,
        ProtocolFailure,
        Role,
        TextMessage,
        WebSocketConnection,
    )

MAX_MESSAGE_SIZE = 1 << 20
EVENTS = (TextMessage, BinaryMessage, PingReceived, PongReceived, CloseReceived, ProtocolFailure)
_SIZES = (1, 2, 3, 4, 7, 10, 14, 125, 126, 127, 129, 1024, 4096, 65536)


def _deflate(mode: int, *, server: bool) -> PerMessageDeflate | None:
    if not mode & 1:
        return None
    bits = 8 + ((mode >> 4) & 7)
    params = DeflateParameters(
        server_no_context_takeover=bool(mode & 2),
        client_no_context_takeover=bool(mode & 4),
        server_max_window_bits=23 - bits if mode & 0x80 else None,
        client_max_window_bits=bits if mode & 8 else None,
    )
    return PerMessageDeflate(params, DeflateOptions(), server=server)


def _chunks(body: bytes, how: int) -> list[bytes]:
    if how == 0 or not body:
        return [body] if body else []
    rng = random.Random(how)  # a function of the input: the run stays reproducible
    out = []
    pos = 0
    while pos < len(body):
        size = rng.choice(_SIZES)
        out.append(body[pos : pos + size])
        pos += size
    return out


def _message_size(event: object) -> int:
    if isinstance(event, TextMessage):
        return len(event.data.encode("utf-8"))
    if isinstance(event, BinaryMessage):
        return len(event.data)
    return 0


def _run(role: Role, mode: int, chunks: list[bytes]) -> None:
    connection = WebSocketConnection(
        role, max_message_size=MAX_MESSAGE_SIZE, deflate=_deflate(mode, server=role is Role.SERVER)
    )
    ended = False
    for chunk in chunks:
        events = connection.receive_data(chunk)
        assert isinstance(events, list)
        for event in events:
            assert not ended, f"{event!r} after the connection ended"
            assert isinstance(event, EVENTS), event
            assert _message_size(event) <= MAX_MESSAGE_SIZE
            if isinstance(event, CloseReceived | ProtocolFailure):
                ended = True
                assert connection.state is ConnectionState.CLOSED
        out = connection.data_to_send()
        assert isinstance(out, list) and all(isinstance(b, bytes) for b in out)
    last = connection.receive_data(b"")
    assert last == [] if ended else (len(last) == 1 and isinstance(last[0], ConnectionLost)), last
    assert connection.state is ConnectionState.CLOSED
    out = connection.data_to_send()
    assert isinstance(out, list) and all(isinstance(b, bytes) for b in out)


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, how, body = data[0], data[1], data[2:]
    chunks = _chunks(body, how)
    _run(Role.SERVER, mode, chunks)
    _run(Role.CLIENT, mode, chunks)


# -- seeds ------------------------------------------------------------------------------------

_KEY = b"\x37\xfa\x21\x3d"


def _frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, mask: bool = True) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head = bytes((first, bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return head + payload
    return head + _KEY + bytes(b ^ _KEY[i % 4] for i, b in enumerate(payload))


def _compressed(payload: bytes, bits: int = 15) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -bits)
    return (z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def seeds() -> list[bytes]:
    streams = []
    for mask in (True, False):
        text = "héllo wörld ".encode() * 3
        streams += [
            _frame(0x1, b"Hello", mask=mask),
            _frame(0x2, bytes(range(200)), mask=mask) + _frame(0x9, b"ping", mask=mask),
            _frame(0x1, text[:5], fin=False, mask=mask)
            + _frame(0xA, b"", mask=mask)
            + _frame(0x0, text[5:], mask=mask)
            + _frame(0x8, struct.pack("!H", 1000) + b"bye", mask=mask),
            _frame(0x1, _compressed(text), rsv1=True, mask=mask),
            _frame(0x2, _compressed(b"a" * 70000)[:10], rsv1=True, fin=False, mask=mask)
            + _frame(0x0, _compressed(b"a" * 70000)[10:], mask=mask),
            _frame(0x2, _compressed(b"\x00" * 2_000_000, bits=9), rsv1=True, mask=mask),  # over the limit
            _frame(0x8, b"\x03\xe8\xff", mask=mask),  # invalid UTF-8 in the close reason
        ]
    return [bytes((mode, how)) + stream for stream in streams for mode, how in ((0, 0), (0x0B, 0), (0x9F, 7))]


if __name__ == "__main__":
    _harness.main("fuzz_frames", test_one_input, seeds=seeds())
