"""The gevent client against the server (and against a scripted raw server for what ours never
sends), over real sockets on 127.0.0.1. The client runs in the test's thread without
monkey-patching: the server is in its own thread with its own hub."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest

from examples.chat import app as chat_app
from examples.echo import app as echo_app
from websock_actors import Connection, WebSocketApp, WebSocketError
from websock_actors.client import (
    Backoff,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    RemoteHandshakeRefusal,
    RequestError,
    RequestTimeout,
    connect,
)
from websock_actors.protocol import Response

from ..support.apps import RoomSequence
from ..support.frames import raw_frame, read_frame
from ..support.raw import free_port

pytestmark = pytest.mark.timeout(30)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Recorder(WebSocketApp):
    """Echo, with commands; records each connection's close (code, reason) and request headers."""

    def __init__(self) -> None:
        super().__init__()
        self.closes: queue.Queue[tuple[int, str]] = queue.Queue()
        self.headers: queue.Queue[dict[str, str]] = queue.Queue()
        self.conns: list[Connection] = []

        @self.on_connect
        def connected(conn: Connection) -> None:
            self.conns.append(conn)
            assert conn.request is not None
            self.headers.put({k.lower(): v for k, v in conn.request.headers})

        @self.on_message
        def message(conn: Connection, data: str | bytes) -> None:
            if isinstance(data, str) and data.startswith("close "):
                code, _, reason = data[6:].partition(" ")
                conn.close(int(code), reason)
            elif data != "ignore":
                conn.send(data)

        @self.on_close
        def closed(conn: Connection, code: int, reason: str) -> None:
            self.closes.put((code, reason))


# -- raw messages -------------------------------------------------------------------------


def test_text_binary_empty_and_large_messages(serve) -> None:
    server = serve(echo_app)
    with connect(server.url) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=5) == b"\x00\xff"
        ws.send(bytearray(b"ba"))
        ws.send(memoryview(b"mv"))
        ws.send("")
        assert [ws.recv(timeout=5) for _ in range(3)] == [b"ba", b"mv", ""]
        big = bytes(range(256)) * 8192  # 2 MiB: many reads on both sides
        ws.send(big)
        assert ws.recv(timeout=10) == big
        assert ws.subprotocol is None and ws.response is not None and ws.response.status == 101
    assert ws.closed and ws.close_code == 1000


def test_iteration_ends_on_a_normal_close(serve) -> None:
    server = serve(Recorder())
    with connect(server.url) as ws:
        for text in ("a", "b", "close 1000 done"):
            ws.send(text)
        assert list(ws) == ["a", "b"]
        assert (ws.close_code, ws.close_reason) == (1000, "done")
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=5)


