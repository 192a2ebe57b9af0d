"""Regression tests for what a hostile or broken client must not get away with (real sockets)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from websock_actors import (
    App,
    ConfigurationError,
    Connection,
    Context,
    Message,
    WebSocketApp,
)
from websock_actors.protocol import DEFAULT_MAX_FRAGMENTS, Request, Response, error_response

from ..support.frames import parse_frames
from ..support.raw import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    TEXT,
    RawClient,
    close_code,
    masked_frame,
    refuse,
    upgrade_request,
)
from ..support.websock_thread import WebSockThread


class Join(Message):
    type: Literal["join"]
    room: str


class Joined(Message):
    type: Literal["joined"] = "joined"
    room: str


class Tagged(Message):
    type: Literal["tagged"]
    counts: dict[str, int] = Field(default_factory=dict)
    items: list[int] = Field(default_factory=list)


def gated_app(handled: list[str]) -> App:
    """A typed app that refuses connections without `X-Token: ok` in on_connect."""
    app = App("gated")

    @app.handler
    def join(msg: Join, ctx: Context) -> Joined:
        handled.append(msg.room)
        return Joined(room=msg.room)

    @app.handler
    def tagged(msg: Tagged, ctx: Context) -> None:
        handled.append("tagged")

    @app.on_connect
    def check(ctx: Context) -> bool:
        return ctx.headers.get("X-Token") == "ok"

    return app


def raw_session(port: int, request: bytes, timeout: float = 5.0) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Send raw bytes; read the HTTP head and then every frame until the server closes TCP,
    answering its close frame as a client must."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data, []
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        frames: list[tuple[int, bytes]] = []
        while True:
            complete, rest = parse_frames(rest)
            for frame in complete:
                frames.append((frame.opcode, frame.payload))
                if frame.opcode == CLOSE:
                    sock.sendall(masked_frame(CLOSE, frame.payload[:2]))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            rest += chunk
    return head, frames


# -- 1. a refused connection reaches no handler ---------------------------------------------


def test_frames_pipelined_behind_a_refused_upgrade_reach_no_handler(serve) -> None:
    handled: list[str] = []
    server = serve(gated_app(handled))
    joins = [json.dumps({"type": "join", "room": f"r{i}"}).encode() for i in range(20)]
    frames = b"".join(masked_frame(TEXT, join) for join in joins)
    head, got = raw_session(server.port, upgrade_request() + frames)
    assert head.startswith(b"HTTP/1.1 101")
    assert [op for op, _ in got] == [CLOSE]  # no `joined`: nothing was handled
    assert close_code(got[0][1]) == 1008
    with connect(server.url, additional_headers={"X-Token": "ok"}) as ws:
        ws.send(json.dumps({"type": "join", "room": "lobby"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "joined"
    assert handled == ["lobby"]


def test_a_raw_app_that_closes_in_on_connect_gets_no_messages_and_keeps_its_code(serve) -> None:
    app = WebSocketApp()
    seen: list[Any] = []
    closed: list[int] = []
    done = threading.Event()

    @app.on_connect
    def refuse_it(conn: Connection) -> None:
        conn.close(1008, "who are you")

    @app.on_message
    def handle(conn: Connection, message: str | bytes) -> None:
        seen.append(message)
        conn.send("reply")  # would raise ConnectionClosed: a traceback per frame before

    @app.on_close
    def gone(conn: Connection, code: int, reason: str) -> None:
        closed.append(code)
        done.set()

    server = serve(app)
    head, got = raw_session(server.port, upgrade_request() + masked_frame(TEXT, b"x") * 50)
    assert head.startswith(b"HTTP/1.1 101")
    assert [op for op, _ in got] == [CLOSE] and close_code(got[0][1]) == 1008
    assert done.wait(5)
    assert seen == [] and closed == [1008]


# -- 2. the typed error path is bounded ----------------------------------------------------------


def test_validation_errors_are_capped_and_input_keys_cut(serve) -> None:
    server = serve(gated_app([]))
    with connect(server.url, additional_headers={"X-Token": "ok"}, max_size=None) as ws:
        key = "k" * 5000
        ws.send(json.dumps({"type": "tagged", "id": "t1", "counts": {key: "x"}, "items": ["bad"] * 130_000}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["code"] == "validation_error" and reply["id"] == "t1"
        assert reply["detail"] == "130001 invalid field(s)"
        assert len(reply["errors"]) == 20
        assert len(json.dumps(reply)) < 5000  # the 5,000-character key never comes back whole
        assert max(len(str(part)) for error in reply["errors"] for part in error["loc"]) <= 67
        # The connection is still usable after it.
        ws.send(json.dumps({"type": "join", "id": 2, "room": "a"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "joined", "id": 2, "room": "a"}


def test_a_large_frame_that_is_not_an_object_is_refused_without_validating(serve) -> None:
    server = serve(gated_app([]))
    with connect(server.url, additional_headers={"X-Token": "ok"}) as ws:
        ws.send("[" + ",".join(["{}"] * 100_000) + "]")
        assert json.loads(ws.recv(timeout=5))["detail"] == "a message must be a JSON object"
        ws.send("x" * 10_000)
        assert json.loads(ws.recv(timeout=5))["code"] == "invalid_json"


def test_typed_apps_take_1_mib_by_default_raw_apps_16(serve) -> None:
    typed = serve(gated_app([]))
    with connect(typed.url, additional_headers={"X-Token": "ok"}, max_size=None) as ws:
        ws.send(json.dumps({"type": "join", "room": "r" * (1 << 20)}))
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=5)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1009
    echo = WebSocketApp()
    echo.on_message(lambda conn, message: conn.send(len(message).__str__()))
    raw = serve(echo)
    with connect(raw.url, max_size=None) as ws:
        ws.send(b"\0" * (2 << 20))
        assert ws.recv(timeout=10) == str(2 << 20)


# -- 3. handshakes are counted -----------------------------------------------------------------


def test_silent_sockets_beyond_the_handshake_cap_are_closed_at_once(serve) -> None:
    server = serve(WebSocketApp(), max_connections=3, handshake_timeout=30)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
    try:
        # Wait until the server has taken the three (each is an actor in its handshake).
        deadline = time.monotonic() + 5
        while server.actor_count() < 3:
            assert time.monotonic() < deadline
        extra = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(5)]
        for sock in extra:
            assert sock.recv(10) == b""  # closed at once, unanswered
            sock.close()
        assert server.call(lambda: server.server.refused_sockets) == 5
        assert server.actor_count() == 3
    finally:
        for sock in held:
            sock.close()


def test_a_client_that_never_reads_a_big_page_loses_it_at_the_handshake_deadline(serve) -> None:
    app = App("pages")
    app.page("/big", b"x" * (8 << 20), "application/octet-stream")

    @app.handler
    def join(msg: Join, ctx: Context) -> Joined:
        return Joined(room=msg.room)

    server = serve(app, handshake_timeout=0.5)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert server.wait_all_gone(10)  # the actor let go
    finally:
        sock.close()


# -- 4. fragments ----------------------------------------------------------------------------------


def test_fragment_limit_has_a_default_and_closes_with_1009(serve) -> None:
    server = serve(WebSocketApp(), max_fragments=10)
    assert serve(WebSocketApp()).server.options.handshake.max_fragments == DEFAULT_MAX_FRAGMENTS
    with RawClient(server.port) as client:
        client.send_frame(BINARY, b"a", fin=False)
        for _ in range(10):
            client.send_frame(CONTINUATION, b"", fin=False)
        assert close_code(client.recv_until(CLOSE)) == 1009


# -- 5. a trickled frame does not keep a connection alive: test_keepalive.py -----------------


# -- 6. per-connection noise stays out of the default log ----------------------------------------


def test_refusals_and_protocol_errors_log_nothing_at_info(serve, caplog) -> None:
    app = App("pages")
    app.page("/", "<p>hi</p>")

    @app.handler
    def join(msg: Join, ctx: Context) -> Joined:
        return Joined(room=msg.room)

    server = serve(app, compression=True)
    caplog.set_level(logging.INFO, logger="websock_actors")
    huge = "permessage-deflate; " + "x" * 13_000 + "=="
    status, _, body = refuse(server.port, upgrade_request(extra=f"Sec-WebSocket-Extensions: {huge}\r\n"))
    assert status == 400 and len(body) < 300  # the 13 KiB header is not quoted back
    assert refuse(server.port, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert refuse(server.port, upgrade_request(extra="Sec-WebSocket-Version: 8\r\n"))[0] == 426
    with RawClient(server.port) as client:
        client.send_frame(0x3)  # a reserved opcode: a protocol error
        assert close_code(client.recv_until(CLOSE)) == 1002
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert [line for line in noisy if "serving" not in line] == []


# -- 7. plain HTTP ------------------------------------------------------------------------------------


def test_on_request_answers_plain_http_requests_too(serve) -> None:
    def health(request: Request) -> Response | None:
        if request.path == "/healthz":
            return Response(200, "OK", error_response(200).headers, b"ok\n")
        return None

    server = serve(WebSocketApp(), on_request=health)
    status, _, body = refuse(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"ok\n")
    assert refuse(server.port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 426  # a raw app's endpoint


# -- 9. deadlines that fire -----------------------------------------------------------------------------


def test_close_timeout_fires_while_the_peer_keeps_sending(serve) -> None:
    app = WebSocketApp()
    closed: list[tuple[int, str]] = []
    done = threading.Event()
    app.on_message(lambda conn, message: conn.close(4000, "bye") if message == "close me" else None)

    @app.on_close
    def gone(conn: Connection, code: int, reason: str) -> None:
        closed.append((code, reason))
        done.set()

    server = serve(app, close_timeout=0.5)
    with RawClient(server.port) as client:
        client.send_text("close me")
        assert close_code(client.recv_until(CLOSE)) == 4000
        # Never answer the close; keep the socket readable with pings every 50 ms.
        start = time.monotonic()
        while not done.is_set() and time.monotonic() - start < 5:
            try:
                client.send_frame(PING, b"p")
            except OSError:
                break
            done.wait(0.05)
        assert done.is_set() and closed == [(1006, "close handshake timed out")]


def test_a_peer_that_stops_reading_after_close_loses_its_greenlet(serve) -> None:
    app = WebSocketApp()
    done = threading.Event()

    @app.on_message
    def flood_then_close(conn: Connection, message: str | bytes) -> None:
        for _ in range(64):
            conn.send_frame(b"\x82\x7f" + (1 << 16).to_bytes(8, "big") + b"\0" * (1 << 16))
        conn.close(1000)

    app.on_close(lambda conn, code, reason: done.set())
    server = serve(app, close_timeout=0.5, max_queue_bytes=1 << 30)
    with RawClient(server.port, rcvbuf=4096) as client:
        client.send_text("go")
        assert done.wait(5)  # the 4 MiB it never reads do not hold the actor


def test_an_abort_interrupts_a_compat_client_whose_callback_is_stuck() -> None:
    release = threading.Event()
    closed = threading.Event()
    started = threading.Event()

    def stuck(client: Any, data: Any) -> None:
        import gevent

        started.set()
        while not release.is_set():
            gevent.sleep(0.05)

    server = WebSockThread(on_data_receive=stuck, on_connection_close=lambda c: closed.set()).start()
    try:
        with RawClient(server.port) as client:
            for i in range(200):  # the inbox holds 64: the connection actor blocks on the rest
                client.send_text(f"m{i}")
            assert started.wait(5)
            hub_server = server.server.server
            assert hub_server is not None
            conn = next(iter(hub_server.connections.values()))
            server.call(conn.abort, 1001, "going")
            deadline = time.monotonic() + 5
            while hub_server.connections:
                assert time.monotonic() < deadline, "the aborted connection's actor is still blocked"
                time.sleep(0.02)
    finally:
        release.set()
        server.stop()  # close_server in the hub waits for the connections to go
        assert not server.thread.is_alive(), "serve_forever did not return"


# -- 10. the mailbox counts bytes -------------------------------------------------------------------


def test_queued_text_is_counted_in_utf8_bytes(serve) -> None:
    app = WebSocketApp()
    ready = threading.Event()
    conns: list[Connection] = []

    @app.on_connect
    def keep(conn: Connection) -> None:
        conns.append(conn)
        ready.set()

    server = serve(app, max_queue_bytes=1000, overflow="drop")
    with connect(server.url):
        assert ready.wait(5)
        conn = conns[0]

        def queue_twice() -> int:
            conn.send("€" * 300)  # 900 bytes, 300 characters
            conn.send("€" * 300)  # would be 1,800 bytes queued: over the 1,000
            return conn.dropped

        assert server.call(queue_twice) == 1


# -- 12. request models need an id -------------------------------------------------------------------


class Plain(BaseModel):  # a plain pydantic model, not a Message: it has no `id`
    type: Literal["plain"]


def test_a_request_model_without_an_id_is_refused_at_registration() -> None:
    app = App()
    with pytest.raises(ConfigurationError, match="needs an `id` field"):

        @app.handler
        def plain(msg: Plain, ctx: Context) -> None: ...


# -- found by fuzzing ------------------------------------------------------------------------------


def test_fuzz_findings_stay_fixed() -> None:
    from websock_actors.errors import InvalidMessage, RemoteHandshakeRefusal
    from websock_actors.protocol import parse_response

    app = gated_app([])
    app.router.build()
    for frame in (b'{"type":' + b"9" * 4300 + b"}", b'{"type":"\\u0000"}'):
        with pytest.raises(InvalidMessage) as info:
            app.router.decode(frame)  # a numeric tag is cut; the placeholder tag is no message
        assert info.value.code in ("unknown_type", "invalid_json") and len(info.value.detail) <= 100
    for answer in (b"HTTP/1.1 " + b"1" * 4301 + b" OK\r\n\r\n", b"HTTP/1.1 0000101 OK\r\n\r\n"):
        with pytest.raises(RemoteHandshakeRefusal):
            parse_response(answer)  # not int()'s ValueError, and not read as 101
