"""Inline handlers (`Application.inline`): the hub runs them in the read watcher's callback,
and hands to the connection's actor whatever it cannot finish without waiting. The same
tests run with the shared runner (`Application.shared_runner`, server/runner.py), which hands
off the same way from a greenlet that may wait."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import gevent
import pytest
from gevent.hub import get_hub
from websockets.sync.client import connect

from websock_actors import App, ConfigurationError, Connection, Context, Message, WebSocketApp
from websock_actors.testing import ServerThread
from websock_actors.typed.rooms import LocalRooms

from ..support.raw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawClient, close_code, masked_frame

pytestmark = pytest.mark.timeout(60)

Serve = Callable[..., ServerThread]


class InlineEcho(WebSocketApp):
    """An inline echo that records where its handler ran and how connections closed."""

    reader = "inline"  # or "runner": the shared runner (the `reader` fixture sets it)

    def __init__(self) -> None:
        super().__init__(inline=self.reader == "inline", shared_runner=self.reader == "runner")
        self.ran_in_hub: list[bool] = []
        self.ran_in_actor: list[bool] = []
        self.closes: list[tuple[int, str]] = []
        self.closed = threading.Event()
        self.conns: list[Connection] = []

        @self.on_connect
        def connected(conn: Connection) -> None:
            self.conns.append(conn)

        @self.on_message
        def echo(conn: Connection, message: str | bytes) -> None:
            self.ran_in_hub.append(gevent.getcurrent() is get_hub())
            self.ran_in_actor.append(gevent.getcurrent() is conn._greenlet)
            self.reply(conn, message)

        @self.on_close
        def closed(conn: Connection, code: int, reason: str) -> None:
            self.closes.append((code, reason))
            self.closed.set()

    def reply(self, conn: Connection, message: str | bytes) -> None:
        conn.send(message)


@pytest.fixture(autouse=True, params=["inline", "runner"])
def reader(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: messages read in the hub, and in the shared runner."""
    InlineEcho.reader = request.param
    yield request.param
    InlineEcho.reader = "inline"


def test_messages_run_in_the_hub_and_are_answered_in_order(serve: Serve, reader: str) -> None:
    app = InlineEcho()
    server = serve(app)
    with RawClient(server.port) as client:
        client.send_text("one")
        assert client.recv_frame() == (TEXT, b"one")
        # Pipelined in one write: text, binary, a fragmented text, then text again.
        batch = (
            masked_frame(TEXT, b"two")
            + masked_frame(BINARY, b"\x00\x01")
            + masked_frame(TEXT, b"thr", fin=False)
            + masked_frame(CONTINUATION, b"ee")
            + masked_frame(TEXT, b"four")
        )
        client.sock.sendall(batch)
        got = [client.recv_frame() for _ in range(4)]
        assert got == [(TEXT, b"two"), (BINARY, b"\x00\x01"), (TEXT, b"three"), (TEXT, b"four")]
    # The first follows the handshake, in the actor; the runner is a greenlet of its own.
    assert app.ran_in_hub and all(in_hub == (reader == "inline") for in_hub in app.ran_in_hub[1:])


def test_a_ping_among_messages_is_answered_in_order(serve: Serve) -> None:
    app = InlineEcho()
    server = serve(app)
    with RawClient(server.port) as client:
        client.send_text("warm")
        assert client.recv_frame() == (TEXT, b"warm")
        client.sock.sendall(masked_frame(TEXT, b"a") + masked_frame(PING, b"p") + masked_frame(TEXT, b"b"))
        assert [client.recv_frame() for _ in range(3)] == [(TEXT, b"a"), (PONG, b"p"), (TEXT, b"b")]
        client.send_text("after")  # back to inline after the hand-off
        assert client.recv_frame() == (TEXT, b"after")
    # The message before the ping is answered by the reader, the rest of the read from the
    # ping on by the actor (however the bytes were split into reads).
    assert app.ran_in_actor[1:3] == [False, True]