def test_recv_timeout_leaves_the_connection_usable(serve) -> None:
    server = serve(echo_app)
    with connect(server.url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_many_greenlets_share_one_connection(serve) -> None:
    server = serve(echo_app)
    with connect(server.url) as ws:
        texts = [f"m{i}" for i in range(50)]

        def echo(text: str) -> str | bytes:
            ws.send(text)
            return ws.recv(timeout=5)

        greenlets = [gevent.spawn(echo, text) for text in texts]
        gevent.joinall(greenlets, timeout=10, raise_error=True)
        assert sorted(g.value for g in greenlets) == sorted(texts)


# -- ping, close codes ------------------------------------------------------------------------


def test_ping_returns_the_round_trip(serve) -> None:
    server = serve(echo_app)
    with connect(server.url) as ws:
        assert 0 < ws.ping() < 5
        assert ws.ping(b"custom") > 0
        with pytest.raises(ValueError):
            ws.ping(b"x" * 126)


def test_server_pings_are_answered_while_waiting(serve) -> None:
    # The server drops a peer that does not answer its pings within 0.2 s with 1011.
    server = serve(echo_app, ping_interval=0.05, ping_timeout=0.2)
    with connect(server.url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)  # reads (and answers) the server's pings meanwhile
        ws.send("alive")
        assert ws.recv(timeout=5) == "alive"


def test_client_close_code_and_reason_reach_the_server(serve) -> None:
    app = Recorder()
    server = serve(app)
    ws = connect(server.url)
    ws.close(4000, "bye now")
    assert app.closes.get(timeout=5) == (4000, "bye now")
    assert ws.closed and ws.close_code == 4000  # the server echoed our code
    ws.close()  # idempotent
    with pytest.raises(ConnectionClosed) as info:
        ws.send("x")
    assert info.value.code == 4000


def test_invalid_close_codes_are_refused_before_sending(serve) -> None:
    server = serve(echo_app)
    with connect(server.url) as ws:
        for code in (1004, 1006, 999, 1015, 5000):
            with pytest.raises(ValueError):
                ws.close(code)
        with pytest.raises(ValueError):
            ws.close(1000, "x" * 124)
        ws.send("open")
        assert ws.recv(timeout=5) == "open"


def test_server_close_is_answered_and_raised(serve) -> None:
    app = Recorder()
    server = serve(app)
    ws = connect(server.url)
    ws.send("close 4001 go away")
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=5)
    assert (info.value.code, info.value.reason) == (4001, "go away")
    assert app.closes.get(timeout=5)[0] == 4001
    with pytest.raises(ConnectionClosedError):
        list(ws)  # iteration raises on a close other than 1000/1001
    with pytest.raises(ConnectionClosed):
        ws.request({"type": "x"})


def test_server_shutdown_closes_with_1001(serve) -> None:
    server = serve(echo_app)
    ws = connect(server.url)
    stopping = threading.Thread(target=server.stop)
    stopping.start()  # the server waits for our close reply: we read meanwhile
    assert list(ws) == []
    assert ws.close_code == 1001
    stopping.join(10)


def test_messages_before_the_close_are_still_read(serve) -> None:
    server = serve(Recorder())
    ws = connect(server.url)
    ws.send("one")
    ws.send("close 1000")
    ws.close()
    assert ws.recv(timeout=5) == "one"
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)


# -- typed requests ------------------------------------------------------------------------


def test_request_reply_with_pushes_in_between(serve) -> None:
    server = serve(chat_app)
    with connect(server.url) as ann, connect(server.url) as bob:
        joined = ann.request({"type": "join", "room": "lobby", "name": "ann"})
        assert joined["type"] == "joined" and joined["members"] == ["ann"]
        assert bob.request({"type": "join", "room": "lobby", "name": "bob"})["members"] == ["ann", "bob"]
        # ann's own "message" push comes before her "said": the request skips it for recv.
        said = ann.request({"type": "say", "room": "lobby", "text": "hi"})
        assert said == {"type": "said", "id": said["id"]}
        assert ann.session is not None  # the chat's first message, `session`, is never queued
        ann_seq, bob_seq = RoomSequence(), RoomSequence()
        joined = ann_seq(json.loads(ann.recv(timeout=5)))
        assert joined == {"type": "member_joined", "room": "lobby", "name": "bob"}
        pushed = ann_seq(json.loads(ann.recv(timeout=5)))
        assert (pushed["type"], pushed["name"], pushed["text"]) == ("message", "ann", "hi")
        assert bob_seq(json.loads(bob.recv(timeout=5)))["text"] == "hi"
        assert ann.request({"type": "leave", "room": "lobby"})["type"] == "left"
        left = bob_seq(json.loads(bob.recv(timeout=5)))
        assert left == {"type": "member_left", "room": "lobby", "name": "ann"}


def test_request_accepts_pydantic_models_and_uses_fresh_ids(serve) -> None:
    from examples.chat import Join, Say

    server = serve(chat_app)
    with connect(server.url, max_queue=0) as ws:
        first = ws.request(Join(type="join", room="r", name="ann"))
        second = ws.request(Say(type="say", room="r", text="x"))
        assert first["type"] == "joined" and second["type"] == "said"
        assert first["id"] != second["id"]
        with pytest.raises(ValueError):
            ws.request({"room": "r"})  # no type


