"""The connection state machine, both roles: events, replies queued, and closing."""

from __future__ import annotations

import pytest

from websock_actors.errors import CloseCode
from websock_actors.protocol import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    ConnectionState,
    Frame,
    Opcode,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    Role,
    TextMessage,
    WebSocketConnection,
    close_payload,
    encode_frame,
    is_valid_close_code,
)

from ..support.frames import (
    client,
    close_body,
    frames_of,
    header_only,
    masked,
    raw_frame,
    sent_frames,
    server,
)


def failure_code(events: list[object]) -> int:
    assert events, "expected a ProtocolFailure"
    last = events[-1]
    assert isinstance(last, ProtocolFailure), events
    return last.code


def assert_failed_with(conn: WebSocketConnection, events: list[object], code: int) -> None:
    """The last event is a ProtocolFailure(code), a close frame with it is queued, and we are CLOSED."""
    assert failure_code(events) == code
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_sent
    [close] = sent_frames(conn)
    assert close.opcode == Opcode.CLOSE
    assert int.from_bytes(close.payload[:2], "big") == code
    close.payload[2:].decode("utf-8")  # the reason is valid UTF-8
    # Later input is ignored.
    assert conn.receive_data(masked(Opcode.TEXT, b"late")) == []
    assert conn.receive_data(b"") == []
    assert conn.data_to_send() == []


# -- data messages ---------------------------------------------------------------------------


def test_initial_state() -> None:
    conn = server()
    assert conn.state is ConnectionState.OPEN
    assert not conn.close_sent and not conn.close_received
    assert conn.close_code is None and conn.close_reason == ""
    assert conn.max_message_size == DEFAULT_MAX_MESSAGE_SIZE
    assert conn.data_to_send() == []


def test_text_and_binary_messages() -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.TEXT, "héllo ☃".encode())) == [TextMessage("héllo ☃")]
    assert conn.receive_data(masked(Opcode.BINARY, b"\x00\xff")) == [BinaryMessage(b"\x00\xff")]
    assert conn.receive_data(masked(Opcode.TEXT, b"")) == [TextMessage("")]
    assert conn.receive_data(masked(Opcode.BINARY, b"")) == [BinaryMessage(b"")]
    assert conn.data_to_send() == []
    assert conn.state is ConnectionState.OPEN


def test_several_messages_in_one_chunk() -> None:
    conn = server()
    data = masked(Opcode.TEXT, b"a") + masked(Opcode.BINARY, b"b") + masked(Opcode.TEXT, b"c")
    assert conn.receive_data(data) == [TextMessage("a"), BinaryMessage(b"b"), TextMessage("c")]


def test_message_split_across_receives() -> None:
    conn = server()
    data = masked(Opcode.TEXT, b"x" * 300)
    assert conn.receive_data(data[:3]) == []
    assert conn.receive_data(data[3:100]) == []
    assert conn.receive_data(data[100:]) == [TextMessage("x" * 300)]


def test_client_role_reads_unmasked_frames() -> None:
    conn = client()
    assert conn.receive_data(encode_frame(Opcode.TEXT, b"hi")) == [TextMessage("hi")]
    assert conn.receive_data(encode_frame(Opcode.BINARY, b"\x01")) == [BinaryMessage(b"\x01")]


def test_server_role_refuses_unmasked_frame() -> None:
    conn = server()
    events = conn.receive_data(encode_frame(Opcode.TEXT, b"hi"))
    assert_failed_with(conn, events, 1002)


def test_client_role_refuses_masked_frame_and_masks_its_close() -> None:
    conn = client()
    events = conn.receive_data(encode_frame(Opcode.TEXT, b"hi", mask=True))
    assert failure_code(events) == 1002
    [data] = conn.data_to_send()
    assert data[1] & 0x80, "a client's close frame must be masked"
    [close] = frames_of(data, from_client=True)
    assert close.payload[:2] == b"\x03\xea"


