"""Limits over real sockets: message size and fragment count, and a slow reader that must
neither stall the other connections nor grow without bound (keepalive: test_keepalive.py)."""

from __future__ import annotations

import struct
import threading

import gevent
import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect

from websock_actors import Connection, WebSocketApp

from ..support.apps import RecordingEchoApp
from ..support.frames import parse_frames
from ..support.raw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawClient, close_code

# -- message size and fragments ---------------------------------------------------------


def test_message_over_max_message_size_closes_with_1009(serve):
    app = RecordingEchoApp()
    server = serve(app, max_message_size=1024)
    with connect(server.url, compression=None) as ws:
        ws.send("a" * 1024)  # exactly at the limit: fine
        assert ws.recv(timeout=5) == "a" * 1024
        ws.send(b"b" * 1025)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009
    assert app.all_closed.wait(5)
    assert app.closes[0][0] == 1009


def test_fragmented_message_over_max_message_size_closes_with_1009(serve):
    app = RecordingEchoApp()
    server = serve(app, max_message_size=1024)
    with connect(server.url, compression=None) as ws:
        ws.send(["x" * 256 for _ in range(4)])  # 1024 in four fragments: fine
        assert ws.recv(timeout=5) == "x" * 1024
        with pytest.raises(ConnectionClosedError) as info:
            # Each fragment small, the sum too large. The server's close can arrive while the
            # last fragments are still being sent: then send raises it, else recv does.
            ws.send([b"y" * 300 for _ in range(4)])
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


def test_oversized_frame_header_refused_before_payload(serve):
    """A frame announcing 10 MB is refused from its header: no need to send the payload."""
    server = serve(RecordingEchoApp(), max_message_size=1 << 20)
    with RawClient(server.port) as client:
        client.sock.sendall(struct.pack("!BBQ", 0x82, 0xFF, 10_000_000) + b"\x00\x00\x00\x00")
        op, payload = client.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 1009
        client.expect_eof()


def test_max_fragments_closes_with_1009(serve):
    app = RecordingEchoApp()
    server = serve(app, max_fragments=3)
    with RawClient(server.port) as client:
        client.send_frame(TEXT, b"a", fin=False)
        client.send_frame(CONTINUATION, b"b", fin=False)
        client.send_frame(CONTINUATION, b"c", fin=True)
        assert client.recv_frame() == (TEXT, b"abc")
        client.send_frame(BINARY, b"1", fin=False)
        client.send_frame(PING, b"between")  # control frames do not count
        client.send_frame(CONTINUATION, b"2", fin=False)
        client.send_frame(CONTINUATION, b"", fin=True)
        assert client.recv_frame() == (PONG, b"between")
        assert client.recv_frame() == (BINARY, b"12")
        for i, chunk in enumerate((b"w", b"x", b"y", b"z")):
            client.send_frame(CONTINUATION if i else TEXT, chunk, fin=False)
        op, payload = client.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 1009
        client.expect_eof()
    assert app.all_closed.wait(5)
    assert app.closes[0][0] == 1009
    # The websockets client ends a fragmented message with an empty final frame: two
    # chunks make three frames, three chunks make four.
    with connect(server.url, compression=None) as ws:
        ws.send(["a", "b"])
        assert ws.recv(timeout=5) == "ab"
        with pytest.raises(ConnectionClosedError) as info:
            ws.send(["a", "b", "c"])  # the close may come back while it is sending, as above
            ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


# -- a slow reader --------------------------------------------------------------------------


class FloodApp(WebSocketApp):
    """On "flood", a greenlet pushes 64 KiB binary messages to that connection until it is
    closed or `stop` is set; other messages are echoed."""

    CHUNK = b"z" * 65536

    def __init__(self) -> None:
        super().__init__()
        self.stop = threading.Event()
        self.blocked = threading.Event()  # the flood hit the queue limit
        self.done = threading.Event()
        self.closed = threading.Event()
        self.slow: Connection | None = None
        self.attempts = 0
        self.slow_close: tuple[int, str] | None = None

        @self.on_message
        def handle(conn: Connection, message: str | bytes) -> None:
            if message == "flood":
                self.slow = conn
                gevent.spawn(self._flood, conn)
            else:
                conn.send(message)

        @self.on_close
        def closed(conn: Connection, code: int, reason: str) -> None:
            if conn is self.slow:
                self.slow_close = (code, reason)
                self.closed.set()

    def _flood(self, conn: Connection) -> None:
        try:
            while conn.open and not self.stop.is_set() and self.attempts < 20_000:
                conn.send(self.CHUNK)
                self.attempts += 1
                if conn.dropped or not conn.open:
                    self.blocked.set()
                gevent.sleep(0.001)
        finally:
            self.blocked.set()
            self.done.set()


