"""permessage-deflate over real sockets: the server against `websockets` clients with every
kind of offer, our own sans-I/O client against the server (and against `websockets`' server),
the decompressed-size limit on the wire, and compressed broadcasts."""

from __future__ import annotations

import os
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as websockets_serve

from websock_actors import Connection, WebSocketApp, encode_broadcast
from websock_actors.errors import RemoteHandshakeRefusal
from websock_actors.protocol import (
    BinaryMessage,
    CloseReceived,
    DeflateOptions,
    DeflateParameters,
    Event,
    FrameParser,
    PerMessageDeflate,
    ProtocolFailure,
    Role,
    TextMessage,
    WebSocketConnection,
    build_request,
    client_accept,
    client_offer,
    generate_key,
    parse_response,
    validate_response,
)
from websock_actors.testing import ServerThread

from ..support.raw import raw_exchange, status_of, upgrade_request

SAMPLE = b"".join(b'{"id": %d, "user": "ann", "text": "hello, world, hello"}' % i for i in range(2000))
TEXT = SAMPLE.decode() + " ü€"
MESSAGES: list[str | bytes] = ["", "hi", "x" * 255, "x" * 256, TEXT, SAMPLE, os.urandom(70_000)]
MESSAGES.append(b"\0" * 300_000)


DEFAULT = DeflateOptions()


def echo_app() -> WebSocketApp:
    app = WebSocketApp()

    @app.on_message
    def echo(conn: Connection, message: str | bytes) -> None:
        conn.send(message)

    return app


