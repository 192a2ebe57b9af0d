"""permessage-deflate (RFC 7692): negotiation tables, the codec, and the connection with it."""

from __future__ import annotations

import itertools
import os
import tracemalloc
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websock_actors.errors import HandshakeError, ProtocolError, RemoteHandshakeRefusal
from websock_actors.protocol import (
    BinaryMessage,
    CompressorPool,
    DeflateOptions,
    DeflateParameters,
    Frame,
    FrameParser,
    Headers,
    MessageCompressor,
    Opcode,
    PerMessageDeflate,
    PingReceived,
    ProtocolFailure,
    Response,
    Role,
    TextMessage,
    WebSocketConnection,
    accept_key,
    client_accept,
    client_offer,
    encode_frame,
    parse_extensions,
    server_negotiate,
    validate_response,
)
from websock_actors.protocol.deflate import parse_parameters

from ..support.frames import FIXED_KEY, close_body, frames_of, raw_frame, sent_frames
from .test_properties import FAST, check_event_sequence

P = DeflateParameters
DEFAULT = DeflateOptions()
WIDE = DeflateOptions(window_bits=15, context_takeover=True)  # asks nothing of the client
NO_TAKEOVER = "server_no_context_takeover; client_no_context_takeover"
BOTH_FRESH = DeflateParameters(server_no_context_takeover=True, client_no_context_takeover=True)

# -- the Sec-WebSocket-Extensions grammar ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("permessage-deflate", [("permessage-deflate", [])]),
        ("  permessage-deflate  ", [("permessage-deflate", [])]),
        (
            "permessage-deflate; client_max_window_bits",
            [("permessage-deflate", [("client_max_window_bits", None)])],
        ),
        (
            "permessage-deflate ;server_max_window_bits = 10 ; client_no_context_takeover",
            [
                (
                    "permessage-deflate",
                    [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
                )
            ],
        ),
        (
            'permessage-deflate; server_max_window_bits="10"',
            [("permessage-deflate", [("server_max_window_bits", "10")])],
        ),
        ('x; a="\\b\\c"', [("x", [("a", "bc")])]),  # quoted-pairs unescape
        (
            "x-webkit-deflate-frame, permessage-deflate; a, permessage-deflate",
            [
                ("x-webkit-deflate-frame", []),
                ("permessage-deflate", [("a", None)]),
                ("permessage-deflate", []),
            ],
        ),
        (", ,permessage-deflate,,", [("permessage-deflate", [])]),  # empty list elements are skipped
        ("", []),
    ],
)
def test_parse_extensions(header: str, parsed: list[object]) -> None:
    assert parse_extensions(header) == parsed


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("permessage-deflate;", "expected a parameter name at offset 19"),
        ("permessage-deflate; ;a", "expected a parameter name"),
        ("permessage-deflate client_max_window_bits", "expected ',' or ';' at offset 19"),
        ("permessage-deflate; a=", "expected a parameter value"),
        ('permessage-deflate; a="10', "expected a parameter value"),
        ('permessage-deflate; a="1 0"', "quoted value of a is not a token"),
        ("permessage-deflate; a=b=c", "expected ',' or ';'"),
        ("; permessage-deflate", "expected an extension name at offset 0"),
        ("permessage-deflate; a\x00", "expected ',' or ';'"),
        ("permessage deflate", "expected ',' or ';'"),
    ],
)
def test_parse_extensions_refuses_malformed_headers_saying_where(header: str, says: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_extensions(header)
    assert info.value.status == 400
    assert says in info.value.reason


# -- the parameters of one offer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], P()),
        ([("server_no_context_takeover", None)], P(server_no_context_takeover=True)),
        ([("client_no_context_takeover", None)], P(client_no_context_takeover=True)),
        ([("server_max_window_bits", "8")], P(server_max_window_bits=8)),
        ([("server_max_window_bits", "15")], P(server_max_window_bits=15)),
        ([("client_max_window_bits", None)], P(client_max_window_bits=15)),
        ([("client_max_window_bits", "9")], P(client_max_window_bits=9)),
        (
            [
                ("client_max_window_bits", "10"),
                ("server_max_window_bits", "11"),
                ("client_no_context_takeover", None),
                ("server_no_context_takeover", None),
            ],
            P(True, True, 11, 10),
        ),
    ],
)
def test_parse_offer_parameters(params: list[tuple[str, str | None]], expected: DeflateParameters) -> None:
    assert parse_parameters(params, response=False) == expected


