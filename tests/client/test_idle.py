"""An idle client connection (nobody in `recv`, `request`, `ping`) still answers: the server's
close, its pings, and reads its pushes, while the thread's gevent hub runs. The clients are in
the test's thread, not monkey-patched; the server in its own thread, stopped from gevent's
thread pool so that this thread's hub runs meanwhile (as in any gevent program)."""

from __future__ import annotations

import queue
import time

import gevent
import pytest
from gevent.event import Event

from examples.chat import app as chat_app
from examples.echo import app as echo_app
from websock_actors import Connection, WebSocketApp
from websock_actors.client import ClientConnection, connect

pytestmark = pytest.mark.timeout(60)

IDLE_CLIENTS = 100
DRAIN_TIMEOUT = 10.0  # the server's wait for the clients' close replies, the issue's 10 s


def test_a_drain_of_idle_clients_takes_no_close_timeout(serve) -> None:
    server = serve(echo_app)
    clients = [connect(server.url) for _ in range(IDLE_CLIENTS)]
    assert server.actor_count() == IDLE_CLIENTS
    start = time.monotonic()
    gevent.get_hub().threadpool.apply(server.stop, (DRAIN_TIMEOUT,))
    drain = time.monotonic() - start
    # Each one answered the server's close by itself: nobody read in this thread meanwhile.
    assert [ws.close_code for ws in clients] == [1001] * IDLE_CLIENTS
    assert all(ws.closed for ws in clients)
    # Milliseconds on an idle box; the margin is for a loaded one, far below the 10 s.
    assert drain < 1.0, f"the drain of {IDLE_CLIENTS} idle clients took {drain:.2f} s"


def test_an_idle_connection_answers_the_servers_pings(serve) -> None:
    closes: queue.Queue[int] = queue.Queue()
    app = WebSocketApp()

    @app.on_message
    def echo(conn: Connection, message: str | bytes) -> None:
        conn.send(message)

    @app.on_close
    def closed(conn: Connection, code: int, reason: str) -> None:
        closes.put(code)

    # The server drops a peer that leaves a ping unanswered for 0.2 s (1011).
    server = serve(app, ping_interval=0.05, ping_timeout=0.2)
    with connect(server.url) as ws:
        gevent.sleep(1.0)  # idle on purpose: several pings come and must be answered meanwhile
        assert not ws.closed
        assert closes.empty()
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    assert closes.get(timeout=5) == 1000


def test_pushes_reach_on_push_while_nobody_reads(serve) -> None:
    server = serve(echo_app)
    pushed = Event()
    got: list[str | bytes] = []

    def on_push(message: str | bytes) -> None:
        got.append(message)
        pushed.set()

    with connect(server.url, on_push=on_push, max_queue=4) as ws:
        ws.send("echo me")
        assert pushed.wait(5), "the echo was not read while nobody waited on the connection"
        assert got == ["echo me"]
        assert ws.recv(timeout=0) == "echo me"  # queued for recv as well


def test_an_idle_connection_notices_the_end_of_the_stream(serve) -> None:
    app = WebSocketApp()

    @app.on_message
    def drop(conn: Connection, message: str | bytes) -> None:
        conn.abort()  # TCP ends without a close frame

    server = serve(app)
    ws: ClientConnection = connect(server.url)
    ws.send("drop")
    deadline = time.monotonic() + 5
    while not ws.closed and time.monotonic() < deadline:
        gevent.sleep(0.01)  # polls the state only: this thread's hub runs, nobody reads
    assert ws.closed and ws.close_code == 1006


def test_the_session_message_is_kept_from_recv_and_on_push(serve) -> None:
    """Without `resume` too: a typed server's first message sets `session`, nothing else."""
    server = serve(chat_app)
    got: list[str | bytes] = []
    with connect(server.url, on_push=got.append) as ws:
        ws.ping()  # the session message came first: read by now
        assert isinstance(ws.session, str) and ws.session
        assert got == []
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)


def test_idle_read_delay_reads_later_in_one_go(serve) -> None:
    server = serve(echo_app)
    arrived: list[float] = []
    pushed = [Event(), Event()]

    def on_push(message: str | bytes) -> None:
        arrived.append(time.monotonic())
        pushed[0 if len(arrived) <= 2 else 1].set()

    with connect(server.url, on_push=on_push, idle_read_delay=0.3) as ws:
        sent = time.monotonic()
        ws.send("one")
        ws.send("two")
        assert pushed[0].wait(5) and len(arrived) == 2
        # Read together, once the delay had passed: not one read per message as it came.
        assert arrived[0] - sent >= 0.25
        assert arrived[1] - arrived[0] < 0.05
        sent = time.monotonic()
        ws.send("three")  # the next idle read waits its own delay again
        assert pushed[1].wait(5)
        assert arrived[2] - sent >= 0.25
        assert [ws.recv(timeout=0) for _ in range(3)] == ["one", "two", "three"]
        ws.send("four")
        assert ws.recv(timeout=0.2) == "four"  # a waiter reads at once, whatever the delay
    # A drain is answered within the delay.
    server = serve(echo_app)
    clients = [connect(server.url, idle_read_delay=0.2) for _ in range(20)]
    start = time.monotonic()
    gevent.get_hub().threadpool.apply(server.stop, (DRAIN_TIMEOUT,))
    assert time.monotonic() - start < 1.5
    assert [ws.close_code for ws in clients] == [1001] * 20


@pytest.mark.parametrize("delay", [0.0, 0.1])
def test_a_reopened_connection_reads_by_itself_again(serve, delay: float) -> None:
    app = WebSocketApp()

    @app.on_message
    def echo_or_restart(conn: Connection, message: str | bytes) -> None:
        if message == "restart":
            conn.close(1012, "restarting")
        else:
            conn.send(message)

    server = serve(app)
    pushed = Event()
    with connect(server.url, reconnect=True, on_push=lambda m: pushed.set(), idle_read_delay=delay) as ws:
        ws.send("restart")
        deadline = time.monotonic() + 5
        while not ws.closed and time.monotonic() < deadline:
            gevent.sleep(0.01)  # polls the state only: the close is read by itself
        assert ws.close_code == 1012
        ws.send("back")  # reopens
        assert ws.reconnects == 1
        assert pushed.wait(5), "the reopened connection was not read while nobody waited"
        assert ws.recv(timeout=0) == "back"