def test_the_closing_handshake_and_the_end_of_the_stream(serve: Serve) -> None:
    app = InlineEcho()
    server = serve(app)
    with RawClient(server.port) as client:
        client.send_text("x")
        assert client.recv_frame() == (TEXT, b"x")
        client.send_close(4001, "done")
        assert close_code(client.recv_until(CLOSE)) == 4001
        client.expect_eof()
    assert app.closed.wait(5)
    assert app.closes == [(4001, "done")]

    app.closed.clear()
    with RawClient(server.port) as client:
        client.send_text("y")
        assert client.recv_frame() == (TEXT, b"y")
        client.sock.shutdown(socket.SHUT_WR)  # no close frame: the transport just ends
        assert app.closed.wait(5)
    assert app.closes[-1][0] == 1006


def test_a_protocol_error_closes_like_without_inline(serve: Serve) -> None:
    server = serve(InlineEcho())
    with RawClient(server.port) as client:
        client.send_text("ok")
        assert client.recv_frame() == (TEXT, b"ok")
        client.sock.sendall(masked_frame(TEXT, b"good") + masked_frame(TEXT, b"\xff\xfe"))  # invalid UTF-8
        assert client.recv_frame() == (TEXT, b"good")
        assert close_code(client.recv_until(CLOSE)) == 1007