BAD_PARAMETERS = [
    pytest.param([("foo", None)], "unknown parameter 'foo'", id="unknown"),
    pytest.param([("Server_No_Context_Takeover", None)], "unknown parameter", id="names-are-case-sensitive"),
    pytest.param([("server_no_context_takeover", "1")], "takes no value", id="flag-with-value"),
    pytest.param([("client_no_context_takeover", "")], "takes no value", id="flag-with-empty-value"),
    pytest.param([("server_max_window_bits", None)], "needs a value", id="server-bits-bare"),
    pytest.param([("server_max_window_bits", "7")], "from 8 to 15", id="server-bits-7"),
    pytest.param([("server_max_window_bits", "16")], "from 8 to 15", id="server-bits-16"),
    pytest.param([("server_max_window_bits", "010")], "from 8 to 15", id="leading-zero"),
    pytest.param([("client_max_window_bits", "0")], "from 8 to 15", id="client-bits-0"),
    pytest.param([("client_max_window_bits", "+9")], "from 8 to 15", id="client-bits-sign"),
    pytest.param([("client_max_window_bits", "ten")], "from 8 to 15", id="client-bits-word"),
    pytest.param(
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        "repeated",
        id="repeated",
    ),
    pytest.param(
        [("client_max_window_bits", None), ("client_max_window_bits", "9")], "repeated", id="repeated-bits"
    ),
]


@pytest.mark.parametrize(("params", "says"), BAD_PARAMETERS)
def test_parse_offer_parameters_refusals(params: list[tuple[str, str | None]], says: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_parameters(params, response=False)
    assert says in info.value.reason


def test_bare_client_max_window_bits_is_invalid_in_a_response() -> None:
    with pytest.raises(HandshakeError, match="needs a value"):
        parse_parameters([("client_max_window_bits", None)], response=True)


@pytest.mark.parametrize(
    "params",
    [P(), P(True, True, 8, 15), P(False, True, None, 9), P(True, False, 12, None)],
)
def test_header_renders_what_parses_back(params: DeflateParameters) -> None:
    [(name, raw)] = parse_extensions(params.header())
    assert name == "permessage-deflate"
    assert parse_parameters(raw, response=True) == params


# -- server negotiation ----------------------------------------------------------------------------

# (offer header, options, the answer's header), for the default options and for "wide" ones
# that keep context and use 15-bit windows (so that only what the client asked shows).
SERVER_TABLE = [
    # default options: no context takeover either way, 12-bit windows
    (
        "permessage-deflate",
        DEFAULT,
        "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
    ),
    (
        "permessage-deflate; client_max_window_bits",
        DEFAULT,
        NO_TAKEOVER + "; server_max_window_bits=12; client_max_window_bits=12",
    ),
    (
        "permessage-deflate; client_max_window_bits=9",
        DEFAULT,
        NO_TAKEOVER + "; server_max_window_bits=12; client_max_window_bits=9",
    ),
    (
        "permessage-deflate; server_max_window_bits=10",
        DEFAULT,
        "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
    ),
    (
        "permessage-deflate; server_max_window_bits=15",
        DEFAULT,
        "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
    ),
    (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        DEFAULT,
        "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
    ),
    # wide options: the answer carries only what the offer requires
    ("permessage-deflate", WIDE, ""),
    ("permessage-deflate; client_max_window_bits", WIDE, "client_max_window_bits=15"),
    ("permessage-deflate; client_max_window_bits=10", WIDE, "client_max_window_bits=10"),
    ("permessage-deflate; server_max_window_bits=8", WIDE, "server_max_window_bits=8"),
    ("permessage-deflate; server_max_window_bits=15", WIDE, "server_max_window_bits=15"),
    ("permessage-deflate; server_no_context_takeover", WIDE, "server_no_context_takeover"),
    ("permessage-deflate; client_no_context_takeover", WIDE, "client_no_context_takeover"),
    (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=9; client_max_window_bits=11",
        WIDE,
        NO_TAKEOVER + "; server_max_window_bits=9; client_max_window_bits=11",
    ),
    # the first acceptable offer wins; others' extensions are skipped
    (
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9",
        WIDE,
        "server_max_window_bits=9",
    ),
    (
        "permessage-deflate; foo, permessage-deflate; client_max_window_bits",
        WIDE,
        "client_max_window_bits=15",
    ),
    ("permessage-deflate; server_max_window_bits=9, permessage-deflate", WIDE, "server_max_window_bits=9"),
    # a quoted value is its token
    ('permessage-deflate; server_max_window_bits="11"', WIDE, "server_max_window_bits=11"),
]


@pytest.mark.parametrize(("offer", "options", "answer"), SERVER_TABLE)
def test_server_negotiation_table(offer: str, options: DeflateOptions, answer: str) -> None:
    accepted, declined = server_negotiate(offer, options)
    assert accepted is not None
    assert accepted.header() == "; ".join(["permessage-deflate", *([answer] if answer else [])])
    assert declined == ([] if "foo" not in offer else ["unknown parameter 'foo'"])


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=9; server_max_window_bits=10",
    ],
)
def test_server_declines_invalid_offers_and_says_why(offer: str) -> None:
    accepted, declined = server_negotiate(offer, DEFAULT)
    assert accepted is None
    [reason] = declined
    assert reason