class DeflateClient:
    """Our own client side: sans-I/O handshake helpers and codec over a blocking socket."""

    def __init__(self, port: int, options: DeflateOptions | None = DEFAULT, path: str = "/") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = generate_key()
        offer = None if options is None else client_offer(options)
        self.sock.sendall(build_request(f"127.0.0.1:{port}", path, key, extensions=offer))
        data = b""
        while (parsed := parse_response(data)) is None:
            chunk = self.sock.recv(65536)
            assert chunk, f"closed during the handshake: {data!r}"
            data += chunk
        response, self.rest = parsed
        validate_response(response, key, extensions=["permessage-deflate"])
        self.answer = response.headers.get("Sec-WebSocket-Extensions")
        self.params = None if options is None else client_accept(self.answer, options)
        codec = None
        if self.params is not None:
            assert options is not None
            codec = PerMessageDeflate(self.params, options, server=False)
        self.protocol = WebSocketConnection(Role.CLIENT, max_message_size=None, deflate=codec)
        self.raw = FrameParser(expect_mask=False, allow_rsv1=True)  # what the server sent, frame by frame
        self.frames: list[Any] = []
        self.events: list[Event] = []
        if self.rest:
            self._feed(self.rest)

    def _feed(self, data: bytes) -> None:
        self.frames.extend(self.raw.feed(data))
        self.events.extend(self.protocol.receive_data(data))

    def send(self, message: str | bytes) -> None:
        self.sock.sendall(self.protocol.send_message(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> Event:
        while not self.events:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the server closed the connection")
            self._feed(chunk)
        return self.events.pop(0)

    def close(self) -> None:
        self.sock.close()


def message_event(message: str | bytes) -> Event:
    return TextMessage(message) if isinstance(message, str) else BinaryMessage(message)


# -- the server against websockets' client --------------------------------------------------------


def test_compression_is_off_by_default(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app())
    with connect(server.url, compression="deflate") as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send(TEXT)
        assert ws.recv(timeout=5) == TEXT


def test_websockets_client_round_trips_with_the_default_options(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(), compression=True)
    with connect(server.url, compression="deflate", max_size=None) as ws:
        assert ws.response is not None
        assert ws.response.headers["Sec-WebSocket-Extensions"] == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12"
        )
        for message in MESSAGES:
            ws.send(message)
            assert ws.recv(timeout=5) == message


OFFERS = [
    pytest.param({}, id="plain"),
    pytest.param({"client_max_window_bits": None}, id="no-client-bits"),
    pytest.param({"server_no_context_takeover": True}, id="server-no-takeover"),
    pytest.param({"client_no_context_takeover": True}, id="client-no-takeover"),
    *[pytest.param({"server_max_window_bits": bits}, id=f"server-bits-{bits}") for bits in (8, 9, 11, 15)],
    *[pytest.param({"client_max_window_bits": bits}, id=f"client-bits-{bits}") for bits in (9, 10, 15)],
    pytest.param(
        {
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
            "server_max_window_bits": 9,
            "client_max_window_bits": 9,
        },
        id="everything",
    ),
]


@pytest.mark.parametrize("offer", OFFERS)
@pytest.mark.parametrize(
    "options",
    [DeflateOptions(), DeflateOptions(threshold=0, window_bits=15, mem_level=8, context_takeover=True)],
    ids=["default", "takeover"],
)
def test_websockets_client_offers(
    serve: Callable[..., ServerThread], offer: dict[str, Any], options: DeflateOptions
) -> None:
    server = serve(echo_app(), compression=options)
    # Messages of the same kind in a row: with context takeover, later ones refer back.
    factory = ClientPerMessageDeflateFactory(**offer)
    with connect(server.url, extensions=[factory], compression=None, max_size=None) as ws:
        assert ws.response is not None
        answer = ws.response.headers["Sec-WebSocket-Extensions"]
        assert answer.startswith("permessage-deflate")
        if offer.get("server_max_window_bits"):
            bits = min(offer["server_max_window_bits"], options.window_bits)
            assert f"server_max_window_bits={bits}" in answer
        for message in (TEXT, TEXT, "short", SAMPLE, SAMPLE[:5000], SAMPLE):
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_context_takeover_keeps_order_between_actor_and_other_greenlets(
    serve: Callable[..., ServerThread],
) -> None:
    """With context takeover the wire order must be the compression order, wherever `send` is called."""
    app = WebSocketApp()
    conns: list[Connection] = []

    @app.on_connect
    def joined(conn: Connection) -> None:
        conns.append(conn)

    @app.on_message
    def answer(conn: Connection, message: str | bytes) -> None:
        conn.send(f"{message!s} from the actor " * 20)

    server = serve(app, compression=DeflateOptions(threshold=0, context_takeover=True))
    with connect(server.url, compression="deflate") as ws:
        ws.send("warm up")
        ws.recv(timeout=5)

        def from_outside() -> None:
            for i in range(50):
                conns[0].send(f"message {i} from outside " * 20)

        for i in range(20):
            server.call(from_outside)
            ws.send(f"ping {i}")
        expected_outside = [f"message {i} from outside " * 20 for i in range(50)] * 20
        received = [ws.recv(timeout=5) for _ in range(20 * 50 + 20)]
        assert [m for m in received if "outside" in str(m)] == expected_outside
        expected_actor = [f"ping {i} from the actor " * 20 for i in range(20)]
        assert [m for m in received if "actor" in str(m)] == expected_actor


# -- handshake details ------------------------------------------------------------------------------


def test_malformed_extension_header_gets_400_saying_why(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(), compression=True)
    bad = "permessage-deflate; client_max_window_bits="
    request = upgrade_request(extra=f"Sec-WebSocket-Extensions: {bad}\r\n")
    answer = raw_exchange(server.port, request)
    assert status_of(answer) == 400
    assert b"malformed Sec-WebSocket-Extensions header: expected a parameter value" in answer


def test_invalid_offer_is_declined_and_the_next_accepted(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(), compression=True)
    request = upgrade_request(
        extra="Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; " in head
    declined_only = upgrade_request(extra="Sec-WebSocket-Extensions: permessage-deflate; foo=1\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(declined_only)
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Extensions" not in head


def test_connection_reports_the_negotiated_parameters(serve: Callable[..., ServerThread]) -> None:
    app = WebSocketApp()
    seen: list[DeflateParameters | None] = []

    @app.on_message
    def record(conn: Connection, message: str | bytes) -> None:
        seen.append(conn.compression)
        conn.send("ok")

    server = serve(app, compression=True)
    with connect(server.url, compression="deflate") as ws:
        ws.send("?")
        ws.recv(timeout=5)
    with connect(server.url, compression=None) as ws:
        ws.send("?")
        ws.recv(timeout=5)
    assert seen == [DeflateParameters(True, True, 12, 12), None]


# -- our client against the server, and against websockets' server -----------------------------------


@pytest.mark.parametrize(
    "options",
    [
        DeflateOptions(),
        DeflateOptions(threshold=0, window_bits=9),
        DeflateOptions(threshold=0, window_bits=15, context_takeover=True),
    ],
    ids=["default", "bits-9", "takeover"],
)
@pytest.mark.parametrize("server_takeover", [False, True])
def test_our_client_against_our_server(
    serve: Callable[..., ServerThread], options: DeflateOptions, server_takeover: bool
) -> None:
    server = serve(
        echo_app(),
        compression=DeflateOptions(threshold=0, context_takeover=server_takeover),
        max_message_size=None,
    )
    client = DeflateClient(server.port, options)
    try:
        assert client.params is not None
        for message in MESSAGES:
            client.send(message)
            assert client.recv() == message_event(message)
        # Large messages came back compressed: RSV1 on their first frame, control frames never.
        assert any(frame.rsv1 for frame in client.frames)
    finally:
        client.close()


@pytest.mark.parametrize(
    "compression",
    [True, DeflateOptions(threshold=0, window_bits=15, mem_level=8, context_takeover=True)],
    ids=["default", "takeover"],
)
def test_websock_actors_client_against_the_server(
    serve: Callable[..., ServerThread], compression: bool | DeflateOptions
) -> None:
    from websock_actors.client import connect as client_connect

    server = serve(echo_app(), compression=DeflateOptions(context_takeover=True), max_message_size=None)
    with client_connect(server.url, compression=compression, max_message_size=None) as ws:
        for message in MESSAGES:
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_our_client_against_websockets_server() -> None:
    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with websockets_serve(echo, "127.0.0.1", 0, compression="deflate", max_size=None) as ws_server:
        thread = threading.Thread(target=ws_server.serve_forever, daemon=True)
        thread.start()
        try:
            port = ws_server.socket.getsockname()[1]
            for options in (DeflateOptions(), DeflateOptions(window_bits=15, context_takeover=True)):
                client = DeflateClient(port, options)
                try:
                    assert client.answer is not None and client.answer.startswith("permessage-deflate")
                    for message in (TEXT, TEXT, SAMPLE, "tiny", b"\0" * 100_000):
                        client.send(message)
                        assert client.recv() == message_event(message)
                finally:
                    client.close()
        finally:
            ws_server.shutdown()
            thread.join(10)


def test_our_client_fails_an_answer_it_did_not_ask_for() -> None:
    with pytest.raises(RemoteHandshakeRefusal) as info:
        client_accept("permessage-deflate; client_max_window_bits=15", DeflateOptions(window_bits=10))
    assert info.value.status == 101


# -- limits on the wire ------------------------------------------------------------------------------


def zip_bomb(size: int) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = b"".join(z.compress(b"\0" * (1 << 20)) for _ in range(size >> 20)) + z.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def test_zip_bomb_gets_1009(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(), compression=True, max_message_size=1 << 20)
    client = DeflateClient(server.port)
    try:
        from websock_actors.protocol import Opcode, encode_frame

        bomb = zip_bomb(512 << 20)  # 512 MiB of zeros, half a MiB on the wire
        assert len(bomb) < 1 << 20
        client.send_raw(encode_frame(Opcode.BINARY, bomb, rsv1=True, mask=True))
        event = client.recv()
        assert isinstance(event, CloseReceived)
        assert event.code == 1009
        assert "decompressed" in event.reason
    finally:
        client.close()


def test_websockets_client_sees_1009_for_a_message_over_the_limit(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(), compression=True, max_message_size=100_000)
    with connect(server.url, compression="deflate") as ws:
        ws.send(b"\0" * 100_000)  # compresses to about 100 bytes
        assert ws.recv(timeout=5) == b"\0" * 100_000
        ws.send(b"\0" * 100_001)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


# -- broadcast -----------------------------------------------------------------------------------------


@pytest.fixture
def members(serve: Callable[..., ServerThread]) -> Iterator[tuple[ServerThread, list[DeflateClient]]]:
    app = WebSocketApp()
    joined = threading.Semaphore(0)

    @app.on_connect
    def on_join(conn: Connection) -> None:
        joined.release()

    server = serve(app, compression=True)
    clients = [DeflateClient(server.port) for _ in range(3)]
    clients += [DeflateClient(server.port, DeflateOptions(window_bits=9))]
    clients += [DeflateClient(server.port, None)]  # offers nothing
    for _ in clients:
        assert joined.acquire(timeout=5)
    try:
        yield server, clients
    finally:
        for client in clients:
            client.close()


def test_broadcast_is_compressed_once_and_the_same_bytes_go_to_all(
    members: tuple[ServerThread, list[DeflateClient]],
) -> None:
    server, clients = members
    ours = server.server
    assert ours is not None
    for message in (TEXT, SAMPLE, "short"):
        frame = encode_broadcast(message)
        conns = list(ours.connections.values())
        delivered = server.call(lambda frame=frame, conns=conns: sum(c.send_frame(frame) for c in conns))
        assert delivered == len(clients)
        for client in clients:
            assert client.recv() == message_event(message)
        same12 = [client.frames.pop() for client in clients[:3]]
        bits9 = clients[3].frames.pop()
        plain = clients[4].frames.pop()
        assert same12[0] == same12[1] == same12[2]
        if message == "short":  # under the threshold: the plain frame for everyone
            assert not same12[0].rsv1 and not bits9.rsv1
            continue
        assert same12[0].rsv1 and bits9.rsv1 and not plain.rsv1
        assert len(same12[0].payload) < len(plain.payload) // 5
        # One compressed copy per window size, made once and cached on the frame.
        assert len(frame._compressed) == 2


def test_server_broadcast_compresses_for_compressing_members(
    members: tuple[ServerThread, list[DeflateClient]],
) -> None:
    server, clients = members
    assert server.server is not None
    assert server.call(server.server.broadcast, TEXT) == len(clients)
    for client in clients:
        assert client.recv() == TextMessage(TEXT)
    assert [client.frames[-1].rsv1 for client in clients] == [True, True, True, True, False]


def test_protocol_failure_frames_are_events_not_crashes(serve: Callable[..., ServerThread]) -> None:
    """Garbage where compressed data should be closes with 1002; the server keeps serving."""
    server = serve(echo_app(), compression=True)
    client = DeflateClient(server.port)
    try:
        from websock_actors.protocol import Opcode, encode_frame

        client.send_raw(encode_frame(Opcode.TEXT, b"\xff\xff\xff\xff garbage", rsv1=True, mask=True))
        event = client.recv()
        assert isinstance(event, CloseReceived) and event.code == 1002
    finally:
        client.close()
    with connect(server.url, compression="deflate") as ws:
        ws.send(TEXT)
        assert ws.recv(timeout=5) == TEXT
    assert not isinstance(event, ProtocolFailure)


def test_incompressible_broadcast_goes_out_plain(members: tuple[ServerThread, list[DeflateClient]]) -> None:
    server, clients = members
    assert server.server is not None
    noise = os.urandom(20_000)
    assert server.call(server.server.broadcast, noise) == len(clients)
    for client in clients:
        assert client.recv() == BinaryMessage(noise)
        assert not client.frames[-1].rsv1