def test_error_replies_raise_request_error(serve) -> None:
    server = serve(chat_app)
    with connect(server.url) as ws:
        with pytest.raises(RequestError) as info:
            ws.request({"type": "say", "room": "nowhere", "text": "hi"})
        assert info.value.code == "not_in_room" and "nowhere" in info.value.detail
        assert info.value.message_id == info.value.reply["id"]
        with pytest.raises(RequestError) as info:
            ws.request({"type": "join", "room": "", "name": "ann"})
        assert info.value.code == "validation_error" and info.value.errors
        with pytest.raises(RequestError) as info:
            ws.request({"type": "dance"})
        assert info.value.code == "unknown_type"
        assert ws.request({"type": "join", "room": "r", "name": "ann"})["type"] == "joined"  # still open


def test_request_timeout_and_the_late_reply_is_dropped(serve) -> None:
    app = WebSocketApp()
    held: queue.Queue[tuple[Connection, dict[str, Any]]] = queue.Queue()

    @app.on_message
    def hold(conn: Connection, message: str | bytes) -> None:
        request = json.loads(message)
        if request["type"] == "hold":
            held.put((conn, request))
        else:
            conn.send(json.dumps({"type": "done", "id": request["id"]}))

    server = serve(app)
    with connect(server.url) as ws:
        with pytest.raises(RequestTimeout) as info:
            ws.request({"type": "hold"}, timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        conn, request = held.get(timeout=5)
        assert request["id"] == info.value.message_id
        server.call(conn.send, json.dumps({"type": "late", "id": request["id"]}))
        server.call(conn.send, json.dumps({"type": "push"}))
        assert ws.request({"type": "next"})["type"] == "done"
        assert json.loads(ws.recv(timeout=5)) == {"type": "push"}  # the late reply is gone
        # A requester killed while it waits (as Locust stops a user) leaves no reply behind.
        waiting = gevent.spawn(ws.request, {"type": "hold"})
        gevent.idle()  # it sends and parks in its read
        conn, request = held.get(timeout=5)
        waiting.kill()
        server.call(conn.send, json.dumps({"type": "late", "id": request["id"]}))
        server.call(conn.send, json.dumps({"type": "push"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "push"}
        assert not ws._requests._late


def test_concurrent_requests_are_matched_by_id(serve) -> None:
    """Replies come back in reverse order; each requester still gets its own."""
    app = WebSocketApp()
    batch: list[tuple[Connection, dict[str, Any]]] = []

    @app.on_message
    def reverse(conn: Connection, message: str | bytes) -> None:
        batch.append((conn, json.loads(message)))
        if len(batch) == 20:
            for c, request in reversed(batch):
                c.send(json.dumps({"type": "echoed", "id": request["id"], "n": request["n"]}))

    server = serve(app)
    with connect(server.url) as ws:
        greenlets = [gevent.spawn(ws.request, {"type": "echo", "n": n}) for n in range(20)]
        gevent.joinall(greenlets, timeout=10, raise_error=True)
        assert [g.value["n"] for g in greenlets] == list(range(20))


def test_on_push_and_the_bounded_queue(serve) -> None:
    server = serve(echo_app)
    seen: list[str | bytes] = []
    with connect(server.url, max_queue=2, on_push=seen.append) as ws:
        for text in "abc":
            ws.send(text)
        ws.send("d")
        ws.ping()  # its pong comes after the four echoes: all of them are read by then
        assert seen == ["a", "b", "c", "d"]
        assert (ws.recv(timeout=1), ws.recv(timeout=1), ws.dropped) == ("c", "d", 2)
    ws = connect(server.url, max_queue=0, on_push=seen.append)
    with pytest.raises(WebSocketError, match="max_queue"):
        ws.recv()
    ws.close()


# -- the opening handshake ------------------------------------------------------------------


def test_handshake_options_reach_the_server(serve) -> None:
    app = Recorder()
    server = serve(app, subprotocols=["chat.v2", "chat.v1"], origins=["http://example.test"])
    with connect(
        server.url + "room?x=1",
        subprotocols=["chat.v1", "other"],
        headers={"Authorization": "Bearer t"},
        origin="http://example.test",
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        headers = app.headers.get(timeout=5)
        assert headers["authorization"] == "Bearer t"
        assert headers["host"] == f"127.0.0.1:{server.port}"
        assert headers["sec-websocket-protocol"] == "chat.v1, other"
        assert app.conns[0].request is not None and app.conns[0].request.path == "/room?x=1"
    with pytest.raises(RemoteHandshakeRefusal) as info:
        connect(server.url, origin="http://evil.test")
    assert info.value.status == 403


def test_http_refusals_become_handshake_errors(serve) -> None:
    app = WebSocketApp()

    @app.on_request
    def refuse(request: Any) -> Response | None:
        from websock_actors.protocol import error_response

        return error_response(401, "who are you") if request.path == "/private" else None

    server = serve(app)
    with pytest.raises(RemoteHandshakeRefusal) as info:
        connect(server.url + "private")
    assert info.value.status == 401


def test_bad_urls() -> None:
    for url in ("http://127.0.0.1/", "ws:///path", "ws://127.0.0.1/#frag"):
        with pytest.raises(ValueError):
            connect(url)


def test_open_timeout_against_a_silent_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts into the backlog, never answers
        port = listener.getsockname()[1]
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{port}/", open_timeout=0.2)


def test_compression_is_negotiated_with_the_server(serve) -> None:
    server = serve(echo_app, compression=True)
    with connect(server.url, compression=True) as ws:
        assert ws._protocol.deflate is not None
        text = "compress me " * 1000
        ws.send(text)
        assert ws.recv(timeout=5) == text
    with connect(server.url) as plain:  # no offer: no extension
        assert plain._protocol.deflate is None
        plain.send("x" * 1000)
        assert plain.recv(timeout=5) == "x" * 1000


# -- reconnecting ---------------------------------------------------------------------------


def test_reconnect_after_the_server_drops_the_connection(serve) -> None:
    app = Recorder()
    server = serve(app)
    reopened: list[int] = []
    ws = connect(
        server.url,
        reconnect=Backoff(initial=0.01, max_attempts=3),
        on_reconnect=lambda conn: reopened.append(conn.reconnects),
    )
    ws.send("before")
    assert ws.recv(timeout=5) == "before"
    server.call(app.conns[0].close, 1012, "restarting")
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)  # what was in flight fails
    assert info.value.code == 1012
    ws.send("after")  # opens again first
    assert ws.recv(timeout=5) == "after"
    assert (ws.reconnects, reopened, len(app.conns)) == (1, [1], 2)
    ws.send("close 1000 the end")  # a normal close is final
    assert list(ws) == []
    with pytest.raises(ConnectionClosed):
        ws.send("x")


def test_connect_retries_with_backoff_then_gives_up() -> None:
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        connect(f"ws://127.0.0.1:{port}/", reconnect=Backoff(initial=0.001, max_attempts=2))


# -- what only a scripted server sends ------------------------------------------------------


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bytes | None = None) -> bytes:
    return raw_frame((0x80 if fin else 0) | opcode, payload, mask_key=mask)


def read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One client frame, read to its end and no further: (opcode, unmasked payload)."""
    frame = read_frame(sock, bytearray())
    assert frame.masked, "client frames are masked"
    return frame.opcode, frame.payload


@pytest.fixture
def scripted() -> Iterator[Callable[..., str]]:
    """`scripted(script, accept=None)`: a one-connection server in a thread. It answers the
    upgrade (with `accept` instead of the right Sec-WebSocket-Accept when given), then runs
    `script(sock)`; its exceptions fail the test."""
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(script: Callable[[socket.socket], None], accept: str | None = None) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def run() -> None:
            try:
                with listener, listener.accept()[0] as sock:
                    sock.settimeout(5)
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += sock.recv(4096)
                    key = next(
                        line.split(b":", 1)[1].strip()
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"sec-websocket-key:")
                    )
                    right = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
                    sock.sendall(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        + f"Sec-WebSocket-Accept: {accept or right}\r\n\r\n".encode()
                    )
                    script(sock)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return f"ws://127.0.0.1:{listener.getsockname()[1]}/"

    yield start
    for thread in threads:
        thread.join(10)
    if errors:
        raise errors[0]


def test_fragmented_message_with_a_ping_in_between(scripted) -> None:
    got: list[tuple[int, bytes]] = []

    def script(sock: socket.socket) -> None:
        sock.sendall(
            server_frame(0x1, b"frag", fin=False)
            + server_frame(0x9, b"in between")
            + server_frame(0x0, b"men", fin=False)
            + server_frame(0x0, "ted ✓".encode())
        )
        got.append(read_client_frame(sock))  # the pong
        sock.sendall(server_frame(0x8, struct.pack("!H", 1000)))
        got.append(read_client_frame(sock))  # the close reply; we end TCP first on return

    url = scripted(script)
    with connect(url) as ws:
        assert ws.recv(timeout=5) == "fragmented ✓"
        assert list(ws) == []
    assert got == [(0xA, b"in between"), (0x8, struct.pack("!H", 1000))]


def test_masked_server_frames_fail_the_connection_with_1002(scripted) -> None:
    got: list[tuple[int, bytes]] = []
    done = threading.Event()

    def script(sock: socket.socket) -> None:
        sock.sendall(server_frame(0x1, b"masked", mask=b"abcd"))
        got.append(read_client_frame(sock))
        done.set()

    url = scripted(script)
    ws = connect(url)
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1002
    ws.close()
    assert done.wait(5)
    assert got[0][0] == 0x8 and got[0][1][:2] == struct.pack("!H", 1002)


def test_wrong_accept_is_refused(scripted) -> None:
    url = scripted(lambda sock: None, accept=base64.b64encode(b"x" * 20).decode())
    with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
        connect(url)


def test_lost_transport_is_1006(scripted) -> None:
    url = scripted(lambda sock: sock.sendall(server_frame(0x1, b"last words")))
    ws = connect(url)
    assert ws.recv(timeout=5) == "last words"
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert info.value.code == 1006 and ws.close_code == 1006


def test_importing_the_client_patches_nothing() -> None:
    code = (
        "import websock_actors.client\n"
        "from gevent import monkey\n"
        "assert not monkey.is_anything_patched(), 'patched on import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_wss_with_a_trusted_certificate(tmp_path: Path) -> None:
    """wss:// against another implementation's TLS server (ours serves plain TCP)."""
    import ssl

    from websockets.sync.server import ServerConnection, serve

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-nodes", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    def echo(conn: ServerConnection) -> None:
        for message in conn:
            conn.send(message)

    with serve(echo, "127.0.0.1", 0, ssl=server_context) as tls_server:
        thread = threading.Thread(target=tls_server.serve_forever, daemon=True)
        thread.start()
        url = f"wss://127.0.0.1:{tls_server.socket.getsockname()[1]}/"
        with connect(url, ssl_context=ssl.create_default_context(cafile=str(cert))) as ws:
            ws.send("over TLS")
            assert ws.recv(timeout=5) == "over TLS"
            ws.send(b"\x00" * 100_000)
            assert ws.recv(timeout=5) == b"\x00" * 100_000
        assert ws.close_code == 1000
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(url)  # the default context does not trust a self-signed certificate
        tls_server.shutdown()
        thread.join(5)