@pytest.mark.parametrize("header", [None, "", "x-webkit-deflate-frame", "foo; bar=1, baz"])
def test_server_without_a_deflate_offer(header: str | None) -> None:
    assert server_negotiate(header, DEFAULT) == (None, [])


@pytest.mark.parametrize(
    "header", ["permessage-deflate;", 'permessage-deflate; a="b', "permessage-deflate client"]
)
def test_server_refuses_a_malformed_header_with_400(header: str) -> None:
    with pytest.raises(HandshakeError) as info:
        server_negotiate(header, DEFAULT)
    assert info.value.status == 400
    assert info.value.reason.startswith("malformed Sec-WebSocket-Extensions header: expected")


@pytest.mark.parametrize("offer", [header for header, _, _ in SERVER_TABLE])
@pytest.mark.parametrize("options", [DEFAULT, WIDE, DeflateOptions(window_bits=8, context_takeover=True)])
def test_server_answers_obey_rfc_7692(offer: str, options: DeflateOptions) -> None:
    """Whatever the options: the answer contains what the offer requires, within its bounds."""
    accepted, _ = server_negotiate(offer, options)
    assert accepted is not None
    first_valid = next(
        p for n, p in parse_extensions(offer) if n == "permessage-deflate" and ("foo", None) not in p
    )
    asked = parse_parameters(first_valid, response=False)
    if asked.server_no_context_takeover:
        assert accepted.server_no_context_takeover
    if asked.server_max_window_bits is not None:
        assert accepted.server_max_window_bits is not None
        assert accepted.server_max_window_bits <= asked.server_max_window_bits
    if asked.client_max_window_bits is None:
        assert accepted.client_max_window_bits is None
    else:
        assert (
            accepted.client_max_window_bits is None
            or accepted.client_max_window_bits <= asked.client_max_window_bits
        )
    # And the answer is one a client accepts (parsed as a response).
    assert parse_parameters(parse_extensions(accepted.header())[0][1], response=True) == accepted


# -- client negotiation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "offer"),
    [
        (
            DEFAULT,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12",
        ),
        (WIDE, "permessage-deflate; client_max_window_bits=15"),
        (
            DeflateOptions(window_bits=15),
            "permessage-deflate; " + NO_TAKEOVER + "; client_max_window_bits=15",
        ),
    ],
)
def test_client_offer(options: DeflateOptions, offer: str) -> None:
    assert client_offer(options) == offer


