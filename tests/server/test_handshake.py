"""The opening handshake over real sockets: refusals and their HTTP statuses, the request
hooks (auth, plain pages), Origin, subprotocols, the connection cap, the handshake timeout."""

from __future__ import annotations

import socket
import threading
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from websock_actors import ConfigurationError, Connection, Server, WebSocketApp
from websock_actors.protocol import Headers, Request, Response, error_response

from ..support.raw import RawClient, read_until_eof, refuse, split_response, upgrade_request

GOOD_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class CountingApp(WebSocketApp):
    """Echo, and count the connections that reached on_connect."""

    def __init__(self) -> None:
        super().__init__()
        self.connects = 0
        self.closes: list[int] = []
        self.connected = threading.Event()
        self.closed = threading.Event()

        @self.on_connect
        def connected(conn: Connection) -> None:
            self.connects += 1
            conn.state["subprotocol"] = conn.subprotocol
            self.connected.set()

        @self.on_message
        def echo(conn: Connection, message: str | bytes) -> None:
            conn.send(message)

        @self.on_close
        def closed(conn: Connection, code: int, reason: str) -> None:
            self.closes.append(code)
            self.closed.set()


def refused_status(url: str, **options: Any) -> int:
    """The HTTP status with which the server refuses a `websockets` client."""
    with pytest.raises(InvalidStatus) as info, connect(url, **options):
        pass
    return int(info.value.response.status_code)


def request(method: str = "GET", version: str = "HTTP/1.1", headers: dict[str, str] | None = None) -> bytes:
    """A request head built from parts, to break one thing at a time."""
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": GOOD_KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in (headers or {}).items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    lines = [f"{method} / {version}", *(f"{k}: {v}" for k, v in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


REFUSALS = [
    pytest.param(request(method="POST"), 405, {"allow": "GET"}, id="post-405"),
    pytest.param(request(method="PUT"), 405, {}, id="put-405"),
    pytest.param(request(headers={"Upgrade": None}), 426, {"upgrade": "websocket"}, id="no-upgrade-426"),
    pytest.param(request(headers={"Upgrade": "h2c"}), 426, {}, id="other-upgrade-426"),
    pytest.param(request(headers={"Connection": None}), 400, {}, id="no-connection-400"),
    pytest.param(request(headers={"Connection": "keep-alive"}), 400, {}, id="connection-keepalive-400"),
    pytest.param(
        request(headers={"Sec-WebSocket-Version": "8"}),
        426,
        {"sec-websocket-version": "13"},
        id="version-8-426",
    ),
    pytest.param(
        request(headers={"Sec-WebSocket-Version": None}),
        426,
        {"sec-websocket-version": "13"},
        id="no-version-426",
    ),
    pytest.param(request(headers={"Sec-WebSocket-Key": "not base64!!"}), 400, {}, id="key-not-base64-400"),
    pytest.param(request(headers={"Sec-WebSocket-Key": "c2hvcnQ="}), 400, {}, id="key-short-400"),
    pytest.param(request(headers={"Sec-WebSocket-Key": None}), 400, {}, id="no-key-400"),
    pytest.param(request(headers={"Host": None}), 400, {}, id="no-host-400"),
    pytest.param(request(version="HTTP/1.0"), 400, {}, id="http10-400"),
    pytest.param(b"HELLO\r\n\r\n", 400, {}, id="garbage-request-line-400"),
    pytest.param(b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, {}, id="four-part-request-line-400"),
    pytest.param(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400, {}, id="malformed-header-400"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, {}, id="tls-hello-400"),
    pytest.param(
        upgrade_request(extra="X-Big: " + "a" * 17 * 1024 + "\r\n"), 431, {}, id="headers-over-16k-431"
    ),
    pytest.param(b"GET / HTTP/1.1\r\nX-Long: " + b"b" * 20_000, 431, {}, id="unterminated-head-over-16k-431"),
]


def test_handshake_refusals_over_real_sockets(serve):
    app = CountingApp()
    server = serve(app)
    for param in REFUSALS:
        raw, status, headers = param.values
        # `refuse` reads to EOF: a server that keeps the socket open after answering times out.
        got_status, got_headers, body = refuse(server.port, raw)
        assert got_status == status, (param.id, got_status)
        for name, value in headers.items():
            assert got_headers.get(name) == value, (param.id, got_headers)
        assert got_headers.get("connection") == "close", param.id
        assert int(got_headers["content-length"]) == len(body), param.id
    assert app.connects == 0
    # The counter does count: a valid upgrade reaches on_connect.
    with connect(server.url, compression=None) as ws:
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"
    assert app.connects == 1


def test_bad_requests_do_not_touch_other_connections(serve):
    server = serve(CountingApp())
    with connect(server.url, compression=None) as ws:
        for raw in (b"HELLO\r\n\r\n", request(method="POST"), request(headers={"Sec-WebSocket-Key": "x"})):
            assert refuse(server.port, raw)[0] in (400, 405)
            ws.send("still here")
            assert ws.recv(timeout=5) == "still here"