@pytest.mark.parametrize("first", [0x80 | 0x40 | 1, 0x80 | 0x20 | 1, 0x80 | 0x10 | 2, 0x83, 0x8B, 0x8F])
def test_reserved_bits_and_opcodes_fail_the_connection(first: int) -> None:
    conn = server()
    assert_failed_with(conn, conn.receive_data(raw_frame(first, b"x")), 1002)


# -- fragmentation -----------------------------------------------------------------------------


def test_fragmented_text_with_control_frames_between() -> None:
    conn = server()
    events = conn.receive_data(masked(Opcode.TEXT, b"Hel", fin=False))
    assert events == []
    events = conn.receive_data(masked(Opcode.PING, b"p1"))
    assert events == [PingReceived(b"p1")]
    assert conn.receive_data(masked(Opcode.CONTINUATION, b"lo, ", fin=False)) == []
    assert conn.receive_data(masked(Opcode.PONG, b"p2")) == [PongReceived(b"p2")]
    assert conn.receive_data(masked(Opcode.CONTINUATION, b"world")) == [TextMessage("Hello, world")]
    assert [(f.opcode, f.payload) for f in sent_frames(conn)] == [(Opcode.PONG, b"p1")]
    # The next message starts afresh.
    assert conn.receive_data(masked(Opcode.BINARY, b"z")) == [BinaryMessage(b"z")]


def test_fragmented_binary_in_one_chunk() -> None:
    conn = server()
    data = (
        masked(Opcode.BINARY, b"\x00", fin=False)
        + masked(Opcode.CONTINUATION, b"", fin=False)
        + masked(Opcode.PING, b"")
        + masked(Opcode.CONTINUATION, b"\x01\x02", fin=False)
        + masked(Opcode.CONTINUATION, b"\x03")
        + masked(Opcode.TEXT, b"after")
    )
    assert conn.receive_data(data) == [
        PingReceived(b""),
        BinaryMessage(b"\x00\x01\x02\x03"),
        TextMessage("after"),
    ]


def test_two_fragmented_messages_in_a_row() -> None:
    conn = server()
    for opcode, parts, expected in [
        (Opcode.TEXT, [b"a", b"b", b"c"], TextMessage("abc")),
        (Opcode.BINARY, [b"d", b"e"], BinaryMessage(b"de")),
        (Opcode.TEXT, [b"f", b""], TextMessage("f")),
    ]:
        data = masked(opcode, parts[0], fin=False)
        for part in parts[1:-1]:
            data += masked(Opcode.CONTINUATION, part, fin=False)
        data += masked(Opcode.CONTINUATION, parts[-1])
        assert conn.receive_data(data) == [expected]


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start(fin: bool) -> None:
    conn = server()
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CONTINUATION, b"x", fin=fin)), 1002)


def test_continuation_after_a_complete_message() -> None:
    conn = server()
    events = conn.receive_data(masked(Opcode.TEXT, b"done") + masked(Opcode.CONTINUATION, b"x"))
    assert events[0] == TextMessage("done")
    assert_failed_with(conn, events, 1002)


@pytest.mark.parametrize("first", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("second", [Opcode.TEXT, Opcode.BINARY])
@pytest.mark.parametrize("fin", [True, False])
def test_new_data_frame_inside_fragmented_message(first: int, second: int, fin: bool) -> None:
    conn = server()
    assert conn.receive_data(masked(first, b"a", fin=False)) == []
    assert_failed_with(conn, conn.receive_data(masked(second, b"b", fin=fin)), 1002)


# -- UTF-8 ---------------------------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",
    b"\xc0\xaf",  # overlong "/"
    b"\xed\xa0\x80",  # a surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xe2\x82",  # truncated
    b"abc\x80",  # lone continuation byte
]


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_single_frame(payload: bytes) -> None:
    conn = server()
    assert_failed_with(conn, conn.receive_data(masked(Opcode.TEXT, payload)), CloseCode.INVALID_DATA)


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_in_final_fragment(payload: bytes) -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.TEXT, b"ok", fin=False)) == []
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CONTINUATION, payload)), 1007)


