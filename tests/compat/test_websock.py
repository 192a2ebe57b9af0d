"""WebSock's callback API (`websock_actors.WebSocketServer`) against real clients."""

from __future__ import annotations

import inspect
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import websock_actors
from websock_actors import FrameType, WebSocketInvalidDataFrame, WebSocketInvalidHandshake, WebSocketServer
from websock_actors.compat import Client

from ..support.raw import BINARY, TEXT, RawClient, raw_exchange, status_of, upgrade_request
from ..support.websock_thread import WebSockThread


@pytest.fixture
def compat() -> Iterator[Callable[..., WebSockThread]]:
    started: list[WebSockThread] = []

    def start(**callbacks: Any) -> WebSockThread:
        server = WebSockThread(**callbacks).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def expect(events: queue.Queue[tuple[Any, ...]], kind: str) -> tuple[Any, ...]:
    while True:
        event = events.get(timeout=5)
        if event[0] == kind:
            return event


def test_constructor_signature_and_exports_match_websock() -> None:
    params = list(inspect.signature(WebSocketServer.__init__).parameters.items())[1:]
    assert [(name, p.default) for name, p in params] == [
        ("ip", ""),
        ("port", 80),
        ("on_data_receive", None),
        ("on_connection_open", None),
        ("on_connection_close", None),
        ("on_server_destruct", None),
        ("on_error", None),
        ("DEBUG", False),
    ]
    assert websock_actors.compat.WebSocketServer is WebSocketServer
    assert [m.value for m in FrameType] == [0, 1, 2, 8, 9, 10]
    methods = ("serve_forever", "serve_once", "send", "send_all", "recv", "ping")
    methods += ("close_client", "close_server")
    for name in methods:
        assert callable(getattr(WebSocketServer, name))
    assert WebSocketInvalidHandshake("bad", None).client is None
    assert WebSocketInvalidDataFrame("bad", "c").client == "c"


def test_callbacks_text_binary_and_close(compat) -> None:
    events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    holder: dict[str, WebSockThread] = {}

    def on_open(client: Client) -> None:
        events.put(("open", client.getpeername()))

    def on_data(client: Client, data: str | bytes) -> None:
        events.put(("data", data))
        kind = FrameType.TEXT if isinstance(data, str) else FrameType.BINARY
        holder["s"].server.send(client, data, kind)

    def on_close(client: Client) -> None:
        events.put(("close", client.getpeername()))

    server = compat(on_data_receive=on_data, on_connection_open=on_open, on_connection_close=on_close)
    holder["s"] = server
    with connect(server.url, compression=None, max_size=None) as ws:
        opened = expect(events, "open")
        assert opened[1] == ws.local_address[:2]
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        assert expect(events, "data")[1] == "héllo"
        big = os.urandom(200_000)
        ws.send(big)
        assert ws.recv(timeout=5) == big
        assert expect(events, "data")[1] == big  # bytes, not text
        ws.send(["frag", "mented"])
        assert ws.recv(timeout=5) == "fragmented"
    assert expect(events, "close")[1] == opened[1]
    assert events.empty()


def test_send_all_skips_sender_unless_echo(compat) -> None:
    holder: dict[str, WebSockThread] = {}

    def on_data(client: Client, data: str | bytes) -> None:
        holder["s"].server.send_all(client, data, echo=(data == "echo"))

    opened: queue.Queue[Client] = queue.Queue()
    server = compat(on_data_receive=on_data, on_connection_open=opened.put)
    holder["s"] = server
    with connect(server.url) as a, connect(server.url) as b, connect(server.url) as c:
        for _ in range(3):
            opened.get(timeout=5)
        a.send("to others")
        assert b.recv(timeout=5) == "to others"
        assert c.recv(timeout=5) == "to others"
        a.send("echo")
        assert a.recv(timeout=5) == "echo"  # the sender got only the echo, not "to others"
        assert b.recv(timeout=5) == "echo"
        assert c.recv(timeout=5) == "echo"


