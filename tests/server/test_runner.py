"""The shared runner (server/runner.py) in a turn of the event loop.

It runs after that turn's read callbacks, before the callbacks the hub had queued. A
broadcast's members are woken by such callbacks; a sender's next messages, read in the same
turn, then reach their mailboxes before they write, and go out in the same writes. And when a
handler waits, the other connections read in its turn get a new runner at once.

Real connections over socketpairs, driven by this process's own hub: what happens within one
turn is what is checked, so nothing here may wait on another thread.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import gevent
import gevent.event
import gevent.socket
import pytest
from gevent.hub import get_hub

from websock_actors import Connection, WebSocketApp
from websock_actors.protocol.connection import Role, WebSocketConnection
from websock_actors.server.options import ConnectionOptions
from websock_actors.server.runner import runner_for
from websock_actors.server.transport import WAIT_READ

from ..support.raw import TEXT, masked_frame

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


Pair = tuple[socket.socket, socket.socket]


def parked_for_the_runner(ours: socket.socket, app: WebSocketApp) -> Connection:
    """A server connection over `ours`, open and parked as its actor leaves it for the shared
    runner: its read watcher queues it in the runner of this process's hub."""
    conn = Connection(ours, ("127.0.0.1", 0), app, ConnectionOptions())
    conn._start_protocol(WebSocketConnection(Role.SERVER))
    conn._open = True
    conn._wait_state = WAIT_READ
    conn._read_watcher = get_hub().loop.io(ours.fileno(), 1)
    conn._read_watcher.start(runner_for(get_hub()).on_readable, conn)
    return conn


def test_the_runner_reads_before_the_callbacks_queued_earlier(pair: Pair) -> None:
    order: list[str] = []
    both = gevent.event.Event()

    def note(what: str) -> None:
        order.append(what)
        if len(order) == 2:
            both.set()

    app = WebSocketApp(shared_runner=True)

    @app.on_message
    def echo(conn: Connection, message: str | bytes) -> None:
        note(f"handler {message}")
        conn.send(message)

    ours, peer = pair
    loop = get_hub().loop
    conn = parked_for_the_runner(ours, app)

    # Another socket ready in the same turn, whose callback runs first (a higher priority)
    # and queues a callback of the hub, as a broadcast's wake of a member does.
    other, other_peer = socket.socketpair()
    waker = loop.io(other.fileno(), 1, priority=loop.MAXPRI)

    def on_other() -> None:
        other.recv(16)
        waker.stop()
        loop.run_callback(note, "queued callback")

    waker.start(on_other)
    try:
        other_peer.send(b"x")
        peer.send(masked_frame(TEXT, b"hello"))
        assert both.wait(5)
        assert order == ["handler hello", "queued callback"]
        assert peer.recv(64) == bytes((0x81, 5)) + b"hello"
    finally:
        conn._read_watcher.stop()
        waker.close()
        other.close()
        other_peer.close()


def test_a_handler_that_waits_leaves_the_others_of_its_turn_to_a_new_runner() -> None:
    """Three connections read in one turn, each handler waiting until all three have started:
    while one waits, the others still queued for that turn are served by a new runner at once,
    not when some later read wakes the runner (or never, when no other client sends)."""
    app = WebSocketApp(shared_runner=True)
    started: list[Connection] = []
    all_started = gevent.event.Event()

    @app.on_message
    def wait_for_the_others(conn: Connection, message: str | bytes) -> None:
        started.append(conn)
        if len(started) == 3:
            all_started.set()
        conn.send("together" if all_started.wait(5) else "alone")

    pairs = [socket.socketpair() for _ in range(3)]
    conns = [parked_for_the_runner(ours, app) for ours, _peer in pairs]
    try:
        for _ours, peer in pairs:  # no switch in between: the hub reads all three in one turn
            peer.send(masked_frame(TEXT, b"go"))
        assert all_started.wait(10)
        for _ours, peer in pairs:  # a gevent socket over the same descriptor: the hub runs meanwhile
            waiting = gevent.socket.socket(fileno=peer.fileno())
            waiting.settimeout(10)
            try:
                assert waiting.recv(64) == bytes((0x81, 8)) + b"together"
            finally:
                waiting.detach()
    finally:
        for conn in conns:
            conn._read_watcher.stop()
        for ours, peer in pairs:
            ours.close()
            peer.close()