@pytest.mark.parametrize("options", [DEFAULT, WIDE, DeflateOptions(window_bits=9)])
def test_client_accepts_what_our_server_answers(options: DeflateOptions) -> None:
    accepted, _ = server_negotiate(client_offer(options), DEFAULT)
    assert accepted is not None
    assert client_accept(accepted.header(), options) == accepted


@pytest.mark.parametrize(
    ("answer", "options"),
    [
        ("permessage-deflate", WIDE),
        ("permessage-deflate; server_no_context_takeover", WIDE),  # the server may always say it
        ("permessage-deflate; client_no_context_takeover", WIDE),  # and ask it of us
        ("permessage-deflate; server_max_window_bits=9", WIDE),  # and use a smaller window
        ("permessage-deflate; client_max_window_bits=8", WIDE),
        ("permessage-deflate; server_no_context_takeover; server_max_window_bits=12", DEFAULT),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; "
            "client_max_window_bits=12",
            DEFAULT,
        ),
    ],
)
def test_client_accepts_valid_answers(answer: str, options: DeflateOptions) -> None:
    assert client_accept(answer, options) is not None


@pytest.mark.parametrize(
    ("answer", "options", "says"),
    [
        ("x-foo", WIDE, "not offered"),
        ("permessage-deflate, permessage-deflate", WIDE, "not offered"),
        ("permessage-deflate; foo", WIDE, "unknown parameter"),
        ("permessage-deflate; client_max_window_bits", WIDE, "needs a value"),
        ("permessage-deflate; server_max_window_bits=7", WIDE, "from 8 to 15"),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", WIDE, "repeated"),
        (
            "permessage-deflate; server_max_window_bits=12",
            DEFAULT,
            "server_no_context_takeover was requested",
        ),
        ("permessage-deflate; server_no_context_takeover", DEFAULT, "server_max_window_bits was requested"),
        ("permessage-deflate; server_no_context_takeover; server_max_window_bits=13", DEFAULT, "over 12"),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=13",
            DEFAULT,
            "client_max_window_bits=13 is over 12",
        ),
        ("permessage-deflate;", WIDE, "expected a parameter name"),
    ],
)
def test_client_rejects_invalid_answers_as_101(answer: str, options: DeflateOptions, says: str) -> None:
    with pytest.raises(RemoteHandshakeRefusal) as info:
        client_accept(answer, options)
    assert info.value.status == 101
    assert says in info.value.reason


@pytest.mark.parametrize("answer", [None, ""])
def test_client_sees_a_decline(answer: str | None) -> None:
    assert client_accept(answer, DEFAULT) is None


def test_validate_response_allows_offered_extensions_only() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    headers = Headers(
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(key)),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"),
        ]
    )
    response = Response(101, "Switching Protocols", headers)
    assert validate_response(response, key, extensions=["permessage-deflate"]) is None
    with pytest.raises(HandshakeError, match="did not offer"):
        validate_response(response, key)


