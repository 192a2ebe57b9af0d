"""Hypothesis properties of the protocol core: round trips, chunking invariance, robustness."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from websock_actors.errors import HandshakeError, ProtocolError
from websock_actors.protocol import (
    BinaryMessage,
    CloseReceived,
    ConnectionLost,
    ConnectionState,
    Frame,
    FrameParser,
    Opcode,
    PingReceived,
    PongReceived,
    ProtocolFailure,
    Request,
    Response,
    Role,
    TextMessage,
    WebSocketConnection,
    encode_frame,
    parse_request,
    parse_response,
    validate_request,
    validate_response,
)
from websock_actors.protocol.connection import Event

from ..support.frames import FIXED_KEY, close_body, frames_of, raw_frame

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Sizes around every length-form boundary, plus small ones.
BOUNDARY_SIZES = [0, 1, 2, 3, 4, 5, 124, 125, 126, 127, 128, 1000, 65534, 65535, 65536, 65537]
CONTROL_SIZES = [0, 1, 2, 3, 4, 5, 124, 125]

EVENT_TYPES = (TextMessage, BinaryMessage, PingReceived, PongReceived, CloseReceived, ProtocolFailure)


def sized_payload(seed: bytes, size: int) -> bytes:
    """`size` bytes from a short random seed: large payloads without drawing every byte."""
    return (seed * (size // len(seed) + 1))[:size]


@st.composite
def any_frame(draw: st.DrawFn) -> Frame:
    opcode = draw(st.sampled_from(list(Opcode)))
    seed = draw(st.binary(min_size=1, max_size=16))
    if opcode >= 0x8:
        size = draw(st.one_of(st.sampled_from(CONTROL_SIZES), st.integers(0, 125)))
        fin, rsv1 = True, False
    else:
        size = draw(st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 300)))
        fin, rsv1 = draw(st.booleans()), draw(st.booleans())
    return Frame(opcode, sized_payload(seed, size), fin, rsv1)


def header_length(size: int) -> int:
    return 2 if size < 126 else 4 if size < 65536 else 10


# -- frames: serialize then parse is the identity ---------------------------------------------------


@FAST
@given(frame=any_frame(), mask=st.booleans())
def test_encode_then_parse_is_identity(frame: Frame, mask: bool) -> None:
    data = encode_frame(frame.opcode, frame.payload, fin=frame.fin, rsv1=frame.rsv1, mask=mask)
    assert len(data) == header_length(len(frame.payload)) + (4 if mask else 0) + len(frame.payload)
    assert bool(data[1] & 0x80) == mask
    parser = FrameParser(expect_mask=mask, allow_rsv1=True)
    assert list(parser.feed(data)) == [frame]
    assert parser.buffered == 0


@FAST
@given(frames=st.lists(any_frame(), max_size=6), mask=st.booleans(), data=st.data())
def test_frame_stream_parses_the_same_in_any_chunks(
    frames: list[Frame], mask: bool, data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(f.opcode, f.payload, fin=f.fin, rsv1=f.rsv1, mask=mask) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts"))
    parser = FrameParser(expect_mask=mask, allow_rsv1=True)
    out: list[Frame] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out.extend(parser.feed(stream[start:end]))
    assert out == frames
    assert parser.buffered == 0


# -- streams of frames for a connection ----------------------------------------------------------


@dataclass
class Stream:
    data: bytes
    expected: list[Event] | None  # the events, when the stream is valid and complete


PING_PAYLOADS = st.binary(max_size=125)


@st.composite
def message_bytes(draw: st.DrawFn, mask: bool) -> tuple[bytes, list[Event]]:
    """One valid message, maybe fragmented (UTF-8 split anywhere), with pings/pongs between."""
    is_text = draw(st.booleans())
    if is_text:
        text = draw(st.text(max_size=40))
        payload = text.encode("utf-8")
        message: Event = TextMessage(text)
    else:
        payload = sized_payload(
            draw(st.binary(min_size=1, max_size=8)), draw(st.sampled_from([0, 5, 125, 126, 300]))
        )
        message = BinaryMessage(payload)
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
    parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    out = b""
    events: list[Event] = []
    for i, part in enumerate(parts):
        opcode = (Opcode.TEXT if is_text else Opcode.BINARY) if i == 0 else Opcode.CONTINUATION
        out += encode_frame(opcode, part, fin=i == len(parts) - 1, mask=mask)
        if i < len(parts) - 1 and draw(st.booleans()):
            control = draw(st.sampled_from([Opcode.PING, Opcode.PONG]))
            body = draw(PING_PAYLOADS)
            out += encode_frame(control, body, mask=mask)
            events.append(PingReceived(body) if control == Opcode.PING else PongReceived(body))
    events.append(message)
    return out, events


@st.composite
def chaos_frame(draw: st.DrawFn, mask: bool) -> bytes:
    """A frame with any first byte, any mask bit, and a small payload: often breaks a rule."""
    first = draw(st.integers(0, 255))
    payload = draw(
        st.one_of(st.binary(max_size=20), st.sampled_from([b"\x03\xe8", b"\x03", b"\xff\xfe", b"a" * 126]))
    )
    masked = draw(st.booleans()) if draw(st.integers(0, 3)) == 0 else mask
    return raw_frame(first, payload, mask_key=FIXED_KEY if masked else None)


@st.composite
def connection_stream(draw: st.DrawFn, mask: bool, broken: bool = True) -> Stream:
    """Valid messages, pings, pongs, maybe a close; with `broken`, also rule-breaking frames and noise."""
    kinds = ["message", "message", "control", "close"] + (["chaos", "garbage"] if broken else [])
    data = b""
    expected: list[Event] | None = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(kinds))
        if kind == "message":
            chunk, events = draw(message_bytes(mask))
            data += chunk
            if expected is not None:
                expected.extend(events)
        elif kind == "control":
            body = draw(PING_PAYLOADS)
            if draw(st.booleans()):
                data += encode_frame(Opcode.PING, body, mask=mask)
                if expected is not None:
                    expected.append(PingReceived(body))
            else:
                data += encode_frame(Opcode.PONG, body, mask=mask)
                if expected is not None:
                    expected.append(PongReceived(body))
        elif kind == "chaos":
            data += draw(chaos_frame(mask))
            expected = None
        elif kind == "garbage":
            data += draw(st.binary(min_size=1, max_size=30))
            expected = None
        else:
            code = draw(st.sampled_from([1000, 1001, 1011, 3000, 4999]))
            reason = draw(st.text(max_size=10))
            data += encode_frame(Opcode.CLOSE, close_body(code, reason.encode()), mask=mask)
            if expected is not None:
                expected.append(CloseReceived(code, reason))
            break
    return Stream(data, expected)


def check_event_sequence(conn: WebSocketConnection, events: list[Event]) -> None:
    assert all(isinstance(e, EVENT_TYPES) for e in events), events
    terminal = [i for i, e in enumerate(events) if isinstance(e, (ProtocolFailure, CloseReceived))]
    assert terminal in ([], [len(events) - 1]), events
    if terminal:
        assert conn.state is ConnectionState.CLOSED
    if events and isinstance(events[-1], ProtocolFailure):
        assert events[-1].code in (1002, 1007, 1009)


def feed_in_chunks(conn: WebSocketConnection, data: bytes, cuts: list[int]) -> list[Event]:
    cuts = sorted({c for c in cuts if 0 < c < len(data)})  # no empty chunk: b"" means end of stream
    events: list[Event] = []
    if not data:
        return events
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        events.extend(conn.receive_data(data[start:end]))
    return events


OPTIONS = st.fixed_dictionaries(
    {
        "max_message_size": st.sampled_from([None, 50, 200, 1 << 20]),
        "max_fragments": st.sampled_from([None, 1, 2, 4]),
    }
)


@FAST
@given(stream=connection_stream(mask=True), options=OPTIONS, data=st.data())
def test_server_events_do_not_depend_on_chunking(
    stream: Stream, options: dict[str, int | None], data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream.data)), max_size=10), label="cuts")
    whole = WebSocketConnection(Role.SERVER, **options)  # type: ignore[arg-type]
    split = WebSocketConnection(Role.SERVER, **options)  # type: ignore[arg-type]
    events_whole = feed_in_chunks(whole, stream.data, [])
    events_split = feed_in_chunks(split, stream.data, cuts)
    assert events_split == events_whole
    check_event_sequence(split, events_split)
    # Server replies are unmasked, hence byte for byte the same.
    assert b"".join(split.data_to_send()) == b"".join(whole.data_to_send())
    assert split.state is whole.state


@FAST
@given(stream=connection_stream(mask=False), data=st.data())
def test_client_events_do_not_depend_on_chunking(stream: Stream, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream.data)), max_size=10), label="cuts")
    whole = WebSocketConnection(Role.CLIENT)
    split = WebSocketConnection(Role.CLIENT)
    events_whole = feed_in_chunks(whole, stream.data, [])
    assert feed_in_chunks(split, stream.data, cuts) == events_whole
    # Client replies are masked with random keys: compare what the server would read.
    sent_split = frames_of(b"".join(split.data_to_send()), from_client=True)
    sent_whole = frames_of(b"".join(whole.data_to_send()), from_client=True)
    assert sent_split == sent_whole


@FAST
@given(stream=connection_stream(mask=True, broken=False), data=st.data())
def test_valid_streams_give_exactly_their_messages(stream: Stream, data: st.DataObject) -> None:
    assert stream.expected is not None
    cuts = data.draw(st.lists(st.integers(0, len(stream.data)), max_size=10), label="cuts")
    conn = WebSocketConnection(Role.SERVER, max_message_size=None)
    assert feed_in_chunks(conn, stream.data, cuts) == stream.expected
    pings = [e.payload for e in stream.expected if isinstance(e, PingReceived)]
    sent = frames_of(b"".join(conn.data_to_send()), from_client=False)
    assert [f.payload for f in sent if f.opcode == Opcode.PONG] == pings


# -- robustness: receive_data never raises --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), min_size=1, max_size=6), role=st.sampled_from(list(Role)))
def test_random_bytes_never_raise(chunks: list[bytes], role: Role) -> None:
    conn = WebSocketConnection(role, max_message_size=1000, max_fragments=3)
    events: list[Event] = []
    for chunk in chunks:
        if not chunk:  # end of stream
            closed_before = conn.state is ConnectionState.CLOSED
            assert conn.receive_data(chunk) == ([] if closed_before else [ConnectionLost()])
            assert conn.state is ConnectionState.CLOSED
            break
        events.extend(conn.receive_data(chunk))
    check_event_sequence(conn, events)
    for out in conn.data_to_send():
        assert isinstance(out, bytes)
    if conn.state is ConnectionState.CLOSED:
        assert conn.receive_data(b"\x81\x80" + FIXED_KEY) == []


@FAST
@given(frames=st.lists(chaos_frame(mask=True), min_size=1, max_size=8), options=OPTIONS)
def test_chaos_frames_never_raise(frames: list[bytes], options: dict[str, int | None]) -> None:
    conn = WebSocketConnection(Role.SERVER, **options)  # type: ignore[arg-type]
    events: list[Event] = []
    for frame in frames:
        events.extend(conn.receive_data(frame))
    check_event_sequence(conn, events)
    failures = [e for e in events if isinstance(e, ProtocolFailure)]
    if failures:
        # The close frame that fails the connection is the last thing queued.
        sent = frames_of(b"".join(conn.data_to_send()), from_client=False)
        assert sent[-1].opcode == Opcode.CLOSE
        assert int.from_bytes(sent[-1].payload[:2], "big") == failures[0].code


@FAST
@given(data=st.binary(max_size=200), expect_mask=st.booleans(), limit=st.sampled_from([None, 10, 1000]))
def test_frame_parser_raises_only_protocol_error(data: bytes, expect_mask: bool, limit: int | None) -> None:
    parser = FrameParser(expect_mask=expect_mask, max_frame_size=limit)
    try:
        frames = list(parser.feed(data))
    except ProtocolError as exc:
        assert exc.code in (1002, 1009)
    else:
        assert all(isinstance(f, Frame) for f in frames)


# -- robustness: the handshake ----------------------------------------------------------------------

HEADER_NAMES = ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "X-Other"]
HEADER_VALUES = ["websocket", "Upgrade", "13", "8", "dGhlIHNhbXBsZSBub25jZQ==", "", " ", "a, b", "\xe9"]


@st.composite
def request_like(draw: st.DrawFn) -> bytes:
    """Bytes that look like a request head often enough to reach the header checks."""
    method = draw(st.sampled_from(["GET", "POST", "get", "", "G ET"]))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "", "HTTP/1.1 x"]))
    lines = [f"{method} / {version}"]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.one_of(st.sampled_from(HEADER_NAMES), st.text(max_size=6)))
        value = draw(st.one_of(st.sampled_from(HEADER_VALUES), st.text(max_size=12)))
        sep = draw(st.sampled_from([": ", ":", " : ", "", ":\t"]))
        lines.append(f"{name}{sep}{value}")
    end = draw(st.sampled_from(["\r\n\r\n", "\r\n", "", "\r\n\r\nrest"]))
    return ("\r\n".join(lines) + end).encode("utf-8")


def check_request_result(result: tuple[Request, bytes] | None) -> None:
    if result is None:
        return
    request, rest = result
    assert isinstance(request, Request)
    assert isinstance(rest, bytes)
    try:
        key = validate_request(request)
    except HandshakeError as exc:
        assert 400 <= exc.status <= 505
    else:
        assert isinstance(key, str)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), request_like()), limit=st.sampled_from([16 * 1024, 64, 200]))
def test_parse_request_raises_only_handshake_error(data: bytes, limit: int) -> None:
    try:
        result = parse_request(data, limit)
    except HandshakeError as exc:
        assert exc.status in (400, 431, 505)
    else:
        check_request_result(result)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), request_like()))
def test_parse_response_raises_only_handshake_error(data: bytes) -> None:
    data = data.replace(b"GET / ", b"HTTP/1.1 ", 1)
    try:
        result = parse_response(data)
    except HandshakeError:
        return
    if result is None:
        return
    response, _ = result
    assert isinstance(response, Response)
    try:
        validate_response(response, "dGhlIHNhbXBsZSBub25jZQ==")
    except HandshakeError:
        pass


# -- single_text: the one-message read, taken without events ----------------------------------------


@st.composite
def one_read(draw: st.DrawFn) -> bytes:
    """What a client's read may hold: often one short text frame, else anything near it."""
    payload = draw(st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=130)))
    first = draw(st.sampled_from([0x81, 0x81, 0x81, 0x01, 0x82, 0x89, 0xC1, 0x80, 0x91]))
    data = raw_frame(first, payload, mask_key=draw(st.sampled_from([FIXED_KEY, None])))
    cut = draw(st.sampled_from([None, None, -1, 3]))
    extra = draw(st.sampled_from([b"", b"", raw_frame(0x81, b"more")]))
    return (data if cut is None else data[:cut]) + extra


@FAST
@given(
    before=st.sampled_from([b"", raw_frame(0x01, b"frag"), raw_frame(0x81, b"whole")[:4]]),
    data=one_read(),
    role=st.sampled_from([Role.SERVER, Role.CLIENT]),
    max_size=st.sampled_from([None, 10]),
)
def test_single_text_takes_a_read_only_as_receive_data_would(
    before: bytes, data: bytes, role: Role, max_size: int | None
) -> None:
    """`single_text` returns the text only when `receive_data` would make exactly that one
    text message of the read, and changes nothing: `receive_data` after it sees the same."""
    protocol = WebSocketConnection(role, max_message_size=max_size)
    if before:
        protocol.receive_data(before if role is Role.SERVER else bytes((before[0], before[1] & 0x7F)))
    text = protocol.single_text(data)
    events = protocol.receive_data(data)
    if text is not None:
        assert events == [TextMessage(text)]
    else:
        assert not (role is Role.SERVER and len(events) == 1 and type(events[0]) is TextMessage
                    and not before and data[0] == 0x81 and len(data) == data[1] - 0x80 + 6)
