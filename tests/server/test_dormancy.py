"""Dormant actors (server/dormancy.py): an idle connection holds no greenlet; bytes, mail, a
close or a server stop start a new one, and the connection behaves as if its actor had been
parked all along. Each test runs for the three ways an app reads: in the actor, inline in the
hub, and in the shared runner."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable

import pytest

from websock_actors import Connection, WebSocketApp
from websock_actors.server import server_options
from websock_actors.testing import ServerThread

from ..support.dormancy import actor_greenlets, live_greenlets, sweep_idle
from ..support.raw import CLOSE, TEXT, RawClient, close_code

pytestmark = pytest.mark.timeout(60)

Serve = Callable[..., ServerThread]
IDLE = 20


class Echo(WebSocketApp):
    """Echoes text; "tell:<id>:<text>" sends <text> to connection <id> (mail from another actor)."""

    def __init__(self, reader: str) -> None:
        super().__init__(inline=reader == "inline", shared_runner=reader == "runner")
        self.conns: dict[int, Connection] = {}
        self.closes: list[tuple[int, str]] = []
        self.all_closed = threading.Event()
        self.expected_closes = 0

    def handle_connect(self, conn: Connection) -> None:
        self.conns[conn.id] = conn

    def handle_message(self, conn: Connection, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("tell:"):
            _, target, text = message.split(":", 2)
            self.conns[int(target)].send(text)
        else:
            conn.send(message)

    def handle_close(self, conn: Connection, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        if len(self.closes) >= self.expected_closes:
            self.all_closed.set()


@pytest.fixture(params=["actor", "inline", "runner"])
def reader(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def echo(client: RawClient, text: str) -> None:
    client.send_text(text)
    assert client.recv_until(TEXT) == text.encode()


def test_idle_connections_hold_no_greenlet(serve: Serve, reader: str) -> None:
    server = serve(Echo(reader))
    before = live_greenlets(server)
    clients = [RawClient(server.port) for _ in range(IDLE)]
    try:
        assert live_greenlets(server) - before < IDLE // 4  # open, and none has spoken yet
        for index, client in enumerate(clients):  # each is revived, in order
            for n in range(3):
                echo(client, f"{index}.{n}")
        sweep_idle(server)  # quiet again for a whole interval: dormant again
        assert live_greenlets(server) - before < IDLE // 4
    finally:
        for client in clients:
            client.close()


def test_a_burst_after_dormancy_keeps_its_order(serve: Serve, reader: str) -> None:
    server = serve(Echo(reader))
    with RawClient(server.port) as client:
        echo(client, "wake")
        sweep_idle(server)
        assert actor_greenlets(server) == [None]
        texts = [f"m{n}" for n in range(200)]
        for text in texts:
            client.send_text(text)
        assert [client.recv_until(TEXT).decode() for _ in texts] == texts


def test_a_busy_connection_keeps_its_greenlet(serve: Serve, reader: str) -> None:
    """No new greenlet per message: the actor's stays from one message to the next, and an
    app read inline or by the runner needs none at all."""
    server = serve(Echo(reader))
    with RawClient(server.port) as client:
        # The handshake's greenlet ends at its first park, having answered "wake" or not;
        # the one that answers "stay" keeps parking with its greenlet while busy.
        echo(client, "wake")
        echo(client, "stay")
        [first] = actor_greenlets(server)
        assert (first is not None) == (reader == "actor")
        for n in range(50):
            echo(client, str(n))
            assert actor_greenlets(server) == [first]


def test_mail_reaches_a_dormant_connection_without_a_greenlet(serve: Serve, reader: str) -> None:
    app = Echo(reader)
    server = serve(app)
    with RawClient(server.port) as quiet, RawClient(server.port) as talker:
        echo(talker, "hello")
        sweep_idle(server)
        [quiet_id] = [conn_id for conn_id in app.conns if conn_id != max(app.conns)]
        for n in range(3):
            talker.send_text(f"tell:{quiet_id}:pushed {n}")
            assert quiet.recv_until(TEXT) == f"pushed {n}".encode()
        quiet_conn = app.conns[quiet_id]
        assert server.call(lambda: quiet_conn._greenlet) is None  # written from the hub
        echo(quiet, "and back")


def test_a_push_larger_than_the_socket_takes_keeps_its_order(serve: Serve, reader: str) -> None:
    """Mail the hub cannot write at once goes to a new greenlet, which finishes the write."""
    app = Echo(reader)
    server = serve(app, max_queue_bytes=64 << 20)
    chunk = "x" * 65000
    with RawClient(server.port, rcvbuf=4096) as quiet, RawClient(server.port) as talker:
        echo(talker, "hello")
        sweep_idle(server)
        [quiet_id] = [conn_id for conn_id in app.conns if conn_id != max(app.conns)]
        quiet_conn = app.conns[quiet_id]
        texts = [f"{n:04d}{chunk}" for n in range(64)]  # about 4 MiB: far past the socket buffers
        server.call(lambda: [quiet_conn.send(text) for text in texts])
        assert [quiet.recv_until(TEXT).decode() for _ in texts] == texts
        echo(quiet, "and back")


def test_a_stop_closes_dormant_connections(reader: str) -> None:
    app = Echo(reader)
    app.expected_closes = IDLE
    server = ServerThread(app).start()
    clients = [RawClient(server.port) for _ in range(IDLE)]
    try:
        echo(clients[0], "spoke")
        sweep_idle(server)
        assert actor_greenlets(server) == [None] * IDLE
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        for client in clients:
            assert close_code(client.recv_until(CLOSE)) == 1001
            client.send_close(1001)
        stopper.join(10)
        assert not stopper.is_alive()
        assert app.all_closed.wait(5)
        assert sorted(code for code, _ in app.closes) == [1001] * IDLE
    finally:
        for client in clients:
            client.close()


def test_keepalive_pings_a_dormant_connection(serve: Serve, reader: str) -> None:
    app = Echo(reader)
    app.expected_closes = 1
    server = serve(app, ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port) as client:
        echo(client, "then silence")  # the client never answers the ping: 1011
        assert close_code(client.recv_until(CLOSE)) == 1011
        assert app.all_closed.wait(5)


def test_contextvars_of_the_actor_carry_over_its_dormancy(serve: Serve) -> None:
    """A raw handler runs in its connection's actor: what on_connect set in its context is
    still there after the actor was dormant and woke up in a new greenlet."""
    who: contextvars.ContextVar[str] = contextvars.ContextVar("who")
    app = WebSocketApp()
    app.on_connect(lambda conn: who.set(f"conn {conn.id}"))
    app.on_message(lambda conn, message: conn.send(who.get("lost")))
    server = serve(app)
    with RawClient(server.port) as client:
        client.send_text("who?")
        name = client.recv_until(TEXT).decode()
        assert name.startswith("conn ")
        sweep_idle(server)
        assert actor_greenlets(server) == [None]
        client.send_text("who now?")
        assert client.recv_until(TEXT).decode() == name


def test_contextvars_reach_the_runner_where_actors_keep_their_greenlets(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where `threading` is monkey-patched, actors are never dormant: a shared-runner handler
    (the typed App's default even there) still runs in its connection's context."""
    monkeypatch.setattr(server_options, "threads_are_greenlets", lambda: True)
    who: contextvars.ContextVar[str] = contextvars.ContextVar("who")
    app = WebSocketApp(shared_runner=True)
    app.on_connect(lambda conn: who.set(f"conn {conn.id}"))
    app.on_message(lambda conn, message: conn.send(who.get("lost")))
    server = serve(app)
    with RawClient(server.port) as one, RawClient(server.port) as two:
        names = []
        for client in (one, two, one, two):
            client.send_text("who?")
            names.append(client.recv_until(TEXT).decode())
        assert names[0] == names[2] != names[1] == names[3]
        assert names[0].startswith("conn ") and names[1].startswith("conn ")
        assert actor_greenlets(server) != [None, None]  # kept: not dormant