# -- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": -1},
        {"level": 10},
        {"level": -2},
        {"window_bits": 7},
        {"window_bits": 16},
        {"mem_level": 0},
        {"mem_level": 10},
    ],
)
def test_options_are_checked(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DeflateOptions(**kwargs)  # type: ignore[arg-type]


# -- the codec -----------------------------------------------------------------------------------

SAMPLE = b"".join(b'{"id": %d, "user": "ann", "text": "hello, world, hello"}' % i for i in range(400))


def pair(
    params: DeflateParameters,
    server_options: DeflateOptions = DEFAULT,
    client_options: DeflateOptions = DEFAULT,
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    return (
        PerMessageDeflate(params, server_options, server=True),
        PerMessageDeflate(params, client_options, server=False),
    )


@pytest.mark.parametrize("server_bits", [8, 9, 10, 11, 12, 13, 14, 15, None])
@pytest.mark.parametrize("client_bits", [8, 12, 15, None])
@pytest.mark.parametrize("takeover", [True, False])
def test_round_trips_across_window_sizes(
    server_bits: int | None, client_bits: int | None, takeover: bool
) -> None:
    params = P(not takeover, not takeover, server_bits, client_bits)
    options = DeflateOptions(window_bits=15, context_takeover=takeover)
    server, client = pair(params, options, options)
    messages = [SAMPLE, SAMPLE[:1000], os.urandom(3000), b"", SAMPLE[::-1], SAMPLE]
    for message in messages:
        assert through(server, client, message) == message
        assert through(client, server, message) == message


def through(sender: PerMessageDeflate, receiver: PerMessageDeflate, message: bytes) -> bytes:
    """What the receiver makes of `message`: inflated, or as it is when the sender sends it plain."""
    data = sender.compress(message)
    if data is None:
        assert sender.shared is not None  # only without context takeover
        return message
    return receiver.decompress(data, final=True, limit=None)


@pytest.mark.parametrize("takeover", [False, True])
def test_incompressible_messages_go_plain_unless_context_is_kept(takeover: bool) -> None:
    server, client = pair(P(), DeflateOptions(context_takeover=takeover))
    noise = os.urandom(5000)
    if takeover:
        data = server.compress(noise)
        assert data is not None and len(data) > len(noise)  # the peer's window needs it
        assert client.decompress(data, final=True, limit=None) == noise
    else:
        assert server.compress(noise) is None
        assert server.compress(b"") is None
    assert through(server, client, SAMPLE) == SAMPLE  # and what follows is unaffected


def test_decompressor_window_is_the_negotiated_one() -> None:
    """A peer that was told 8 bits may not be sent references further back than 256 bytes."""
    server, _ = pair(P(server_max_window_bits=8), DeflateOptions(window_bits=15))
    strict = zlib.decompressobj(-8)
    assert strict.decompress(server.compress(SAMPLE) + b"\x00\x00\xff\xff") == SAMPLE


def test_context_takeover_shrinks_repeated_messages() -> None:
    kept, _ = pair(P(), DeflateOptions(context_takeover=True))
    fresh, _ = pair(P(), DeflateOptions(context_takeover=False))
    message = SAMPLE[:2000]
    kept.compress(message)
    fresh.compress(message)
    assert len(kept.compress(message)) < len(fresh.compress(message)) // 4


def test_without_context_takeover_each_message_stands_alone() -> None:
    server, _ = pair(P(server_no_context_takeover=True))
    for message in (SAMPLE, SAMPLE[:5000], SAMPLE):
        fresh = zlib.decompressobj(-12)
        assert fresh.decompress(server.compress(message) + b"\x00\x00\xff\xff") == message


def test_the_shared_compressor_gives_every_connection_the_same_bytes() -> None:
    pool = CompressorPool(DEFAULT)
    one = PerMessageDeflate(P(True, True, 12, None), DEFAULT, server=True, pool=pool)
    two = PerMessageDeflate(P(True, True, 12, None), DEFAULT, server=True, pool=pool)
    other = PerMessageDeflate(P(True, True, 9, None), DEFAULT, server=True, pool=pool)
    assert one.shared is two.shared is pool.get(12)
    assert other.shared is pool.get(9) and other.shared is not one.shared
    assert one.compress(SAMPLE) == two.compress(SAMPLE) == one.compress(SAMPLE)
    with_takeover = PerMessageDeflate(P(), DeflateOptions(context_takeover=True), server=True, pool=pool)
    assert with_takeover.shared is None


def test_no_zlib_state_outlives_a_message_without_context_takeover() -> None:
    server, client = pair(P(True, True, 12, 12))
    data = client.compress(SAMPLE)
    assert server.decompress(data[:100], final=False, limit=None)
    assert server._decompressor is not None
    server.decompress(data[100:], final=True, limit=None)
    assert server._decompressor is None and server._compressor is None
    server.compress(SAMPLE)
    assert server._compressor is None  # the shared one did it


def test_with_context_takeover_the_compressor_is_made_at_first_use() -> None:
    server, client = pair(P(), DeflateOptions(context_takeover=True), DeflateOptions(context_takeover=True))
    assert server._compressor is None and server._decompressor is None
    server.decompress(client.compress(SAMPLE), final=True, limit=None)
    assert server._decompressor is not None  # kept: the client may refer back to it
    server.compress(SAMPLE)
    assert server._compressor is not None


def zip_bomb(size: int, bits: int = 15) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -bits)
    out = b"".join(z.compress(b"\0" * (1 << 20)) for _ in range(size >> 20)) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_decompression_stops_at_the_limit() -> None:
    server, _ = pair(P())
    bomb = zip_bomb(64 << 20)  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < 100_000
    with pytest.raises(ProtocolError) as info:
        server.decompress(bomb, final=True, limit=1 << 20)
    assert info.value.code == 1009


@pytest.mark.parametrize("size", [0, 1, 999, 1000])
def test_decompression_limit_is_inclusive(size: int) -> None:
    server, _ = pair(P())
    assert len(server.decompress(deflated(b"a" * size), final=True, limit=1000)) == size
    server, _ = pair(P())
    with pytest.raises(ProtocolError):
        server.decompress(deflated(b"a" * 1001), final=True, limit=1000)


def deflated(message: bytes, bits: int = 15) -> bytes:
    """`message` as a peer compresses it (zlib, sync flush, 00 00 ff ff removed)."""
    z = zlib.compressobj(6, zlib.DEFLATED, -bits)
    return (z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_limit_applies_to_the_trailing_flush_too() -> None:
    """The data ending a message may be held back until 00 00 ff ff arrives."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = z.compress(b"x" * 5000) + z.flush(zlib.Z_SYNC_FLUSH)
    server, _ = pair(P())
    with pytest.raises(ProtocolError) as info:
        server.decompress(data[:-4], final=True, limit=4999)
    assert info.value.code == 1009


@pytest.mark.parametrize(
    "data",
    [b"\xff\xff\xff\xff", b"\x07", zlib.compress(b"zlib header, not raw deflate")],
    ids=["garbage", "reserved-block-type", "zlib-wrapper"],
)
def test_invalid_compressed_data_is_a_protocol_error(data: bytes) -> None:
    server, _ = pair(P())
    with pytest.raises(ProtocolError) as info:
        server.decompress(data, final=True, limit=None)
    assert info.value.code == 1002


def test_a_final_deflate_block_ends_the_message() -> None:
    """RFC 7692 7.2.3.4 allows BFINAL: nothing may follow it, and the stream starts over."""
    server, _ = pair(P(), DeflateOptions(context_takeover=True))
    for message in (b"first message", b"second message"):
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = z.compress(message) + z.flush(zlib.Z_FINISH)
        assert server.decompress(data, final=True, limit=None) == message
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    with pytest.raises(ProtocolError, match="after the final deflate block"):
        server.decompress(z.compress(b"m") + z.flush(zlib.Z_FINISH) + b"\x00", final=True, limit=None)


@FAST
@given(
    message=st.binary(max_size=3000) | st.sampled_from([SAMPLE, SAMPLE[:777]]),
    bits=st.integers(8, 15),
    takeover=st.booleans(),
    cuts=st.lists(st.integers(0, 4000), max_size=5),
)
def test_property_any_message_in_any_fragments_round_trips(
    message: bytes, bits: int, takeover: bool, cuts: list[int]
) -> None:
    params = P(not takeover, not takeover, bits, bits)
    options = DeflateOptions(window_bits=15, context_takeover=takeover)
    server, client = pair(params, options, options)
    for _ in range(2):
        data = client.compress(message)
        if data is None:  # incompressible, sent as it is
            assert not takeover
            continue
        points = sorted({c for c in cuts if c <= len(data)})
        parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
        out = b"".join(
            server.decompress(part, final=i == len(parts) - 1, limit=len(message))
            for i, part in enumerate(parts)
        )
        assert out == message


@FAST
@given(data=st.binary(max_size=200), limit=st.none() | st.integers(0, 1000))
def test_property_random_bytes_only_raise_protocol_errors(data: bytes, limit: int | None) -> None:
    server, _ = pair(P())
    try:
        out = server.decompress(data, final=True, limit=limit)
    except ProtocolError as exc:
        assert exc.code in (1002, 1009)
    else:
        assert limit is None or len(out) <= limit


# -- the connection with a codec -------------------------------------------------------------------


def deflating(role: Role, params: DeflateParameters = BOTH_FRESH, **options: object) -> WebSocketConnection:
    codec = PerMessageDeflate(params, DeflateOptions(**options), server=role is Role.SERVER)  # type: ignore[arg-type]
    return WebSocketConnection(role, deflate=codec)


def compressed_frames(message: bytes, opcode: int, cuts: Sequence[int] = (), bits: int = 15) -> list[bytes]:
    """A compressed message as masked client frames, split at `cuts` of the compressed data."""
    z = zlib.compressobj(6, zlib.DEFLATED, -bits)
    data = (z.compress(message) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    points = [0, *cuts, len(data)]
    parts = [data[a:b] for a, b in itertools.pairwise(points)]
    return [
        encode_frame(
            opcode if i == 0 else Opcode.CONTINUATION, part, fin=i == len(parts) - 1, rsv1=i == 0, mask=True
        )
        for i, part in enumerate(parts)
    ]


def test_server_receives_compressed_text_and_binary() -> None:
    conn = deflating(Role.SERVER)
    text = "héllo wörld " * 200
    [frame] = compressed_frames(text.encode(), Opcode.TEXT)
    assert conn.receive_data(frame) == [TextMessage(text)]
    [frame] = compressed_frames(SAMPLE, Opcode.BINARY)
    assert conn.receive_data(frame) == [BinaryMessage(SAMPLE)]
    # Uncompressed messages stay valid on a compressed connection.
    assert conn.receive_data(encode_frame(Opcode.TEXT, b"plain", mask=True)) == [TextMessage("plain")]


def test_server_receives_a_fragmented_compressed_message_with_a_ping_inside() -> None:
    conn = deflating(Role.SERVER)
    frames = compressed_frames(SAMPLE, Opcode.BINARY, cuts=[1, 50, 51, 300])
    ping = encode_frame(Opcode.PING, b"p", mask=True)
    events = conn.receive_data(b"".join(frames[:2]) + ping + b"".join(frames[2:]))
    assert events == [PingReceived(b"p"), BinaryMessage(SAMPLE)]
    [pong] = sent_frames(conn)
    assert pong == Frame(Opcode.PONG, b"p")  # control frames are never compressed


def test_invalid_utf8_in_compressed_text_fails_with_1007() -> None:
    conn = deflating(Role.SERVER)
    [frame] = compressed_frames(b"ok \xff\xfe", Opcode.TEXT)
    [failure] = conn.receive_data(frame)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1007


def test_rsv1_on_a_continuation_frame_fails_with_1002() -> None:
    conn = deflating(Role.SERVER)
    data = raw_frame(0x40 | Opcode.TEXT, b"") + raw_frame(0x80 | 0x40 | Opcode.CONTINUATION, b"")
    [failure] = conn.receive_data(data)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1002
    assert "continuation" in failure.reason


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rsv1_on_a_control_frame_fails_with_1002(opcode: int) -> None:
    conn = deflating(Role.SERVER)
    payload = close_body(1000) if opcode == Opcode.CLOSE else b""
    [failure] = conn.receive_data(raw_frame(0x80 | 0x40 | opcode, payload))
    assert isinstance(failure, ProtocolFailure) and failure.code == 1002


def test_rsv1_without_the_extension_fails_with_1002() -> None:
    conn = WebSocketConnection(Role.SERVER)
    [frame] = compressed_frames(b"hello", Opcode.TEXT)
    [failure] = conn.receive_data(frame)
    assert isinstance(failure, ProtocolFailure) and failure.code == 1002


def test_zip_bomb_closes_with_1009_and_stays_small() -> None:
    conn = WebSocketConnection(
        Role.SERVER, max_message_size=1 << 20, deflate=PerMessageDeflate(P(True, True), DEFAULT, server=True)
    )
    bomb = zip_bomb(256 << 20)  # 256 MiB once inflated, about 256 KiB on the wire
    frame = encode_frame(Opcode.BINARY, bomb, rsv1=True, mask=True)
    tracemalloc.start()
    try:
        [failure] = conn.receive_data(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated"
    assert isinstance(failure, ProtocolFailure) and failure.code == 1009
    assert "decompressed" in failure.reason
    [close] = sent_frames(conn)
    assert close.payload[:2] == (1009).to_bytes(2, "big")


def test_limit_counts_decompressed_bytes_across_fragments() -> None:
    conn = WebSocketConnection(
        Role.SERVER, max_message_size=10_000, deflate=PerMessageDeflate(P(True, True), DEFAULT, server=True)
    )
    assert conn.receive_data(b"".join(compressed_frames(b"a" * 10_000, Opcode.BINARY, cuts=[3]))) == [
        BinaryMessage(b"a" * 10_000)
    ]
    [failure] = conn.receive_data(b"".join(compressed_frames(b"a" * 10_001, Opcode.BINARY, cuts=[3])))
    assert isinstance(failure, ProtocolFailure) and failure.code == 1009


@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_messages_at_or_over_the_threshold_go_out_compressed(role: Role) -> None:
    conn = deflating(role, threshold=100)
    parse = FrameParser(expect_mask=role is Role.CLIENT, allow_rsv1=True)
    [small] = parse.feed(conn.send_text("a" * 99))
    assert (small.rsv1, small.payload) == (False, b"a" * 99)
    [large] = parse.feed(conn.send_text("a" * 100))
    assert large.rsv1 and large.opcode == Opcode.TEXT
    assert zlib.decompressobj(-15).decompress(large.payload + b"\x00\x00\xff\xff") == b"a" * 100
    [binary] = parse.feed(conn.send_message(SAMPLE))
    assert binary.rsv1 and binary.opcode == Opcode.BINARY and len(binary.payload) < len(SAMPLE) // 10


def test_control_frames_are_never_compressed() -> None:
    conn = deflating(Role.SERVER, threshold=0)
    conn.receive_data(encode_frame(Opcode.PING, b"y" * 125, mask=True))
    [pong] = conn.data_to_send()
    for data in (conn.send_ping(b"x" * 125), pong, conn.send_close(1000, "z" * 100)):
        [frame] = frames_of(data, from_client=False)
        assert not frame.rsv1


@pytest.mark.parametrize("takeover", [True, False])
def test_client_and_server_connections_talk_compressed(takeover: bool) -> None:
    params = P(not takeover, not takeover, 10, 11)
    options = {"threshold": 0, "window_bits": 15, "context_takeover": takeover}
    server, client = deflating(Role.SERVER, params, **options), deflating(Role.CLIENT, params, **options)
    for text in ("", "a", "hello " * 1000, "ü" * 5000):
        assert server.receive_data(client.send_text(text)) == [TextMessage(text)]
        assert client.receive_data(server.send_text(text)) == [TextMessage(text)]
    assert client.receive_data(server.send_binary(SAMPLE)) == [BinaryMessage(SAMPLE)]


@FAST
@given(
    data=st.binary(max_size=60),
    first=st.sampled_from([0x41, 0x42, 0xC1, 0xC2]),
    tail=st.binary(max_size=30),
)
def test_property_garbage_in_compressed_frames_only_fails_cleanly(
    data: bytes, first: int, tail: bytes
) -> None:
    conn = deflating(Role.SERVER)
    stream = raw_frame(first, data, mask_key=FIXED_KEY) + tail
    events = conn.receive_data(stream)
    check_event_sequence(conn, events)


def test_message_compressor_threshold_is_the_options() -> None:
    compressor = MessageCompressor(DeflateOptions(threshold=7), 12)
    assert compressor.threshold == 7 and compressor.window_bits == 12