@pytest.mark.parametrize(
    "payload", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80more", b"\xf4\x90\x80\x80", b"\x80"]
)
def test_invalid_utf8_fails_fast_in_first_fragment(payload: bytes) -> None:
    conn = server()
    # The final fragment has not arrived: the error is already known and reported.
    assert_failed_with(conn, conn.receive_data(masked(Opcode.TEXT, payload, fin=False)), 1007)


def test_invalid_utf8_fails_fast_in_a_middle_fragment() -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.TEXT, b"fine", fin=False)) == []
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CONTINUATION, b"\xfe", fin=False)), 1007)


def test_invalid_utf8_in_binary_is_fine() -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.BINARY, b"\xff\xfe")) == [BinaryMessage(b"\xff\xfe")]


@pytest.mark.parametrize("text", ["é", "€", "😀", "a€😀b"])
def test_utf8_split_across_fragments(text: str) -> None:
    encoded = text.encode("utf-8")
    for cut in range(1, len(encoded)):
        conn = server()
        data = masked(Opcode.TEXT, encoded[:cut], fin=False) + masked(Opcode.CONTINUATION, encoded[cut:])
        assert conn.receive_data(data) == [TextMessage(text)], cut


def test_utf8_split_byte_per_fragment() -> None:
    encoded = "😀€é".encode()
    conn = server()
    assert conn.receive_data(masked(Opcode.TEXT, encoded[:1], fin=False)) == []
    for i in range(1, len(encoded) - 1):
        assert conn.receive_data(masked(Opcode.CONTINUATION, encoded[i : i + 1], fin=False)) == []
    assert conn.receive_data(masked(Opcode.CONTINUATION, encoded[-1:])) == [TextMessage("😀€é")]


def test_truncated_utf8_at_end_of_fragmented_message() -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.TEXT, b"a\xe2", fin=False)) == []
    assert conn.receive_data(masked(Opcode.CONTINUATION, b"\x82", fin=False)) == []
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CONTINUATION, b"")), 1007)


# -- close frames -------------------------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_code_is_echoed(code: int) -> None:
    assert is_valid_close_code(code)
    conn = server()
    events = conn.receive_data(masked(Opcode.CLOSE, close_body(code, "bye ☃".encode())))
    assert events == [CloseReceived(code, "bye ☃")]
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_received and conn.close_sent
    [reply] = sent_frames(conn)
    assert reply.opcode == Opcode.CLOSE
    assert reply.payload == code.to_bytes(2, "big")
    assert conn.send_close() == b""


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_code_fails_1002(code: int) -> None:
    assert not is_valid_close_code(code)
    conn = server()
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CLOSE, close_body(code))), 1002)


def test_one_byte_close_payload_fails_1002() -> None:
    conn = server()
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CLOSE, b"\x03")), 1002)


def test_close_reason_invalid_utf8_fails_1007() -> None:
    conn = server()
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CLOSE, close_body(1000, b"\xff"))), 1007)


def test_empty_close_payload() -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.CLOSE)) == [CloseReceived(CloseCode.NO_STATUS, "")]
    assert CloseCode.NO_STATUS == 1005
    [reply] = sent_frames(conn)
    assert (reply.opcode, reply.payload) == (Opcode.CLOSE, b"")
    assert conn.state is ConnectionState.CLOSED


def test_client_close_reply_is_masked() -> None:
    conn = client()
    assert conn.receive_data(encode_frame(Opcode.CLOSE, close_body(1001))) == [CloseReceived(1001, "")]
    [data] = conn.data_to_send()
    assert data[1] & 0x80
    assert frames_of(data, from_client=True) == [Frame(Opcode.CLOSE, b"\x03\xe9", True)]


def test_frames_after_peer_close_in_same_chunk_are_ignored() -> None:
    conn = server()
    data = masked(Opcode.TEXT, b"a") + masked(Opcode.CLOSE, close_body(1000)) + masked(Opcode.TEXT, b"b")
    assert conn.receive_data(data) == [TextMessage("a"), CloseReceived(1000, "")]
    assert conn.receive_data(masked(Opcode.TEXT, b"c")) == []


