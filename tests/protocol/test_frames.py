"""Frames: bytes <-> Frame tables, length forms, masking, and every header rule."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from websock_actors.errors import CloseCode, ProtocolError
from websock_actors.protocol import Frame, FrameParser, Opcode, apply_mask, encode_frame
from websock_actors.protocol.frames import CONTROL_OPCODES, DATA_OPCODES, _apply_mask_int

from ..support.frames import FIXED_KEY, header_only, raw_frame


def parse_all(data: bytes, *, expect_mask: bool, **options: object) -> list[Frame]:
    return list(FrameParser(expect_mask=expect_mask, **options).feed(data))  # type: ignore[arg-type]


def protocol_error(data: bytes, *, expect_mask: bool, **options: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_all(data, expect_mask=expect_mask, **options)
    return info.value


# -- encode / parse tables -------------------------------------------------------------

# (opcode, payload, fin, wire bytes unmasked)
UNMASKED_TABLE = [
    (Opcode.TEXT, b"Hello", True, b"\x81\x05Hello"),  # RFC 6455 5.7
    (Opcode.BINARY, b"\x00\xff\x10", True, b"\x82\x03\x00\xff\x10"),
    (Opcode.TEXT, b"Hel", False, b"\x01\x03Hel"),  # RFC 6455 5.7, fragmented
    (Opcode.CONTINUATION, b"lo", True, b"\x80\x02lo"),
    (Opcode.CONTINUATION, b"", False, b"\x00\x00"),
    (Opcode.BINARY, b"", True, b"\x82\x00"),
    (Opcode.CLOSE, b"\x03\xe8", True, b"\x88\x02\x03\xe8"),
    (Opcode.CLOSE, b"", True, b"\x88\x00"),
    (Opcode.PING, b"Hello", True, b"\x89\x05Hello"),  # RFC 6455 5.7
    (Opcode.PONG, b"Hello", True, b"\x8a\x05Hello"),  # RFC 6455 5.7
]


@pytest.mark.parametrize(("opcode", "payload", "fin", "wire"), UNMASKED_TABLE)
def test_encode_unmasked(opcode: int, payload: bytes, fin: bool, wire: bytes) -> None:
    assert encode_frame(opcode, payload, fin=fin) == wire


@pytest.mark.parametrize(("opcode", "payload", "fin", "wire"), UNMASKED_TABLE)
def test_parse_unmasked(opcode: int, payload: bytes, fin: bool, wire: bytes) -> None:
    assert parse_all(wire, expect_mask=False) == [Frame(opcode, payload, fin)]


def test_parse_rfc_masked_example() -> None:
    # RFC 6455 5.7: a single-frame masked text message "Hello".
    wire = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    assert parse_all(wire, expect_mask=True) == [Frame(Opcode.TEXT, b"Hello", True)]


@pytest.mark.parametrize(("opcode", "payload", "fin", "wire"), UNMASKED_TABLE)
def test_encode_masked_with_known_key(opcode: int, payload: bytes, fin: bool, wire: bytes) -> None:
    data = encode_frame(opcode, payload, fin=fin, mask=True, mask_key=FIXED_KEY)
    # Same first byte, mask bit set on the length byte, then the key, then the XORed payload.
    assert data[0] == wire[0]
    assert data[1] == wire[1] | 0x80
    assert data[2:6] == FIXED_KEY
    assert data[6:] == bytes(b ^ FIXED_KEY[i % 4] for i, b in enumerate(payload))
    assert parse_all(data, expect_mask=True) == [Frame(opcode, payload, fin)]


def test_encode_masked_rfc_example() -> None:
    wire = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    assert encode_frame(Opcode.TEXT, b"Hello", mask=True, mask_key=FIXED_KEY) == wire


def test_masking_uses_a_fresh_key_per_frame() -> None:
    payload = b"x" * 64
    keys = {encode_frame(Opcode.BINARY, payload, mask=True)[2:6] for _ in range(8)}
    assert len(keys) > 1


def test_rsv1_is_encoded_and_parsed_when_allowed() -> None:
    data = encode_frame(Opcode.TEXT, b"z", rsv1=True)
    assert data == b"\xc1\x01z"
    assert parse_all(data, expect_mask=False, allow_rsv1=True) == [Frame(Opcode.TEXT, b"z", True, rsv1=True)]


def test_parse_reports_rsv_bits_and_fin() -> None:
    [frame] = parse_all(raw_frame(0x02, b"ab", mask_key=None), expect_mask=False)
    assert (frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False, False)


# -- the three length forms ------------------------------------------------------------

# (payload length, expected header bytes for an unmasked binary frame)
LENGTH_TABLE = [
    (0, b"\x82\x00"),
    (1, b"\x82\x01"),
    (125, b"\x82\x7d"),
    (126, b"\x82\x7e\x00\x7e"),
    (127, b"\x82\x7e\x00\x7f"),
    (65535, b"\x82\x7e\xff\xff"),
    (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    (65537, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x01"),
]


@pytest.mark.parametrize(("length", "header"), LENGTH_TABLE)
def test_length_forms_unmasked(length: int, header: bytes) -> None:
    payload = bytes(i & 0xFF for i in range(length))
    data = encode_frame(Opcode.BINARY, payload)
    assert data[: len(header)] == header
    assert data[len(header) :] == payload
    assert parse_all(data, expect_mask=False) == [Frame(Opcode.BINARY, payload, True)]


@pytest.mark.parametrize(("length", "header"), LENGTH_TABLE)
def test_length_forms_masked(length: int, header: bytes) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(length))
    data = encode_frame(Opcode.BINARY, payload, mask=True)
    expected_header = bytes((header[0], header[1] | 0x80)) + header[2:]
    assert data[: len(header)] == expected_header
    assert len(data) == len(header) + 4 + length
    key = data[len(header) : len(header) + 4]
    assert _apply_mask_int(data[len(header) + 4 :], key) == payload
    assert parse_all(data, expect_mask=True) == [Frame(Opcode.BINARY, payload, True)]


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 300])
def test_length_forms_parse_byte_by_byte(length: int) -> None:
    data = encode_frame(Opcode.BINARY, b"q" * length, mask=True)
    parser = FrameParser(expect_mask=True)
    for i in range(len(data) - 1):
        assert list(parser.feed(data[i : i + 1])) == []
        assert parser.buffered == i + 1
    assert list(parser.feed(data[-1:])) == [Frame(Opcode.BINARY, b"q" * length, True)]
    assert parser.buffered == 0


def test_large_frame_in_two_pieces() -> None:
    payload = os.urandom(70000)
    data = encode_frame(Opcode.BINARY, payload, mask=True)
    parser = FrameParser(expect_mask=True)
    assert list(parser.feed(data[:5])) == []
    assert list(parser.feed(data[5:40000])) == []
    assert parser.buffered == 40000
    assert list(parser.feed(data[40000:])) == [Frame(Opcode.BINARY, payload, True)]


def test_several_frames_in_one_chunk_and_a_partial_tail() -> None:
    data = (
        encode_frame(Opcode.TEXT, b"one", mask=True)
        + encode_frame(Opcode.PING, b"p", mask=True)
        + encode_frame(Opcode.BINARY, b"two", mask=True)
    )
    tail = encode_frame(Opcode.TEXT, b"three", mask=True)
    parser = FrameParser(expect_mask=True)
    frames = list(parser.feed(data + tail[:3]))
    assert frames == [
        Frame(Opcode.TEXT, b"one", True),
        Frame(Opcode.PING, b"p", True),
        Frame(Opcode.BINARY, b"two", True),
    ]
    assert parser.buffered == 3
    assert list(parser.feed(tail[3:])) == [Frame(Opcode.TEXT, b"three", True)]


def test_feed_empty_bytes_yields_nothing() -> None:
    parser = FrameParser(expect_mask=True)
    assert list(parser.feed(b"")) == []
    assert parser.buffered == 0


# -- masking rules ---------------------------------------------------------------------


def test_server_parser_refuses_unmasked_client_frame() -> None:
    exc = protocol_error(encode_frame(Opcode.TEXT, b"hi"), expect_mask=True)
    assert exc.code == CloseCode.PROTOCOL_ERROR == 1002


def test_client_parser_refuses_masked_server_frame() -> None:
    exc = protocol_error(encode_frame(Opcode.TEXT, b"hi", mask=True), expect_mask=False)
    assert exc.code == 1002


def test_mask_error_is_raised_from_the_header_alone() -> None:
    # Only the two header bytes of an unmasked 100-byte frame: refused before the payload.
    exc = protocol_error(b"\x82\x64", expect_mask=True)
    assert exc.code == 1002


# -- reserved bits and opcodes ---------------------------------------------------------


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
@pytest.mark.parametrize("expect_mask", [True, False])
def test_reserved_bits_without_extension(rsv: int, expect_mask: bool) -> None:
    data = raw_frame(0x80 | rsv | Opcode.TEXT, b"x", mask_key=FIXED_KEY if expect_mask else None)
    assert protocol_error(data, expect_mask=expect_mask).code == 1002


@pytest.mark.parametrize("rsv", [0x20, 0x10])
def test_rsv2_rsv3_refused_even_with_rsv1_allowed(rsv: int) -> None:
    data = raw_frame(0x80 | rsv | Opcode.BINARY, b"x")
    assert protocol_error(data, expect_mask=True, allow_rsv1=True).code == 1002


def test_rsv1_accepted_on_data_frame_when_allowed_but_not_on_control_frame() -> None:
    ok = raw_frame(0x80 | 0x40 | Opcode.BINARY, b"x")
    assert parse_all(ok, expect_mask=True, allow_rsv1=True) == [Frame(Opcode.BINARY, b"x", True, rsv1=True)]
    bad = raw_frame(0x80 | 0x40 | Opcode.PING, b"x")
    assert protocol_error(bad, expect_mask=True, allow_rsv1=True).code == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
@pytest.mark.parametrize("expect_mask", [True, False])
def test_reserved_opcodes(opcode: int, expect_mask: bool) -> None:
    data = raw_frame(0x80 | opcode, b"", mask_key=FIXED_KEY if expect_mask else None)
    exc = protocol_error(data, expect_mask=expect_mask)
    assert exc.code == 1002
    assert "opcode" in exc.reason


def test_known_opcode_sets() -> None:
    assert {int(op) for op in DATA_OPCODES} == {0, 1, 2}
    assert {int(op) for op in CONTROL_OPCODES} == {8, 9, 10}


# -- control frame rules ---------------------------------------------------------------


@pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
def test_fragmented_control_frame(opcode: int) -> None:
    data = raw_frame(opcode, b"ab")  # FIN clear
    assert protocol_error(data, expect_mask=True).code == 1002


@pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
def test_control_frame_payload_limit(opcode: int) -> None:
    assert parse_all(raw_frame(0x80 | opcode, b"a" * 125), expect_mask=True) == [
        Frame(opcode, b"a" * 125, True)
    ]
    assert protocol_error(raw_frame(0x80 | opcode, b"a" * 126), expect_mask=True).code == 1002


def test_oversized_control_frame_refused_from_header_alone() -> None:
    # A ping declaring 200 bytes: refused without waiting for them.
    assert protocol_error(header_only(0x80 | Opcode.PING, 200), expect_mask=True).code == 1002


# -- max_frame_size ----------------------------------------------------------------------


@pytest.mark.parametrize("limit", [100, 125, 126, 1000, 65535, 65536])
def test_frame_over_limit_fails_1009_before_payload(limit: int) -> None:
    parser = FrameParser(expect_mask=True, max_frame_size=limit)
    with pytest.raises(ProtocolError) as info:
        list(parser.feed(header_only(0x80 | Opcode.BINARY, limit + 1)))
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG == 1009


@pytest.mark.parametrize("limit", [100, 125, 126, 1000, 65535, 65536])
def test_frame_at_limit_is_accepted(limit: int) -> None:
    parser = FrameParser(expect_mask=True, max_frame_size=limit)
    header = header_only(0x80 | Opcode.BINARY, limit)
    assert list(parser.feed(header)) == []
    assert parser.buffered == len(header)
    payload = b"\x01" * limit
    assert list(parser.feed(_apply_mask_int(payload, FIXED_KEY))) == [Frame(Opcode.BINARY, payload, True)]


def test_huge_declared_length_fails_1009() -> None:
    parser = FrameParser(expect_mask=False, max_frame_size=1 << 20)
    with pytest.raises(ProtocolError) as info:
        list(parser.feed(b"\x82\x7f" + (1 << 40).to_bytes(8, "big")))
    assert info.value.code == 1009


def test_continuation_frame_is_size_checked_too() -> None:
    parser = FrameParser(expect_mask=True, max_frame_size=10)
    with pytest.raises(ProtocolError) as info:
        list(parser.feed(header_only(Opcode.CONTINUATION, 11)))
    assert info.value.code == 1009


def test_frames_before_a_broken_one_are_yielded_first() -> None:
    good = encode_frame(Opcode.TEXT, b"ok", mask=True)
    bad = encode_frame(Opcode.TEXT, b"unmasked")
    gen = FrameParser(expect_mask=True).feed(good + good + bad)
    assert next(gen) == Frame(Opcode.TEXT, b"ok", True)
    assert next(gen) == Frame(Opcode.TEXT, b"ok", True)
    with pytest.raises(ProtocolError):
        next(gen)


# -- the mask XOR ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2048), key=st.binary(min_size=4, max_size=4))
def test_pure_python_mask_equals_compiled(data: bytes, key: bytes) -> None:
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert _apply_mask_int(data, key) == expected
    assert apply_mask(data, key) == expected
    assert _apply_mask_int(memoryview(data), key) == expected
    assert apply_mask(memoryview(data), key) == expected
    assert _apply_mask_int(_apply_mask_int(data, key), key) == data


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 4096, 65537])
def test_pure_python_mask_equals_compiled_at_sizes(n: int) -> None:
    data = os.urandom(n)
    key = os.urandom(4)
    assert _apply_mask_int(data, key) == apply_mask(data, key)
    assert len(_apply_mask_int(data, key)) == n


def test_pure_python_mask_keeps_leading_and_trailing_zero_bytes() -> None:
    # Big-integer XOR must not drop zero bytes at either end.
    key = b"\x01\x02\x03\x04"
    data = b"\x01\x02\x03\x04\x01"
    assert _apply_mask_int(data, key) == b"\x00\x00\x00\x00\x00"
    assert apply_mask(data, key) == b"\x00\x00\x00\x00\x00"


def test_the_short_message_fast_path_stops_where_feed_must_take_over() -> None:
    texts = [encode_frame(Opcode.TEXT, b"hi", mask=True), encode_frame(Opcode.BINARY, b"\x00", mask=True)]
    ping = encode_frame(Opcode.PING, b"", mask=True)
    bad_text = encode_frame(Opcode.TEXT, b"\xff", mask=True)
    data = b"".join(texts) + ping + texts[0]
    messages: list[object] = []
    taken = FrameParser(expect_mask=True).feed_short_messages(data, messages, str.upper, bytes)
    assert (taken, messages) == (len(texts[0]) + len(texts[1]), ["HI", b"\x00"])
    messages = []
    taken = FrameParser(expect_mask=True).feed_short_messages(texts[0] + bad_text, messages, str, bytes)
    assert (taken, messages) == (len(texts[0]), ["hi"])  # invalid UTF-8: feed fails on it
    assert FrameParser(expect_mask=False).feed_short_messages(data, [], str, bytes) == 0
    parser = FrameParser(expect_mask=True)
    assert list(parser.feed(texts[0][:3])) == []
    assert parser.feed_short_messages(texts[0], [], str, bytes) == 0  # bytes of a frame are buffered