def test_a_handler_that_closes_or_fails(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    class Closing(InlineEcho):
        def reply(self, conn: Connection, message: str | bytes) -> None:
            if message == "bye":
                conn.send("leaving")
                conn.close(4000, "bye")
            elif message == "boom":
                raise RuntimeError("boom")
            else:
                conn.send(message)

    server = serve(Closing())
    with RawClient(server.port) as client:
        client.send_text("a")
        assert client.recv_frame() == (TEXT, b"a")
        client.send_text("bye")
        assert client.recv_frame() == (TEXT, b"leaving")
        assert close_code(client.recv_until(CLOSE)) == 4000
    with caplog.at_level(logging.ERROR, logger="websock_actors"), RawClient(server.port) as client:
        client.send_text("a")
        assert client.recv_frame() == (TEXT, b"a")
        client.send_text("boom")
        assert close_code(client.recv_until(CLOSE)) == 1011
    assert "message handler failed" in caplog.text


def test_a_handler_that_blocks_fails_its_connection_only(
    serve: Serve, caplog: pytest.LogCaptureFixture, reader: str
) -> None:
    class Sleepy(InlineEcho):
        def reply(self, conn: Connection, message: str | bytes) -> None:
            if message == "nap":
                gevent.sleep(0.01)  # not allowed in the hub
            conn.send(message)

    server = serve(Sleepy())
    with (
        caplog.at_level(logging.ERROR, logger="websock_actors"),
        RawClient(server.port) as bystander,
        RawClient(server.port) as client,
    ):
        for peer in (bystander, client):
            peer.send_text("hi")
            assert peer.recv_frame() == (TEXT, b"hi")
        client.send_text("nap")
        if reader == "runner":  # the runner may wait: the nap is answered
            assert client.recv_frame() == (TEXT, b"nap")
        else:
            assert close_code(client.recv_until(CLOSE)) == 1011
        bystander.send_text("still here")
        assert bystander.recv_frame() == (TEXT, b"still here")
    assert ("inline message handler blocked" in caplog.text) == (reader == "inline")


def test_a_reply_larger_than_the_socket_takes_is_finished_by_the_actor(serve: Serve) -> None:
    big = bytes(range(256)) * 16384  # 4 MiB: more than loopback takes without reading

    class Big(InlineEcho):
        def reply(self, conn: Connection, message: str | bytes) -> None:
            conn.send(big if message == "big" else message)

    server = serve(Big(), max_queue_bytes=1 << 16)
    with RawClient(server.port, rcvbuf=65536, timeout=10) as client:
        client.send_text("warm")
        assert client.recv_frame() == (TEXT, b"warm")
        client.sock.sendall(masked_frame(TEXT, b"big") + masked_frame(TEXT, b"after"))
        assert client.recv_frame() == (BINARY, big)  # whole and in order, though sent in parts
        assert client.recv_frame() == (TEXT, b"after")
        client.send_text("again")
        assert client.recv_frame() == (TEXT, b"again")


def test_replies_past_the_mailbox_bound_hand_the_rest_of_the_read_to_the_actor(serve: Serve) -> None:
    reply = b"r" * (256 * 1024)
    bound = 1 << 20

    class Amplifier(InlineEcho):
        """Answers every small message with 256 KiB, noting what was queued before."""

        def __init__(self) -> None:
            super().__init__()
            self.queued: list[int] = []

        def reply(self, conn: Connection, message: str | bytes) -> None:
            self.queued.append(conn._queued)
            conn.send(reply if message != "warm" else message)

    app = Amplifier()
    server = serve(app, max_queue_bytes=bound)
    with RawClient(server.port, rcvbuf=65536, timeout=20) as client:
        client.send_text("warm")
        assert client.recv_frame() == (TEXT, b"warm")
        client.sock.sendall(b"".join(masked_frame(TEXT, b"%d" % i) for i in range(64)))  # 16 MiB of replies
        for _ in range(64):
            assert client.recv_frame() == (BINARY, reply)
        client.send_text("warm")
        assert client.recv_frame() == (TEXT, b"warm")
    # The hub never queues much past the bound: the actor takes over and waits for the socket.
    assert max(app.queued) <= bound + len(reply) + 16, max(app.queued)


def test_mail_from_other_connections_and_a_stopping_server(serve: Serve) -> None:
    class Relay(InlineEcho):
        def reply(self, conn: Connection, message: str | bytes) -> None:
            for other in self.conns:
                if other is not conn:
                    other.send(message)  # into another actor's mailbox, from the hub

    app = Relay()
    server = serve(app)
    with RawClient(server.port) as first, RawClient(server.port) as second:
        first.send_text("to second")
        assert second.recv_frame() == (TEXT, b"to second")
        second.send_text("to first")
        assert first.recv_frame() == (TEXT, b"to first")
        server.stop()
        for client in (first, second):
            assert close_code(client.recv_until(CLOSE)) == 1001


def test_compression_with_context_takeover(serve: Serve) -> None:
    server = serve(InlineEcho(), compression=True)
    with connect(f"ws://127.0.0.1:{server.port}/", compression="deflate") as client:
        for text in ("a" * 1000, "b" * 1000, "a" * 1000):
            client.send(text)
            assert client.recv(timeout=5) == text


class Nap(Message):
    type: Literal["nap"]


class Where(Message):
    type: Literal["where"]


class Here(Message):
    type: Literal["here"] = "here"
    in_hub: bool


def test_typed_handlers_inline(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    app = App("inline", inline=True)

    @app.handler
    def where(msg: Where, ctx: Context) -> Here:
        return Here(in_hub=gevent.getcurrent() is get_hub())

    @app.handler
    def nap(msg: Nap, ctx: Context) -> None:
        gevent.sleep(0.01)  # blocks: not allowed inline

    server = serve(app)
    with caplog.at_level(logging.ERROR, logger="websock_actors"), connect(server.url) as ws:
        ws.send('{"type": "where", "id": 1}')  # in the actor if it came with the handshake
        assert json.loads(ws.recv(timeout=5))["id"] == 1
        ws.send('{"type": "where", "id": 2}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "here", "id": 2, "in_hub": True}
        ws.send('{"type": "nap", "id": 3}')
        reply = json.loads(ws.recv(timeout=5))
        assert (reply["id"], reply["code"]) == (3, "handler_error")
        ws.send('{"type": "where", "id": 4}')  # the connection stays usable
        assert json.loads(ws.recv(timeout=5))["id"] == 4
    assert "BlockingSwitchOutError" in caplog.text


def test_an_inline_typed_app_refuses_a_backplane() -> None:
    with pytest.raises(ConfigurationError, match="inline"):
        App("inline", inline=True, backplane=LocalRooms())
    app = App("inline", inline=True)
    with pytest.raises(ConfigurationError, match="inline"):
        app.use_backplane(LocalRooms())