def test_closing_handshake_initiated_by_us() -> None:
    conn = server()
    frame = conn.send_close(1001, "going")
    assert frames_of(frame, from_client=False) == [Frame(Opcode.CLOSE, b"\x03\xe9going", True)]
    assert conn.state is ConnectionState.CLOSING
    assert conn.close_sent
    assert conn.send_close() == b""  # only one close frame
    # Data and pings still arrive while closing; no pong is sent after our close.
    assert conn.receive_data(masked(Opcode.TEXT, b"late")) == [TextMessage("late")]
    assert conn.receive_data(masked(Opcode.PING, b"p")) == [PingReceived(b"p")]
    assert conn.data_to_send() == []
    assert conn.receive_data(masked(Opcode.CLOSE, close_body(1001))) == [CloseReceived(1001, "")]
    assert conn.state is ConnectionState.CLOSED
    assert conn.close_received
    assert conn.data_to_send() == []  # no second close frame


def test_client_send_close_is_masked() -> None:
    conn = client()
    frame = conn.send_close()
    assert frame[1] & 0x80
    assert frames_of(frame, from_client=True) == [Frame(Opcode.CLOSE, b"\x03\xe8", True)]
    assert conn.state is ConnectionState.CLOSING


@pytest.mark.parametrize("code", [None, CloseCode.NO_STATUS])
def test_send_close_without_code_is_empty(code: int | None) -> None:
    conn = server()
    assert conn.send_close(code) == b"\x88\x00"


def test_send_close_refuses_bad_arguments() -> None:
    conn = server()
    with pytest.raises(ValueError):
        conn.send_close(1006)
    with pytest.raises(ValueError):
        conn.send_close(None, "reason without code")
    with pytest.raises(ValueError):
        conn.send_close(1000, "x" * 124)
    assert not conn.close_sent
    assert conn.state is ConnectionState.OPEN
    assert len(conn.send_close(1000, "é" * 61)) == 2 + 2 + 122


def test_close_payload_helper() -> None:
    assert close_payload(1000) == b"\x03\xe8"
    assert close_payload(4000, "why") == b"\x0f\xa0why"
    assert close_payload(None) == b""
    with pytest.raises(ValueError):
        close_payload(999)


# -- ping / pong -------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125))])
def test_ping_is_answered_with_same_payload(payload: bytes) -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.PING, payload)) == [PingReceived(payload)]
    [data] = conn.data_to_send()
    assert data == encode_frame(Opcode.PONG, payload)  # server frames are unmasked
    assert conn.data_to_send() == []


def test_client_pong_is_masked() -> None:
    conn = client()
    assert conn.receive_data(encode_frame(Opcode.PING, b"abc")) == [PingReceived(b"abc")]
    [data] = conn.data_to_send()
    assert data[1] & 0x80
    assert frames_of(data, from_client=True) == [Frame(Opcode.PONG, b"abc", True)]


def test_several_pings_queue_several_pongs() -> None:
    conn = server()
    conn.receive_data(masked(Opcode.PING, b"1") + masked(Opcode.PING, b"2"))
    assert [f.payload for f in sent_frames(conn)] == [b"1", b"2"]


def test_pong_is_reported_and_not_answered() -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.PONG, b"x")) == [PongReceived(b"x")]
    assert conn.data_to_send() == []


def test_ping_too_long_fails_1002() -> None:
    conn = server()
    assert_failed_with(conn, conn.receive_data(raw_frame(0x80 | Opcode.PING, b"a" * 126)), 1002)


def test_fragmented_ping_fails_1002() -> None:
    conn = server()
    assert_failed_with(conn, conn.receive_data(raw_frame(Opcode.PING, b"a")), 1002)


# -- limits --------------------------------------------------------------------------------------