@pytest.mark.parametrize("by_address", [True, False])
def test_close_client_with_status_code(compat, by_address: bool) -> None:
    opened: queue.Queue[Client] = queue.Queue()
    closed: queue.Queue[Client] = queue.Queue()
    server = compat(on_connection_open=opened.put, on_connection_close=closed.put)
    with connect(server.url) as ws:
        client = opened.get(timeout=5)
        target = client.getpeername() if by_address else client
        server.call(server.server.close_client, target, 4001, "bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4001
        assert ws.close_reason == "bye"
    assert closed.get(timeout=5) is client
    assert client.getpeername() not in server.server.clients


def test_hard_close_drops_without_close_frame(compat) -> None:
    opened: queue.Queue[Client] = queue.Queue()
    server = compat(on_connection_open=opened.put)
    with connect(server.url) as ws:
        client = opened.get(timeout=5)
        server.call(server.server.close_client, client, None, None, True)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code is None or ws.close_code == 1006


def test_close_server_closes_clients_and_calls_destruct(compat) -> None:
    destructed = threading.Event()
    opened: queue.Queue[Client] = queue.Queue()
    server = compat(on_connection_open=opened.put, on_server_destruct=destructed.set)
    with connect(server.url) as a, connect(server.url) as b:
        opened.get(timeout=5)
        opened.get(timeout=5)
        server.call(server.server.close_server, 1001, "maintenance")
        for ws in (a, b):
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
            assert ws.close_code == 1001
            assert ws.close_reason == "maintenance"
    assert destructed.is_set()
    assert server.finished.wait(5)  # serve_forever returned
    assert server.server.alive is False


def test_bad_handshake_never_opens_and_reports_error(compat) -> None:
    opened: queue.Queue[Client] = queue.Queue()
    errors: queue.Queue[Exception] = queue.Queue()
    server = compat(on_connection_open=opened.put, on_error=errors.put)
    reply = raw_exchange(server.server.port, upgrade_request(key="c2hvcnQ="))
    assert status_of(reply) == 400
    error = errors.get(timeout=5)
    assert isinstance(error, WebSocketInvalidHandshake)
    assert opened.empty()


def test_protocol_error_reports_invalid_data_frame(compat) -> None:
    errors: queue.Queue[Exception] = queue.Queue()
    opened: queue.Queue[Client] = queue.Queue()
    server = compat(on_connection_open=opened.put, on_error=errors.put)
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as sock:
        sock.sendall(upgrade_request())
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        opened.get(timeout=5)
        sock.sendall(b"\x81\x05hello")  # unmasked client frame: a protocol error
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data[0] == 0x88 and data[2:4] == b"\x03\xea"  # close frame, code 1002 big-endian
    error = errors.get(timeout=5)
    assert isinstance(error, WebSocketInvalidDataFrame)
    assert error.code == 1002


def test_recv_inside_a_callback_takes_the_next_message(compat) -> None:
    holder: dict[str, WebSockThread] = {}
    seen: queue.Queue[tuple[str, Any]] = queue.Queue()

    def on_open(client: Client) -> None:
        first = holder["s"].server.recv(client)
        seen.put(("recv", first))

    def on_data(client: Client, data: str | bytes) -> None:
        seen.put(("data", data))

    server = compat(on_connection_open=on_open, on_data_receive=on_data)
    holder["s"] = server
    with connect(server.url) as ws:
        ws.send("one")
        ws.send("two")
        assert seen.get(timeout=5) == ("recv", "one")
        assert seen.get(timeout=5) == ("data", "two")


def test_callback_error_goes_to_on_error_and_connection_stays(compat) -> None:
    errors: queue.Queue[Exception] = queue.Queue()
    holder: dict[str, WebSockThread] = {}

    def on_data(client: Client, data: str | bytes) -> None:
        if data == "boom":
            raise RuntimeError("boom")
        holder["s"].server.send(client, data)

    server = compat(on_data_receive=on_data, on_error=errors.put)
    holder["s"] = server
    with connect(server.url) as ws:
        ws.send("boom")
        assert str(errors.get(timeout=5)) == "boom"
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"


def test_debug_does_not_touch_root_logger_or_write_a_log_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root_handlers = list(logging.getLogger().handlers)
    WebSocketServer("127.0.0.1", 0, DEBUG=True)
    assert logging.getLogger().handlers == root_handlers
    assert not (tmp_path / "ws.log").exists()
    assert logging.getLogger("websock_actors").level == logging.DEBUG
    logging.getLogger("websock_actors").setLevel(logging.NOTSET)


def test_serve_once_returns_after_one_client() -> None:
    opened: queue.Queue[Client] = queue.Queue()
    server = WebSocketServer("127.0.0.1", 0, on_connection_open=opened.put)
    started = threading.Event()
    returned = threading.Event()
    hub: dict[str, Any] = {}

    def run() -> None:
        server._ensure_started()
        hub["hub"] = gevent.get_hub()
        started.set()
        server.serve_once()
        returned.set()
        server.close_server()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        opened.get(timeout=5)
        assert not returned.is_set()
        ws.send("bye")
    assert returned.wait(5)
    thread.join(5)


def test_send_all_is_not_held_up_by_a_client_that_never_reads(compat) -> None:
    holder: dict[str, WebSockThread] = {}
    opened: queue.Queue[Client] = queue.Queue()

    def on_data(client: Client, data: str | bytes) -> None:
        # 40 x 64 KiB: more than the stalled client's socket buffers take, less than a mailbox holds
        for _ in range(40):
            holder["s"].server.send_all(client, "x" * 65536)
        holder["s"].server.send_all(client, "done")

    server = compat(on_data_receive=on_data, on_connection_open=opened.put)
    holder["s"] = server
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(upgrade_request())
        assert stalled.recv(4096).startswith(b"HTTP/1.1 101")
        with connect(server.url, max_size=None) as reader, connect(server.url) as sender:
            for _ in range(3):
                opened.get(timeout=5)
            sender.send("go")
            received = [reader.recv(timeout=10) for _ in range(41)]
            assert received[-1] == "done"
            assert all(len(m) == 65536 for m in received[:-1])


def test_close_server_from_a_data_callback_closes_at_once(compat) -> None:
    # The callback runs in the connection's own actor: a stop that waited there for every
    # connection to go would wait for itself until the stop timeout (10 s).
    holder: dict[str, Any] = {}

    def received(client: Client, data: Any) -> None:
        if data == "shutdown":
            holder["server"].close_server(1001, "bye")

    server = compat(on_data_receive=received)
    holder["server"] = server.server
    with connect(server.url) as ws, connect(server.url) as other:
        ws.send("shutdown")
        for peer in (ws, other):
            with pytest.raises(ConnectionClosed):
                peer.recv(timeout=5)
            assert peer.close_code == 1001
    assert server.finished.wait(5)  # serve_forever returned well before the stop timeout


def test_websock_send_of_bytes_is_binary_unless_text_is_asked_for() -> None:
    ready = threading.Event()

    def opened(client: Any) -> None:
        server = thread.server
        server.send(client, b"\xff\xfe")  # not UTF-8: a binary frame now
        server.send(client, "text")
        server.send(client, b"as text", 1)  # FrameType.TEXT: WebSock's own behaviour
        ready.set()

    thread = WebSockThread(on_connection_open=opened).start()
    try:
        with RawClient(thread.port) as client:
            assert ready.wait(5)
            assert client.recv_frame() == (BINARY, b"\xff\xfe")
            assert client.recv_frame() == (TEXT, b"text")
            assert client.recv_frame() == (TEXT, b"as text")
    finally:
        thread.stop()  # close_server in the hub waits for the connections to go
        assert not thread.thread.is_alive(), "serve_forever did not return"
