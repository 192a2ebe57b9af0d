"""Graceful shutdown: in process (`Server.stop`) and through the command line (SIGTERM)."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

import gevent
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from websock_actors import App, Connection, Context, Message, WebSocketApp, WebSocketError
from websock_actors.client import connect as client_connect

from ..support.apps import RecordingEchoApp
from ..support.raw import (
    BINARY,
    CLOSE,
    TEXT,
    RawClient,
    close_code,
    free_port,
    read_until_eof,
    split_response,
    upgrade_request,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_stop_closes_every_connection_with_1001_after_queued_messages(serve):
    app = RecordingEchoApp(expected=2)
    server = serve(app)
    srv = server.server
    with ExitStack() as stack:
        # A client still in the handshake when the server stops gets 503.
        pending = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        pending.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        clients = [stack.enter_context(connect(server.url, compression=None)) for _ in range(2)]
        assert app.all_connected.wait(5)
        for ws in clients:
            ws.send("before")
            assert ws.recv(timeout=5) == "before"

        def queue_then_stop() -> None:
            for conn in app.conns:
                conn.send("last words")
            srv.stop(5)

        # In the background: stop waits for every connection, the pending one included.
        server.call(lambda: gevent.spawn(queue_then_stop) and None)
        for ws in clients:
            assert ws.recv(timeout=5) == "last words"
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1001
        assert split_response(read_until_eof(pending))[0] == 503
        pending.close()
        assert server.join(10)  # serve_forever returns once stop has finished
        assert srv.stopped
    assert app.all_closed.wait(5)
    assert sorted(code for code, _ in app.closes) == [1001, 1001]
    # No longer accepting.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


@pytest.mark.timeout(60)
def test_stop_with_a_blocked_writer_delivers_its_queue_then_1001(serve):
    """A connection whose writes are blocked (its reader stalls) still gets everything
    queued before the stop, then the close, once its reader resumes."""
    chunk = b"s" * 65536
    state: dict[str, int] = {}
    blocked = threading.Event()

    app = RecordingEchoApp(expected=1)

    @app.on_message
    def fill(conn: Connection, message: str | bytes) -> None:
        def push() -> None:
            sent = 0
            while not conn.dropped and sent < 20_000:
                conn.send(chunk)
                sent += 1
                gevent.sleep(0.001)
            state["accepted"] = sent - conn.dropped
            blocked.set()

        gevent.spawn(push)

    server = serve(app, max_queue_bytes=256 * 1024, overflow="drop")
    srv = server.server
    with RawClient(server.port, rcvbuf=32768, timeout=10) as slow:
        slow.send_text("fill")
        assert blocked.wait(20)
        # Stop in the background: it waits for this connection, which waits for its reader.
        server.call(lambda: gevent.spawn(srv.stop, 10) and None)
        for _ in range(state["accepted"]):
            assert slow.recv_frame() == (BINARY, chunk)
        op, payload = slow.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 1001
        slow.send_close(1001)
        slow.expect_eof()
    assert app.all_closed.wait(10)
    assert app.closes[0][0] == 1001
    # Let stop finish before the fixture's teardown talks to the server's hub.
    assert server.join(10)
    assert srv.stopped


def _start_cli(port: int, stderr, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "websock_actors", "run", "examples.echo:app", "--port", str(port), *options],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def _lines(stream) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.timeout(60)
def test_cli_sigterm_closes_clients_with_1001_and_exits_0(tmp_path):
    port = free_port()
    with open(tmp_path / "stderr.log", "w+") as err:
        proc = _start_cli(port, err)
        try:
            lines = _lines(proc.stdout)
            line = lines.get(timeout=20)
            assert "serving" in line, line
            assert str(port) in line
            with ExitStack() as stack:
                url = f"ws://127.0.0.1:{port}/"
                clients = [stack.enter_context(connect(url, compression=None)) for _ in range(3)]
                for i, ws in enumerate(clients):
                    ws.send(f"hello {i}")
                    assert ws.recv(timeout=5) == f"hello {i}"
                proc.send_signal(signal.SIGTERM)
                for ws in clients:
                    with pytest.raises(ConnectionClosed) as info:
                        ws.recv(timeout=10)
                    assert info.value.rcvd is not None, info.value
                    assert info.value.rcvd.code == 1001
            assert proc.wait(timeout=15) == 0
            rest = []
            while (line := lines.get(timeout=5)) != "":
                rest.append(line)
            assert any("stopped" in line for line in rest), rest
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            err.seek(0)
            log = err.read()
        assert "Traceback" not in log, log


@pytest.mark.timeout(60)
def test_cli_sigint_refuses_a_handshake_in_progress_and_exits_0(tmp_path):
    port = free_port()
    with open(tmp_path / "stderr.log", "w+") as err:
        proc = _start_cli(port, err)
        try:
            lines = _lines(proc.stdout)
            assert "serving" in lines.get(timeout=20)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(upgrade_request()[:20])
                # Connections are accepted in order: once a later client is through its
                # handshake, the first one has been accepted and is waiting for its request.
                with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
                    ws.send("sync")
                    assert ws.recv(timeout=5) == "sync"
                    proc.send_signal(signal.SIGINT)
                    with pytest.raises(ConnectionClosed) as info:
                        ws.recv(timeout=10)
                    assert info.value.rcvd is not None
                    assert info.value.rcvd.code == 1001
                assert split_response(read_until_eof(sock))[0] == 503
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def test_echo_still_works_through_the_cli(tmp_path):
    port = free_port()
    with open(tmp_path / "stderr.log", "w+") as err:
        proc = _start_cli(port, err)
        try:
            assert "serving" in _lines(proc.stdout).get(timeout=20)
            with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
                ws.send("via cli")
                assert ws.recv(timeout=5) == "via cli"
                ws.send(b"\x01\x02")
                assert ws.recv(timeout=5) == b"\x01\x02"
            with RawClient(port) as raw:
                raw.send_text("raw")
                assert raw.recv_frame() == (TEXT, b"raw")
        finally:
            proc.terminate()
            assert proc.wait(15) == 0


def test_cli_origin_allow_list(tmp_path):
    port = free_port()
    with open(tmp_path / "stderr.log", "w+") as err:
        proc = _start_cli(port, err, "--origin", "https://chat.example", "--origin", "https://two.example")
        try:
            assert "serving" in _lines(proc.stdout).get(timeout=20)
            for origin in ("https://chat.example", "https://two.example"):
                with connect(f"ws://127.0.0.1:{port}/", origin=origin, compression=None) as ws:
                    ws.send("ok")
                    assert ws.recv(timeout=5) == "ok"
            with pytest.raises(InvalidStatus) as refused:
                connect(f"ws://127.0.0.1:{port}/", origin="https://evil.example", compression=None)
            assert refused.value.response.status_code == 403
        finally:
            proc.terminate()
            assert proc.wait(15) == 0


def test_stop_timeout_drops_a_peer_that_never_answers_the_close(serve):
    app = RecordingEchoApp(expected=1)
    server = serve(app, close_timeout=30)
    srv = server.server
    with RawClient(server.port, timeout=10) as silent:
        silent.send_text("hi")
        assert silent.recv_frame() == (TEXT, b"hi")
        # stop(0.5) returns although the peer never answers and close_timeout is long.
        server.call(srv.stop, 0.5, timeout=10)
        assert srv.stopped
        op, payload = silent.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 1001
        silent.expect_eof()
    assert app.all_closed.wait(5)
    assert app.closes[0][0] == 1001


class _Slow(Message):
    type: Literal["slow"]


class _Done(Message):
    type: Literal["done"] = "done"


def test_a_drain_answers_the_request_its_handler_runs_then_closes(serve):
    """A request answered before the drain's close frame was handled, one left unanswered was
    not: the close asked for while a handler runs waits for its reply."""
    entered, release = threading.Event(), threading.Event()
    app = App("drain")

    @app.handler
    def slow(msg: _Slow, ctx: Context) -> _Done:
        entered.set()
        while not release.is_set():  # the server's hub runs on meanwhile (the stop among it)
            gevent.sleep(0.005)
        return _Done()

    server = serve(app)
    srv = server.server
    with client_connect(server.url) as ws:
        ws.send('{"type": "slow", "id": 1}')
        assert entered.wait(5)

        def stop_then_release() -> None:
            gevent.spawn(srv.stop, 5.0, restart=True)  # closes every connection, then waits
            gevent.spawn(release.set)  # runs once the stop waits: the close was asked for

        server.call(stop_then_release)
        assert ws.recv_json(timeout=10) == {"type": "done", "id": 1}
        with pytest.raises(WebSocketError):
            ws.recv(timeout=10)
        assert ws.close_code == 1012
    assert server.join(10)  # the stop begun in the hub has finished


def test_a_drain_during_on_connect_closes_with_its_own_code(serve):
    """A connection the drain closes while the app's on_connect runs (and sends) keeps the
    drain's 1012: it is no internal error."""
    entered, release = threading.Event(), threading.Event()
    app = WebSocketApp()

    @app.on_connect
    def connected(conn: Connection) -> None:
        entered.set()
        while not release.is_set():
            gevent.sleep(0.005)
        conn.send("welcome")  # raises: the drain closed it meanwhile

    server = serve(app)
    srv = server.server
    with RawClient(server.port, timeout=10) as raw:
        assert entered.wait(5)

        def stop_then_release() -> None:
            gevent.spawn(srv.stop, 5.0, restart=True)
            gevent.spawn(release.set)

        server.call(stop_then_release)
        op, payload = raw.recv_frame()
        assert (op, close_code(payload)) == (CLOSE, 1012)
    assert server.join(10)
