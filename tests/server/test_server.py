"""The server over real sockets: echo, the close handshake in both directions, and failures
inside the application that must stay inside one connection."""

from __future__ import annotations

import socket
import struct
import threading
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.sync.client import connect

from websock_actors import Connection, WebSocketApp

from ..support.raw import CLOSE, PING, PONG, TEXT, RawClient, close_code, masked_frame, upgrade_request


class App(WebSocketApp):
    """Echo, with a few commands; records every close as (code, reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.closes: list[tuple[int, str]] = []
        self.closed = threading.Event()
        self.connects = 0
        self.send_errors: list[str] = []

        @self.on_connect
        def connected(conn: Connection) -> None:
            self.connects += 1
            if conn.request is not None and conn.request.path == "/fail-connect":
                raise RuntimeError("refusing in on_connect")

        @self.on_message
        def handle(conn: Connection, message: str | bytes) -> None:
            if message == "boom":
                raise RuntimeError("handler bug")
            if message == "close me":
                conn.close(4001, "bye")
                return
            if message == "send after close":
                conn.close(4002, "closing")
                try:
                    conn.send("too late")
                except Exception as exc:
                    self.send_errors.append(type(exc).__name__)
                return
            conn.send(message)

        @self.on_close
        def closed(conn: Connection, code: int, reason: str) -> None:
            self.closes.append((code, reason))
            self.closed.set()


def test_echo_text_binary_and_empty(serve):
    server = serve(App())
    with connect(server.url, compression=None) as ws:
        for message in ("hello", "", "ünïcödé ✓", b"", b"\x00\xff" * 70_000, "t" * 65_536):
            ws.send(message)
            assert ws.recv(timeout=5) == message


def test_many_messages_in_one_write_are_all_answered_in_order(serve):
    server = serve(App())
    with RawClient(server.port) as client:
        client.sock.sendall(b"".join(masked_frame(TEXT, f"m{i}".encode()) for i in range(200)))
        for i in range(200):
            assert client.recv_frame() == (TEXT, f"m{i}".encode())


def test_client_initiated_close_is_echoed(serve):
    app = App()
    server = serve(app)
    with connect(server.url, compression=None) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        ws.close(4000, "client says bye")
        assert ws.close_code == 4000  # the code the client received back from the server
    assert app.closed.wait(5)
    assert app.closes == [(4000, "client says bye")]


def test_client_close_over_raw_socket_then_server_closes_tcp(serve):
    app = App()
    server = serve(app)
    with RawClient(server.port) as client:
        client.send_close(4000, "raw bye")
        op, payload = client.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 4000
        client.expect_eof()  # the server ends the TCP connection after the close handshake
    assert app.closed.wait(5)
    assert app.closes == [(4000, "raw bye")]


def test_close_without_status_code(serve):
    app = App()
    server = serve(app)
    with RawClient(server.port) as client:
        client.send_frame(CLOSE, b"")
        assert client.recv_frame() == (CLOSE, b"")
        client.expect_eof()
    assert app.closed.wait(5)
    assert app.closes == [(1005, "")]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"\x03\xe8\xff", 1007, id="reason-not-utf8"),
        pytest.param(b"\x03\xed", 1002, id="code-1005-on-the-wire"),
        pytest.param(b"\x03\xe7", 1002, id="code-999"),
        pytest.param(b"\x03", 1002, id="one-byte-payload"),
    ],
)
def test_invalid_close_frames_fail_the_connection(serve, payload, expected):
    server = serve(App())
    with RawClient(server.port) as client:
        client.send_frame(CLOSE, payload)
        op, answer = client.recv_frame()
        assert op == CLOSE
        assert close_code(answer) == expected
        client.expect_eof()


def test_server_initiated_close_reaches_client(serve):
    app = App()
    server = serve(app)
    with connect(server.url, compression=None) as ws:
        ws.send("close me")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye")
    assert app.closed.wait(5)
    assert app.closes[0][0] == 4001


def test_send_after_close_raises_in_the_app(serve):
    app = App()
    server = serve(app)
    with connect(server.url, compression=None) as ws:
        ws.send("send after close")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 4002
    assert app.closed.wait(5)
    assert app.send_errors == ["ConnectionClosedError"]
    assert app.closes[0][0] == 4002


def test_server_close_times_out_when_peer_never_answers(serve):
    app = App()
    server = serve(app, close_timeout=0.5)
    with RawClient(server.port, timeout=5) as client:
        client.send_text("close me")
        op, payload = client.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 4001
        assert payload[2:] == b"bye"
        # No close frame back: the server gives up after close_timeout and ends the connection.
        client.expect_eof()
    assert app.closed.wait(5)
    assert app.closes == [(1006, "close handshake timed out")]


def test_ping_from_client_is_answered_with_pong(serve):
    server = serve(App())
    with RawClient(server.port) as client:
        client.send_frame(PING, b"are you there")
        assert client.recv_frame() == (PONG, b"are you there")
        client.send_text("after ping")
        assert client.recv_frame() == (TEXT, b"after ping")


def test_unmasked_client_frame_is_a_protocol_error(serve):
    server = serve(App())
    with RawClient(server.port) as client:
        client.sock.sendall(b"\x81\x02hi")
        op, payload = client.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 1002
        client.expect_eof()


def test_handler_exception_closes_only_that_connection(serve):
    app = App()
    server = serve(app)
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(server.url, compression=None)) for _ in range(3)]
        for ws in clients:
            ws.send("warm up")
            assert ws.recv(timeout=5) == "warm up"
        clients[1].send("boom")
        with pytest.raises(ConnectionClosedError) as info:
            clients[1].recv(timeout=5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1011
        assert app.closed.wait(5)
        assert app.closes == [(1011, "internal error")]
        for ws in (clients[0], clients[2]):
            for i in range(5):
                ws.send(f"still fine {i}")
                assert ws.recv(timeout=5) == f"still fine {i}"
        with connect(server.url, compression=None) as fresh:
            fresh.send("new")
            assert fresh.recv(timeout=5) == "new"


def test_on_connect_exception_closes_with_1011(serve):
    app = App()
    server = serve(app)
    with (
        connect(server.url + "fail-connect", compression=None) as ws,
        pytest.raises(ConnectionClosedError) as info,
    ):
        ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011
    with connect(server.url, compression=None) as ws:
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"


def test_normal_close_by_websockets_client(serve):
    app = App()
    server = serve(app)
    with connect(server.url, compression=None) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=1)
    assert app.closed.wait(5)
    assert app.closes == [(1000, "")]


def test_frames_sent_with_the_upgrade_request_are_not_lost(serve):
    server = serve(App())
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(upgrade_request() + masked_frame(TEXT, b"early") + masked_frame(TEXT, b"bird"))
        data = b""
        while data.count(b"early") + data.count(b"bird") < 2:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert frames == b"\x81\x05early\x81\x04bird"


def test_invalid_utf8_text_closes_with_1007(serve):
    app = App()
    server = serve(app)
    with RawClient(server.port) as client:
        client.send_frame(TEXT, b"\xff\xfe")
        op, payload = client.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 1007
        client.expect_eof()
    assert app.closed.wait(5)
    assert app.closes[0][0] == 1007


def test_abrupt_disconnect_reports_1006(serve):
    app = App()
    server = serve(app)
    client = RawClient(server.port)
    client.send_text("hello")
    assert client.recv_frame() == (TEXT, b"hello")
    client.close()  # no close frame
    assert app.closed.wait(5)
    assert app.closes == [(1006, "")]
    # Reset instead of FIN: the same.
    app.closed.clear()
    client = RawClient(server.port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert app.closed.wait(5)
    assert app.closes[1][0] == 1006


def test_broadcast_reaches_every_open_connection(serve):
    app = App()
    server = serve(app)
    srv = server.server
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(server.url, compression=None)) for _ in range(3)]
        for ws in clients:
            ws.send("joined")
            assert ws.recv(timeout=5) == "joined"
        assert server.call(srv.broadcast, "news for all") == 3
        assert server.call(srv.broadcast, b"\x00binary") == 3
        for ws in clients:
            assert ws.recv(timeout=5) == "news for all"
            assert ws.recv(timeout=5) == b"\x00binary"
        clients[0].close()
        assert app.closed.wait(5)
        assert server.call(srv.broadcast, "fewer") == 2
        for ws in clients[1:]:
            assert ws.recv(timeout=5) == "fewer"