def test_max_message_size_single_frame_from_header() -> None:
    conn = server(max_message_size=100)
    assert conn.receive_data(masked(Opcode.BINARY, b"a" * 100)) == [BinaryMessage(b"a" * 100)]
    # Only the header of a 101-byte frame: refused before its payload arrives.
    assert_failed_with(conn, conn.receive_data(header_only(0x80 | Opcode.BINARY, 101)), 1009)


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_max_message_size_over_several_fragments(opcode: int) -> None:
    conn = server(max_message_size=10)
    assert conn.receive_data(masked(opcode, b"aaaa", fin=False)) == []
    assert conn.receive_data(masked(Opcode.CONTINUATION, b"bbbb", fin=False)) == []
    events = conn.receive_data(masked(Opcode.CONTINUATION, b"ccc", fin=False))  # 11 > 10, not final yet
    assert_failed_with(conn, events, CloseCode.MESSAGE_TOO_BIG)


def test_max_message_size_exactly_reached_by_fragments() -> None:
    conn = server(max_message_size=10)
    data = masked(Opcode.TEXT, b"aaaa", fin=False) + masked(Opcode.CONTINUATION, b"bbbbbb")
    assert conn.receive_data(data) == [TextMessage("aaaabbbbbb")]
    # The count restarts with the next message.
    data = masked(Opcode.BINARY, b"x" * 5, fin=False) + masked(Opcode.CONTINUATION, b"y" * 5)
    assert conn.receive_data(data) == [BinaryMessage(b"xxxxxyyyyy")]


def test_no_message_size_limit() -> None:
    conn = server(max_message_size=None)
    payload = b"z" * (DEFAULT_MAX_MESSAGE_SIZE + 1)
    assert conn.receive_data(masked(Opcode.BINARY, payload)) == [BinaryMessage(payload)]


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_max_fragments(opcode: int) -> None:
    conn = server(max_fragments=3)
    ok = masked(opcode, b"a", fin=False) + masked(Opcode.CONTINUATION, b"b", fin=False)
    ok += masked(Opcode.CONTINUATION, b"c")
    assert len(conn.receive_data(ok)) == 1
    assert conn.receive_data(masked(opcode, b"a", fin=False)) == []
    assert conn.receive_data(masked(Opcode.CONTINUATION, b"b", fin=False)) == []
    assert conn.receive_data(masked(Opcode.CONTINUATION, b"c", fin=False)) == []
    assert_failed_with(conn, conn.receive_data(masked(Opcode.CONTINUATION, b"d")), 1009)


# -- end of stream, failure ------------------------------------------------------------------------


def test_end_of_stream_is_connection_lost() -> None:
    conn = server()
    assert conn.receive_data(masked(Opcode.TEXT, b"x", fin=False)) == []
    assert conn.receive_data(b"") == [ConnectionLost(CloseCode.ABNORMAL, "")]
    assert ConnectionLost().code == 1006
    assert conn.state is ConnectionState.CLOSED
    assert conn.data_to_send() == []
    assert conn.receive_data(masked(Opcode.TEXT, b"x")) == []
    assert conn.receive_data(b"") == []


def test_end_of_stream_while_closing() -> None:
    conn = server()
    conn.send_close()
    assert conn.receive_data(b"") == [ConnectionLost()]
    assert conn.state is ConnectionState.CLOSED


def test_end_of_stream_after_close_handshake_is_ignored() -> None:
    conn = server()
    conn.receive_data(masked(Opcode.CLOSE, close_body(1000)))
    assert conn.receive_data(b"") == []


def test_frames_before_broken_frame_are_delivered_first() -> None:
    conn = server()
    data = (
        masked(Opcode.TEXT, b"one")
        + masked(Opcode.PING, b"p")
        + masked(Opcode.BINARY, b"two")
        + encode_frame(Opcode.TEXT, b"unmasked")
        + masked(Opcode.TEXT, b"never")
    )
    events = conn.receive_data(data)
    assert events[:3] == [TextMessage("one"), PingReceived(b"p"), BinaryMessage(b"two")]
    assert len(events) == 4
    assert failure_code(events) == 1002
    # The pong owed for the ping, then the close frame.
    frames = sent_frames(conn)
    assert [(f.opcode, f.payload[:2]) for f in frames] == [(Opcode.PONG, b"p"), (Opcode.CLOSE, b"\x03\xea")]