def test_small_custom_header_limit(serve):
    app = CountingApp()
    server = serve(app, max_header_bytes=512)
    small = upgrade_request(extra="X-Pad: " + "p" * 100 + "\r\n")
    assert len(small) < 512
    with RawClient(server.port, extra="X-Pad: " + "p" * 100 + "\r\n") as client:
        assert client.status == 101
    big = upgrade_request(extra="X-Pad: " + "p" * 500 + "\r\n")
    status, _, body = refuse(server.port, big)
    assert status == 431
    assert b"too large" in body
    # Sent in two pieces, neither over the limit alone.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(big[:300])
        sock.sendall(big[300:])
        assert split_response(read_until_eof(sock))[0] == 431
    assert app.connects == 1


def test_websockets_client_sees_refusal_status(serve):
    app = CountingApp()
    server = serve(app, origins=["https://good.example"])
    assert refused_status(server.url, origin="https://evil.example", compression=None) == 403
    assert app.connects == 0


def test_origin_allow_list(serve):
    app = CountingApp()
    server = serve(app, origins=["https://good.example", "https://other.example"])
    with connect(server.url, origin="https://good.example", compression=None) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    with connect(server.url, origin="https://other.example", compression=None) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    for origin in ("https://evil.example", "https://good.example.evil", "http://good.example"):
        status, _, _ = refuse(server.port, upgrade_request(extra=f"Origin: {origin}\r\n"))
        assert status == 403, origin
    # No Origin header at all is refused too, unless None is in the list.
    assert refuse(server.port, upgrade_request())[0] == 403
    assert app.connects == 2


def test_origin_list_may_admit_clients_without_origin(serve):
    server = serve(CountingApp(), origins=[None, "https://good.example"])
    with RawClient(server.port) as client:
        assert client.status == 101
    assert refuse(server.port, upgrade_request(extra="Origin: https://evil.example\r\n"))[0] == 403


def test_process_request_auth_hook(serve):
    seen: list[Request] = []

    def authorize(req: Request) -> Response | None:
        seen.append(req)
        if req.headers.get("Authorization") != "Bearer secret":
            return error_response(401, "no token", [("WWW-Authenticate", "Bearer")])
        return None

    app = CountingApp()
    server = serve(app, process_request=authorize)
    status, headers, body = refuse(server.port, upgrade_request(path="/chat?room=1"))
    assert status == 401
    assert headers["www-authenticate"] == "Bearer"
    assert body == b"no token\n"
    assert seen[-1].path == "/chat?room=1"
    wrong = {"Authorization": "Bearer wrong"}
    assert refused_status(server.url, compression=None, additional_headers=wrong) == 401
    assert app.connects == 0
    with connect(server.url, compression=None, additional_headers={"Authorization": "Bearer secret"}) as ws:
        ws.send("in")
        assert ws.recv(timeout=5) == "in"
    assert app.connects == 1


def test_on_request_is_the_hook_and_process_request_its_older_name(serve):
    def deny(req: Request) -> Response | None:
        return error_response(403, "go away") if req.path == "/private" else None

    refused: list[int] = []
    app = CountingApp()
    app.on_refused(lambda address, error: refused.append(error.status))
    for name in ("on_request", "process_request"):
        server = serve(app, **{name: deny})
        assert refuse(server.port, upgrade_request(path="/private"))[0] == 403
        with connect(server.url, compression=None) as ws:
            ws.send("in")
            assert ws.recv(timeout=5) == "in"
    with pytest.raises(ConfigurationError):
        Server.from_keywords(app, on_request=deny, process_request=deny)
    # on_refused sees the server's own refusals (here a bad version), not the hook's answers.
    server = serve(app)
    assert refused == []
    assert refuse(server.port, upgrade_request(extra="Sec-WebSocket-Version: 8\r\n"))[0] == 426
    assert refused == [426]


