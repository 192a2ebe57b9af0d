"""The typed App's default path: handlers run in the hub's shared runner (server/runner.py).

Many connections' handlers share one greenlet per turn of the event loop; a handler that waits
keeps that greenlet while the other connections go on, its own connection's messages keep
their order, and its burst to a peer that does not read is written with backpressure.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Literal

import gevent
import gevent.event
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from websock_actors import App, Context, Message


class Echo(Message):
    type: Literal["echo"]
    text: str


class Echoed(Message):
    type: Literal["echoed"] = "echoed"
    text: str


class Hold(Message):
    type: Literal["hold"]


class Release(Message):
    type: Literal["release"]


class Flood(Message):
    type: Literal["flood"]
    count: int


class Chunk(Message):
    type: Literal["chunk"] = "chunk"
    n: int
    data: str


class Escape(Message):
    type: Literal["escape"]


class Done(Message):
    type: Literal["done"] = "done"


def make_app() -> tuple[App, dict[str, Any]]:
    app = App("runner")
    seen: dict[str, Any] = {"greenlets": [], "actors": set()}
    released = gevent.event.Event()

    @app.on_connect
    def connected(ctx: Context) -> None:
        seen["actors"].add(id(gevent.getcurrent()))  # on_connect runs in the connection's actor

    @app.handler
    def echo(msg: Echo, ctx: Context) -> Echoed:
        seen["greenlets"].append(id(gevent.getcurrent()))
        return Echoed(text=msg.text)

    @app.handler
    def hold(msg: Hold, ctx: Context) -> Echoed:
        released.wait(10)  # a handler that waits: here for another connection's message
        return Echoed(text="held")

    @app.handler
    def release(msg: Release, ctx: Context) -> Echoed:
        released.set()
        return Echoed(text="released")

    @app.handler
    def flood(msg: Flood, ctx: Context) -> Done:
        for n in range(msg.count):
            ctx.send(Chunk(n=n, data="x" * 65536))
        return Done()

    @app.handler
    def escape(msg: Escape, ctx: Context) -> None:
        raise gevent.Timeout()  # a BaseException: past the handler's error reply

    return app, seen


def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return reply


def test_handlers_of_many_connections_run_in_one_shared_greenlet(serve) -> None:
    app, seen = make_app()
    server = serve(app)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(server.url)) for _ in range(20)]
        for round_ in range(3):
            for i, ws in enumerate(clients):
                ws.send(json.dumps({"type": "echo", "id": i, "text": f"{round_}"}))
            for i, ws in enumerate(clients):
                assert json.loads(ws.recv(timeout=10)) == {"type": "echoed", "id": i, "text": f"{round_}"}
    assert len(seen["greenlets"]) == 60
    assert len(set(seen["greenlets"])) == 1  # one runner for all: no switch per connection
    assert not set(seen["greenlets"]) & seen["actors"]


def test_a_handler_that_waits_stalls_no_other_connection_and_keeps_its_order(serve) -> None:
    app, _seen = make_app()
    server = serve(app)
    with connect(server.url) as held, connect(server.url) as other:
        held.send(json.dumps({"type": "hold", "id": "h"}))
        held.send(json.dumps({"type": "echo", "id": "after", "text": "2"}))  # waits behind "hold"
        for i in range(5):  # the others are served while the handler waits
            assert ask(other, {"type": "echo", "id": i, "text": "o"})["id"] == i
        assert ask(other, {"type": "release", "id": "r"})["text"] == "released"
        assert json.loads(held.recv(timeout=10)) == {"type": "echoed", "id": "h", "text": "held"}
        assert json.loads(held.recv(timeout=10))["id"] == "after"
        # its reads go on once the handler is done
        assert ask(held, {"type": "echo", "id": "next", "text": "3"})["id"] == "next"
        assert ask(other, {"type": "echo", "id": "last", "text": "o"})["id"] == "last"


def test_a_burst_to_a_peer_that_does_not_read_waits_for_it_alone(serve) -> None:
    app, _seen = make_app()
    server = serve(app, max_queue_bytes=256 * 1024)
    count = 200  # about 13 MiB: far past the mailbox's bound and the socket buffers
    # The client reads no more once 16 messages wait unread (websockets' max_queue): the
    # server's writes to it then wait for the socket, far past the mailbox's bound.
    with connect(server.url, max_size=None, max_queue=16) as reader, connect(server.url) as other:
        reader.send(json.dumps({"type": "flood", "id": "f", "count": count}))
        for i in range(5):  # the others are served while the burst waits for this reader
            assert ask(other, {"type": "echo", "id": i, "text": "o"})["id"] == i
        messages = [json.loads(reader.recv(timeout=30)) for _ in range(count + 1)]
        assert [m["n"] for m in messages[:count]] == list(range(count))
        assert messages[-1] == {"type": "done", "id": "f"}


def test_a_base_exception_out_of_a_handler_closes_only_its_connection(serve) -> None:
    app, _seen = make_app()
    server = serve(app)
    with connect(server.url) as bad, connect(server.url) as other:
        bad.send(json.dumps({"type": "escape", "id": "e"}))
        with pytest.raises(ConnectionClosed):
            bad.recv(timeout=10)
        assert ask(other, {"type": "echo", "id": 1, "text": "o"})["id"] == 1
    with connect(server.url) as again:  # the server goes on serving new connections
        assert ask(again, {"type": "echo", "id": 2, "text": "o"})["id"] == 2


def test_a_server_stops_while_a_handler_waits(serve) -> None:
    app, _seen = make_app()
    server = serve(app)
    with connect(server.url) as held, connect(server.url) as other:
        held.send(json.dumps({"type": "hold", "id": "h"}))
        assert ask(other, {"type": "echo", "id": 1, "text": "o"})["id"] == 1  # "hold" waits meanwhile
        stopper = threading.Thread(target=server.stop, args=(2.0,))
        stopper.start()
        with pytest.raises(ConnectionClosed) as closed:
            other.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        stopper.join(30)  # the waiting handler delays its own connection only, as in an actor
        assert not stopper.is_alive()
    assert server.join(10)