def test_failure_after_we_sent_close_sends_no_second_close() -> None:
    conn = server()
    conn.send_close()
    events = conn.receive_data(masked(Opcode.CONTINUATION, b"x"))
    assert failure_code(events) == 1002
    assert conn.state is ConnectionState.CLOSED
    assert conn.data_to_send() == []


def test_failure_drops_partial_message() -> None:
    conn = server()
    conn.receive_data(masked(Opcode.BINARY, b"partial", fin=False))
    events = conn.receive_data(masked(Opcode.TEXT, b"x"))
    assert failure_code(events) == 1002
    assert conn._message is None


def test_empty_and_one_byte_fragments_cost_no_memory_per_fragment() -> None:
    import tracemalloc

    conn = server()
    conn.receive_data(masked(Opcode.BINARY, b"a", fin=False))
    empty = masked(Opcode.CONTINUATION, b"", fin=False)
    one = masked(Opcode.CONTINUATION, b"b", fin=False)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50):
            assert conn.receive_data(empty * 1000) == []
            assert conn.receive_data(one * 1000) == []
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000  # 100,000 fragments: about the 50,001 bytes of payload, not a list entry each
    [event] = conn.receive_data(masked(Opcode.CONTINUATION, b"c"))
    assert event == BinaryMessage(b"a" + b"b" * 50_000 + b"c")


def test_text_split_inside_a_character_is_reassembled_and_checked() -> None:
    conn = server()
    data = "héllo €".encode()
    frames = [masked(Opcode.TEXT, data[:2], fin=False)]
    frames += [masked(Opcode.CONTINUATION, data[i : i + 1], fin=False) for i in range(2, len(data))]
    frames.append(masked(Opcode.CONTINUATION, b""))
    assert conn.receive_data(b"".join(frames)) == [TextMessage("héllo €")]
    bad = server()
    start = masked(Opcode.TEXT, b"ok", fin=False)
    events = bad.receive_data(start + masked(Opcode.CONTINUATION, b"\xff", fin=False))
    assert failure_code(events) == 1007  # found at the bad fragment, before the message ends


def test_fragment_count_is_bounded_by_default() -> None:
    conn = server()
    assert conn.max_fragments == DEFAULT_MAX_FRAGMENTS
    small = WebSocketConnection(Role.SERVER, max_fragments=3)
    parts = [masked(Opcode.BINARY, b"1", fin=False)] + [masked(Opcode.CONTINUATION, b"x", fin=False)] * 3
    assert failure_code(small.receive_data(b"".join(parts))) == 1009


# -- sending -------------------------------------------------------------------------------------


def test_server_send_methods_are_unmasked() -> None:
    conn = server()
    assert conn.send_text("hé") == b"\x81\x03h\xc3\xa9"
    assert conn.send_binary(b"\x01") == b"\x82\x01\x01"
    assert conn.send_message("a") == b"\x81\x01a"
    assert conn.send_message(b"a") == b"\x82\x01a"
    assert conn.send_message(bytearray(b"a")) == b"\x82\x01a"
    assert conn.send_message(memoryview(b"ab")) == b"\x82\x02ab"
    assert conn.send_message(type("Name", (str,), {})("n")) == b"\x81\x01n"  # a str subclass: text
    assert conn.send_utf8("hé".encode()) == b"\x81\x03h\xc3\xa9"
    assert conn.send_utf8(b"x" * 126) == b"\x81\x7e\x00\x7e" + b"x" * 126
    assert conn.send_ping(b"p") == b"\x89\x01p"


def test_client_send_methods_are_masked_and_readable_by_a_server() -> None:
    sender = client()
    receiver = server()
    pong = encode_frame(Opcode.PONG, b"", mask=True)  # an unsolicited pong (RFC 6455 5.5.3)
    data = sender.send_text("hi") + sender.send_binary(b"\x00") + sender.send_ping(b"x") + pong
    opcodes = [frame.opcode for frame in frames_of(data, from_client=True)]  # all masked
    assert opcodes == [Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG]
    assert receiver.receive_data(data) == [
        TextMessage("hi"),
        BinaryMessage(b"\x00"),
        PingReceived(b"x"),
        PongReceived(b""),
    ]