def test_on_request_serves_a_plain_page(serve):
    app = CountingApp()

    @app.on_request
    def page(req: Request) -> Response | None:
        if req.headers.get("Upgrade") is None and req.path == "/":
            return Response(200, "OK", Headers([("Content-Type", "text/html")]), b"<h1>hello</h1>")
        if req.path == "/forbidden":
            return error_response(403, "go away")
        return None

    server = serve(app)
    status, headers, body = refuse(server.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200
    assert headers["content-type"] == "text/html"
    assert headers["content-length"] == str(len(b"<h1>hello</h1>"))
    assert body == b"<h1>hello</h1>"
    # A plain GET the hook does not answer still gets the WebSocket refusal.
    assert refuse(server.port, b"GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0] == 426
    assert refuse(server.port, upgrade_request(path="/forbidden"))[0] == 403
    with connect(server.url, compression=None) as ws:
        ws.send("upgraded")
        assert ws.recv(timeout=5) == "upgraded"
    assert app.connects == 1


def test_subprotocol_selection_prefers_server_order(serve):
    app = CountingApp()
    server = serve(app, subprotocols=["chat.v2", "chat.v1"])
    with connect(server.url, subprotocols=["chat.v1", "chat.v2"], compression=None) as ws:
        assert ws.subprotocol == "chat.v2"
    with connect(server.url, subprotocols=["chat.v1", "other"], compression=None) as ws:
        assert ws.subprotocol == "chat.v1"
    with connect(server.url, subprotocols=["other"], compression=None) as ws:
        assert ws.subprotocol is None
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    with RawClient(server.port, extra="Sec-WebSocket-Protocol: nope, never\r\n") as client:
        assert "sec-websocket-protocol" not in client.headers
    with RawClient(server.port) as client:
        assert "sec-websocket-protocol" not in client.headers
    two_headers = "Sec-WebSocket-Protocol: chat.v1\r\nSec-WebSocket-Protocol: chat.v2\r\n"
    with RawClient(server.port, extra=two_headers) as client:
        assert client.headers["sec-websocket-protocol"] == "chat.v2"


def test_app_sees_chosen_subprotocol(serve):
    app = CountingApp()
    seen: list[str | None] = []

    @app.on_message
    def report(conn: Connection, message: str | bytes) -> None:
        seen.append(conn.subprotocol)
        conn.send(str(conn.subprotocol))

    server = serve(app, subprotocols=["graphql-ws"])
    with connect(server.url, subprotocols=["graphql-ws"], compression=None) as ws:
        ws.send("which")
        assert ws.recv(timeout=5) == "graphql-ws"
    assert seen == ["graphql-ws"]


def test_max_connections_refuses_with_503(serve):
    app = CountingApp()
    server = serve(app, max_connections=2)
    with ExitStack() as stack:
        first = stack.enter_context(connect(server.url, compression=None))
        second = stack.enter_context(connect(server.url, compression=None))
        for ws in (first, second):
            ws.send("up")
            assert ws.recv(timeout=5) == "up"
        status, headers, _ = refuse(server.port, upgrade_request())
        assert status == 503
        assert headers.get("retry-after") == "1"
        assert refused_status(server.url, compression=None) == 503
        assert app.connects == 2
        # A slot frees once a connection has closed.
        app.closed.clear()
        first.close()
        assert app.closed.wait(5)
        with connect(server.url, compression=None) as third:
            third.send("in")
            assert third.recv(timeout=5) == "in"
        assert app.connects == 3
        second.send("still")
        assert second.recv(timeout=5) == "still"


def test_refused_handshakes_do_not_use_up_slots(serve):
    app = CountingApp()
    server = serve(app, max_connections=1)
    for _ in range(5):
        assert refuse(server.port, request(method="POST"))[0] == 405
    with connect(server.url, compression=None) as ws:
        ws.send("ok")
        assert ws.recv(timeout=5) == "ok"


def test_handshake_timeout_drops_silent_client(serve):
    app = CountingApp()
    server = serve(app, handshake_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        data = read_until_eof(sock)  # TimeoutError after 5 s if the server never drops us
    assert split_response(data)[0] == 408
    # A client that sends part of a request and then stalls is dropped as well.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        data = read_until_eof(sock)
    assert split_response(data)[0] == 408
    assert app.connects == 0
    # The timeout covers the handshake only: an open connection may stay quiet longer.
    with RawClient(server.port) as client:
        client.settimeout(1.0)
        with pytest.raises(TimeoutError):
            client.recv_frame()
        client.send_text("late")
        assert client.recv_frame() == (1, b"late")


def test_refused_handshake_frees_its_slot_at_once(serve):
    """A refused request must not count against max_connections while its client lingers."""
    app = CountingApp()
    server = serve(app, max_connections=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as lingering:
        lingering.sendall(request(method="POST"))
        # Read the answer and the server's FIN, but keep our side open.
        assert split_response(read_until_eof(lingering))[0] == 405
        with connect(server.url, compression=None) as ws:
            ws.send("admitted")
            assert ws.recv(timeout=5) == "admitted"


def test_request_hook_exceptions_answer_500(serve):
    app = CountingApp()

    @app.on_request
    def broken_page(req: Request) -> Response | None:
        if req.path == "/broken":
            raise RuntimeError("bug in on_request")
        return None

    def broken_auth(req: Request) -> Response | None:
        if req.path == "/broken-auth":
            raise RuntimeError("bug in process_request")
        return None

    server = serve(app, process_request=broken_auth, max_connections=1)
    for path in ("/broken", "/broken-auth"):
        status, _, _ = refuse(server.port, upgrade_request(path=path))
        assert status == 500, path
    assert app.connects == 0
    # The failed admissions left no slot taken.
    with connect(server.url, compression=None) as ws:
        ws.send("fine")
        assert ws.recv(timeout=5) == "fine"


def test_header_tokens_are_matched_like_browsers_send_them(serve):
    app = CountingApp()
    server = serve(app)
    browser_like = request(headers={"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(browser_like)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
        status, headers, _ = split_response(head)
    assert status == 101
    # RFC 6455 section 1.3's example key and accept value.
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert app.connected.wait(5)
