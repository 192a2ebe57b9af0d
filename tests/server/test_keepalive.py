"""Keepalive over real sockets: the server's pings, the close of a peer that does not answer
them, and what does and does not count as an answer (a steady message, a trickled frame)."""

from __future__ import annotations

import logging
import threading
import time

from websockets.sync.client import connect

from websock_actors import WebSocketApp

from ..support.apps import RecordingEchoApp
from ..support.raw import BINARY, CLOSE, PING, PONG, TEXT, RawClient, close_code, masked_frame

# -- pings, and peers that answer them or not ---------------------------------------------


def test_keepalive_closes_peer_that_never_answers_pings(serve):
    app = RecordingEchoApp()
    server = serve(app, ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port, timeout=3.0) as client:
        # Each read must complete within the socket timeout: a bounded time overall.
        op, payload = client.recv_frame()
        assert (op, payload) == (PING, b"keepalive")
        op, payload = client.recv_frame()
        assert op == CLOSE
        assert close_code(payload) == 1011
        client.expect_eof()
    assert app.all_closed.wait(5)
    assert app.closes[0][0] == 1011


def test_keepalive_spares_peer_that_answers_pings(serve):
    app = RecordingEchoApp()
    server = serve(app, ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port, timeout=3.0) as client:
        for _ in range(4):
            op, payload = client.recv_frame()
            assert op == PING
            client.send_frame(PONG, payload)
        client.send_text("alive")
        assert client.recv_until(TEXT) == b"alive"
        assert server.call(lambda: app.conns[0].open)
        assert app.closes == []


class _PingCounter(logging.Handler):
    def __init__(self, wanted: int) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.wanted = wanted
        self.done = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("< PING"):
            self.count += 1
            if self.count >= self.wanted:
                self.done.set()


def test_keepalive_keeps_a_responsive_websockets_client_open(serve):
    app = RecordingEchoApp()
    server = serve(app, ping_interval=0.2, ping_timeout=0.3)
    counter = _PingCounter(wanted=4)
    logger = logging.getLogger("tests.keepalive.client")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(counter)
    try:
        with connect(server.url, compression=None, ping_interval=None, logger=logger) as ws:
            # Four server pings, each answered by the client's automatic pong.
            assert counter.done.wait(10), f"only {counter.count} pings arrived"
            ws.send("still open")
            assert ws.recv(timeout=5) == "still open"
            assert server.call(lambda: app.conns[0].open)
    finally:
        logger.removeHandler(counter)
    assert app.all_closed.wait(5)
    assert app.closes[0][0] == 1000


# -- a trickled frame does not keep a connection alive (a hardening finding) -----------------


def test_a_frame_trickled_byte_by_byte_is_closed_by_keepalive(serve) -> None:
    server = serve(WebSocketApp(), ping_interval=0.3, ping_timeout=0.3)
    with RawClient(server.port) as client:
        frame = masked_frame(BINARY, b"x" * (1 << 20))
        stop = threading.Event()

        def trickle() -> None:
            for byte in frame[:200]:
                if stop.wait(0.02):
                    return
                try:
                    client.sock.send(bytes([byte]))
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            opcodes = []
            while True:
                op, payload = client.recv_frame()
                opcodes.append(op)
                if op == CLOSE:
                    break
            assert PING in opcodes and close_code(payload) == 1011
        finally:
            stop.set()
            sender.join(5)


def test_a_large_message_at_a_steady_rate_gets_through_keepalive(serve) -> None:
    echo = WebSocketApp()
    echo.on_message(lambda conn, message: conn.send(str(len(message))))
    server = serve(echo, ping_interval=0.3, ping_timeout=0.3)
    with RawClient(server.port) as client:
        frame = masked_frame(BINARY, b"x" * (1 << 20))
        for start in range(0, len(frame), 1 << 16):  # 16 pieces over about 0.3 s
            client.sock.sendall(frame[start : start + (1 << 16)])
            time.sleep(0.02)  # pacing the sender, not waiting for the server
        while True:
            op, payload = client.recv_frame()
            if op == TEXT:
                break
            assert op == PING
        assert payload == str(1 << 20).encode()


def test_pongs_keep_a_quiet_connection_alive(serve) -> None:
    server = serve(WebSocketApp(), ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port) as client:
        for _ in range(4):  # about 1.5 s: several intervals
            payload = client.recv_until(PING)
            client.send_frame(PONG, payload)
        client.send_text("still here")  # the connection is open
        client.send_close(1000)
        assert close_code(client.recv_until(CLOSE)) == 1000