def test_control_payload_limit_on_send() -> None:
    conn = server()
    assert len(conn.send_ping(b"a" * 125)) == 127
    with pytest.raises(ValueError):
        conn.send_ping(b"a" * 126)


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_a_small_frame_read_whole_gives_what_the_frame_by_frame_path_gives(opcode: int) -> None:
    """receive_data has a shortcut for one small client frame read whole: it must agree with
    the general parser (fed a byte at a time) on every length around its bounds."""
    for size in (0, 1, 6, 7, 100, 124, 125, 126, 127, 300):
        payload = b"a" * size
        frame = encode_frame(opcode, payload, mask=True)
        whole, bytewise = WebSocketConnection(Role.SERVER), WebSocketConnection(Role.SERVER)
        events = [e for i in range(len(frame)) for e in bytewise.receive_data(frame[i : i + 1])]
        assert whole.receive_data(frame) == events, size
    for limit in (5, 125):  # the message size limit still holds on the shortcut
        capped = WebSocketConnection(Role.SERVER, max_message_size=limit)
        (failure,) = capped.receive_data(encode_frame(opcode, b"x" * 6, mask=True))
        assert (type(failure) is ProtocolFailure) == (limit == 5)
        if limit == 5:
            assert failure.code == CloseCode.MESSAGE_TOO_BIG  # type: ignore[union-attr]


def test_invalid_utf8_in_a_small_text_frame_read_whole_fails_with_1007() -> None:
    conn = WebSocketConnection(Role.SERVER)
    (failure,) = conn.receive_data(encode_frame(Opcode.TEXT, b"\xff\xfe", mask=True))
    assert type(failure) is ProtocolFailure and failure.code == CloseCode.INVALID_DATA


def test_small_frames_read_together_give_what_the_frame_by_frame_path_gives() -> None:
    """Back-to-back small frames take receive_data's shortcut until the first frame of another
    shape (a ping, an empty or a 126-byte payload, a fragment, a close, a cut frame): the
    events and the bytes to send must match the general parser's, fed a byte at a time."""
    small = [
        encode_frame(Opcode.TEXT, b"hi", mask=True),
        encode_frame(Opcode.BINARY, b"\x00" * 125, mask=True),
    ]
    others = [
        encode_frame(Opcode.PING, b"p", mask=True),
        encode_frame(Opcode.TEXT, b"", mask=True),
        encode_frame(Opcode.BINARY, b"b" * 126, mask=True),
        encode_frame(Opcode.TEXT, b"fra", fin=False, mask=True)
        + encode_frame(Opcode.CONTINUATION, b"g", mask=True),
        encode_frame(Opcode.CLOSE, close_body(1000), mask=True),
    ]
    for other in others:
        for cut in (0, 3):  # the read ends inside the last frame (its rest comes next)
            stream = small[0] + small[1] + other + small[0]
            reads = [stream[: len(stream) - cut], stream[len(stream) - cut :]] if cut else [stream]
            together, bytewise = WebSocketConnection(Role.SERVER), WebSocketConnection(Role.SERVER)
            events = [e for read in reads for e in together.receive_data(read)]
            expected = [e for i in range(len(stream)) for e in bytewise.receive_data(stream[i : i + 1])]
            assert events == expected, (other[:2], cut)
            assert together.data_to_send() == bytewise.data_to_send()


def test_invalid_utf8_in_the_middle_of_small_frames_read_together() -> None:
    """The frames before the broken one are delivered, then the 1007 failure; none after it."""
    conn = WebSocketConnection(Role.SERVER)
    stream = b"".join(encode_frame(Opcode.TEXT, p, mask=True) for p in (b"one", b"\xff", b"three"))
    events = conn.receive_data(stream)
    assert events[0] == TextMessage("one")
    assert type(events[1]) is ProtocolFailure and events[1].code == CloseCode.INVALID_DATA
    assert len(events) == 2 and conn.state is ConnectionState.CLOSED