def _echo_round_trips(ws, n: int) -> None:
    for i in range(n):
        ws.send(f"ping {i}")
        assert ws.recv(timeout=3) == f"ping {i}"


@pytest.mark.timeout(60)
def test_slow_reader_with_overflow_close_is_closed_with_1013(serve):
    app = FloodApp()
    server = serve(app, max_queue_bytes=256 * 1024, overflow="close")
    with connect(server.url, compression=None) as fast, RawClient(server.port, rcvbuf=32768) as slow:
        _echo_round_trips(fast, 3)
        slow.send_text("flood")  # and then read nothing for a while
        assert app.blocked.wait(20)
        _echo_round_trips(fast, 20)
        assert app.closed.wait(10)
        assert app.slow_close is not None
        assert app.slow_close[0] == 1013
        assert app.attempts < 20_000  # closed because the queue filled, not because the flood ended
        # The slow client gets what was written before the abort, then the end of the stream.
        slow.settimeout(10)
        stream = slow._buffer + _read_all(slow)
        codes = [close_code(p) for op, p in _frames(stream) if op == CLOSE]
        assert codes in ([], [1013])  # the close frame is best effort: the send buffer was full
        _echo_round_trips(fast, 3)


@pytest.mark.timeout(60)
def test_slow_reader_with_overflow_drop_stays_open(serve):
    app = FloodApp()
    server = serve(app, max_queue_bytes=256 * 1024, overflow="drop")
    with connect(server.url, compression=None) as fast, RawClient(server.port, rcvbuf=32768) as slow:
        slow.send_text("flood")
        assert app.blocked.wait(20)
        # The flood goes on (dropping) while the other connection's round trips complete.
        _echo_round_trips(fast, 30)
        app.stop.set()
        assert app.done.wait(10)
        slow_conn = app.slow
        assert slow_conn is not None
        is_open, dropped = server.call(lambda: (slow_conn.open, slow_conn.dropped))
        assert is_open
        assert dropped > 0
        # Reading again, the slow client gets every message that was not dropped, whole and
        # in order; then the connection still works both ways.
        slow.settimeout(10)
        for _ in range(app.attempts - dropped):
            assert slow.recv_frame() == (BINARY, FloodApp.CHUNK)
        slow.send_text("marker")
        assert slow.recv_frame() == (TEXT, b"marker")
        assert server.call(lambda: slow_conn.dropped) == dropped
        assert not app.closed.is_set()


def test_burst_over_queue_limit_inside_handler_is_written_with_backpressure(serve):
    """A handler that queues more than max_queue_bytes at once gets it written, in order.

    The bound is for mail from other actors; the actor's own output is flushed as soon
    as it passes the bound, so memory stays bounded and nothing is lost or closed.
    """
    app = WebSocketApp()

    @app.on_message
    def burst(conn: Connection, message: str | bytes) -> None:
        for i in range(10):
            conn.send(bytes([i]) * 65536)

    server = serve(app, max_queue_bytes=128 * 1024, overflow="close")
    with connect(server.url, compression=None) as ws:
        ws.send("go")
        for i in range(10):
            assert ws.recv(timeout=5) == bytes([i]) * 65536
        ws.send("go")
        assert ws.recv(timeout=5) == bytes([0]) * 65536  # still open


def _read_all(client: RawClient) -> bytes:
    chunks = []
    while True:
        try:
            chunk = client.sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _frames(stream: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each frame; a truncated frame at the end is ignored."""
    return [(frame.opcode, frame.payload) for frame in parse_frames(stream)[0]]
