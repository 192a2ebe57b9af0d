"""Typed handlers over real sockets: routing, the error codes, ids, named actors, restarts."""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any, Literal

import gevent
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from websock_actors import App, Context, Message, MessageError, RestartPolicy


class Echo(Message):
    type: Literal["echo"]
    text: str


class Echoed(Message):
    type: Literal["echoed"] = "echoed"
    text: str


class Nothing(Message):
    type: Literal["nothing"]


class Boom(Message):
    type: Literal["boom"]


class Refuse(Message):
    type: Literal["refuse"]


class Incr(Message):
    type: Literal["incr"]


class Get(Message):
    type: Literal["get"]


class Count(Message):
    type: Literal["count"] = "count"
    n: int


class Crash(Message):
    type: Literal["crash"]


class Hello(Message):
    type: Literal["hello"]


class Hi(Message):
    type: Literal["hi"] = "hi"
    generation: int


def make_app(inline: bool = False) -> App:
    app = App("test", restart=RestartPolicy(max_restarts=2, within=60), inline=inline)

    @app.handler
    def echo(msg: Echo, ctx: Context) -> Echoed:
        return Echoed(text=msg.text)

    @app.handler
    def nothing(msg: Nothing, ctx: Context) -> None:
        return None

    @app.handler
    def boom(msg: Boom, ctx: Context) -> None:
        raise RuntimeError("secret internals")

    @app.handler
    def refuse(msg: Refuse, ctx: Context) -> None:
        raise MessageError("not_allowed", "you may not")

    @app.handler(actor="counter")
    def incr(msg: Incr, ctx: Context) -> Count:
        value = ctx.actor_state.get("n", 0)
        gevent.sleep(0)  # another message would sneak in here without the actor
        ctx.actor_state["n"] = value + 1
        return Count(n=value + 1)

    @app.handler(actor="counter")
    def get(msg: Get, ctx: Context) -> Count:
        return Count(n=ctx.actor_state.get("n", 0))

    @app.handler(actor="fragile")
    def crash(msg: Crash, ctx: Context) -> None:
        raise RuntimeError("fragile actor crashed")

    @app.handler(actor="fragile")
    def hello(msg: Hello, ctx: Context) -> Hi:
        generation = ctx.actor_state.setdefault("generation", len(generations) + 1)
        generations.add(generation)
        return Hi(generation=generation)

    generations: set[int] = set()

    @app.on_connect
    def check(ctx: Context) -> bool:
        return ctx.headers.get("X-Refuse") is None

    return app


def ask(ws: ClientConnection, message: dict[str, Any] | str | bytes) -> dict[str, Any]:
    ws.send(json.dumps(message) if isinstance(message, dict) else message)
    reply: dict[str, Any] = json.loads(ws.recv(timeout=5))
    return reply


@pytest.fixture(params=["runner", "inline", "actor"])
def typed(serve, request):
    """The app served three ways: handlers in the hub's shared runner (the default), inline
    (in the hub), and in the connection's own actor (`shared_runner` off)."""
    app = make_app(inline=request.param == "inline")
    if request.param == "actor":
        app.shared_runner = False
    return serve(app)


def test_reply_echoes_string_and_integer_ids(typed) -> None:
    with connect(typed.url) as ws:
        reply = ask(ws, {"type": "echo", "id": "a1", "text": "x"})
        assert reply == {"type": "echoed", "id": "a1", "text": "x"}
        assert ask(ws, {"type": "echo", "id": 7, "text": "y"}) == {"type": "echoed", "id": 7, "text": "y"}
        assert ask(ws, {"type": "echo", "text": "z"}) == {"type": "echoed", "text": "z"}  # no id: left out


def test_a_request_with_an_id_always_gets_one_reply(typed) -> None:
    with connect(typed.url) as ws:
        assert ask(ws, {"type": "nothing", "id": "n1"}) == {"type": "ack", "id": "n1"}
        ws.send(json.dumps({"type": "nothing"}))  # no id: no reply
        assert ask(ws, {"type": "echo", "id": 2, "text": "after"})["id"] == 2


@pytest.mark.parametrize(
    ("frame", "code", "message_id"),
    [
        ("{not json", "invalid_json", None),
        ('{"type": "nope", "id": "u1"}', "unknown_type", "u1"),
        ('{"id": "u2", "text": "no type"}', "unknown_type", "u2"),
        ('{"type": "echo", "id": 3}', "validation_error", 3),
        ('{"type": "echo", "id": 4, "text": 5}', "validation_error", 4),
        ("[1, 2, 3]", "validation_error", None),
        (b"\x00\x01binary", "unsupported_data", None),
        ('{"type": "boom", "id": "b"}', "handler_error", "b"),
        ('{"type": "refuse", "id": "r"}', "not_allowed", "r"),
    ],
)
def test_error_codes_keep_the_connection_open(typed, frame: str | bytes, code: str, message_id: Any) -> None:
    with connect(typed.url) as ws:
        reply = ask(ws, frame)
        assert reply["type"] == "error"
        assert reply["code"] == code
        assert reply.get("id") == message_id  # an id that is None is left out
        assert ("id" in reply) == (message_id is not None)
        assert isinstance(reply["detail"], str)
        assert ask(ws, {"type": "echo", "id": "still", "text": "open"})["id"] == "still"


def test_validation_error_lists_fields_without_echoing_input(typed) -> None:
    huge = "A" * 100_000
    with connect(typed.url) as ws:
        reply = ask(ws, {"type": "echo", "id": 1, "text": {"nested": huge}})
    assert reply["code"] == "validation_error"
    expected = {"loc": ["text"], "msg": "Input should be a valid string", "type": "string_type"}
    assert reply["errors"] == [expected]
    assert huge[:1000] not in json.dumps(reply)


def test_handler_error_hides_the_traceback(typed) -> None:
    with connect(typed.url) as ws:
        reply = ask(ws, {"type": "boom", "id": 1})
    assert reply["code"] == "handler_error"
    assert "secret internals" not in json.dumps(reply)


def test_named_actor_runs_messages_one_at_a_time(typed) -> None:
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connect(typed.url)) for _ in range(50)]
        for ws in clients:  # every connection pipelines its increments
            for i in range(10):
                ws.send(json.dumps({"type": "incr", "id": i}))
        seen: list[int] = []
        for ws in clients:
            for i in range(10):
                reply = json.loads(ws.recv(timeout=10))
                assert reply["id"] == i  # order kept per connection
                seen.append(reply["n"])
        assert sorted(seen) == list(range(1, 501))  # no lost update, no duplicate
        assert ask(clients[0], {"type": "get", "id": "total"})["n"] == 500


def test_crashing_actor_is_restarted_then_reported_unavailable(typed) -> None:
    with connect(typed.url) as ws:
        first = ask(ws, {"type": "hello", "id": 0})["generation"]
        for attempt in (1, 2):  # within the cap (2): the supervisor restarts it
            reply = ask(ws, {"type": "crash", "id": attempt})
            assert (reply["code"], reply["id"]) == ("handler_error", attempt)
            generation = ask(ws, {"type": "hello", "id": f"h{attempt}"})["generation"]
            assert generation == first + attempt  # fresh state after each restart
        assert typed.call(lambda: typed.app.supervisor.restarts) == 2
        assert ask(ws, {"type": "crash", "id": 3})["code"] == "handler_error"
        reply = ask(ws, {"type": "hello", "id": "after"})
        assert (reply["code"], reply["id"]) == ("handler_unavailable", "after")
        assert ask(ws, {"type": "echo", "id": "ok", "text": "other handlers work"})["type"] == "echoed"
        assert ask(ws, {"type": "incr", "id": "c"})["type"] == "count"  # one-for-one


def test_overloaded_actor_answers_overloaded(serve) -> None:
    release = threading.Event()
    running = threading.Event()
    app = App("busy", actor_mailbox_size=1)

    @app.handler(actor="slow")
    def hello(msg: Hello, ctx: Context) -> Hi:
        running.set()
        while not release.is_set():
            gevent.sleep(0.005)
        return Hi(generation=1)

    server = serve(app)
    with connect(server.url) as ws:
        ws.send(json.dumps({"type": "hello", "id": 0}))
        assert running.wait(5)
        for i in (1, 2):  # one waits in the mailbox, the next has no room
            ws.send(json.dumps({"type": "hello", "id": i}))
        reply = json.loads(ws.recv(timeout=5))
        assert (reply["code"], reply["id"]) == ("overloaded", 2)
        release.set()
        assert [json.loads(ws.recv(timeout=5))["id"] for _ in range(2)] == [0, 1]


def test_on_connect_may_refuse(typed) -> None:
    with connect(typed.url, additional_headers={"X-Refuse": "1"}) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1008


def test_shutdown_closes_connections_first_then_stops_the_actors(typed) -> None:
    counter = typed.call(lambda: typed.app.supervisor.child("counter"))
    with connect(typed.url) as ws:
        assert ask(ws, {"type": "incr", "id": 1})["n"] == 1
        typed.call(typed.server.stop, 5)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001
    assert counter.is_down
    assert typed.app.supervisor is None


def test_on_bytes_receives_binary_frames_and_its_errors_are_typed(serve) -> None:
    app = App("bytes")
    received: list[bytes] = []

    @app.handler
    def echo(msg: Echo, ctx: Context) -> Echoed:
        return Echoed(text=msg.text)

    @app.on_bytes
    def upload(data: bytes, ctx: Context) -> None:
        if data == b"refuse":
            raise MessageError("too_binary", "no thanks")
        if data == b"crash":
            raise RuntimeError("secret internals")
        received.append(data)
        ctx.send(Echoed(text=f"{len(data)} bytes"))

    server = serve(app)
    with connect(server.url) as ws:
        ws.send(b"\x00\x01\x02")
        assert json.loads(ws.recv(timeout=5)) == {"type": "echoed", "text": "3 bytes"}
        assert ask(ws, b"refuse") == {
            "type": "error", "code": "too_binary", "detail": "no thanks", "errors": []
        }
        reply = ask(ws, b"crash")
        assert reply["code"] == "handler_error" and "secret" not in json.dumps(reply)
        # Text frames still go to the typed handlers on the same connection.
        assert ask(ws, {"type": "echo", "id": 1, "text": "x"}) == {"type": "echoed", "id": 1, "text": "x"}
    assert received == [b"\x00\x01\x02"]


def test_without_on_bytes_binary_frames_get_unsupported_data(typed) -> None:
    with connect(typed.url) as ws:
        assert ask(ws, b"\x00")["code"] == "unsupported_data"


def test_a_subclass_s_own_handle_message_is_called(serve) -> None:
    """An App subclass may wrap the message path: the server calls its handle_message."""
    seen: list[str | bytes] = []

    class Logged(App):
        def handle_message(self, conn: Any, message: str | bytes) -> None:
            seen.append(message)
            super().handle_message(conn, message)

    app = Logged("logged")

    @app.handler
    def echo(msg: Echo, ctx: Context) -> Echoed:
        return Echoed(text=msg.text)

    with connect(serve(app).url) as ws:
        assert ask(ws, {"type": "echo", "id": 1, "text": "x"}) == {"type": "echoed", "id": 1, "text": "x"}
    assert seen == ['{"type": "echo", "id": 1, "text": "x"}']


def test_a_handle_message_set_on_the_instance_is_called(serve) -> None:
    """One set on the App itself after it was made (a test's wrapper) replaces the message path."""
    seen: list[str | bytes] = []
    app = App("wrapped")

    @app.handler
    def echo(msg: Echo, ctx: Context) -> Echoed:
        return Echoed(text=msg.text)

    handle = app.handle_message

    def handle_message(conn: Any, message: str | bytes) -> None:
        seen.append(message)
        handle(conn, message)

    app.handle_message = handle_message  # type: ignore[method-assign]
    with connect(serve(app).url) as ws:
        assert ask(ws, {"type": "echo", "id": 2, "text": "y"}) == {"type": "echoed", "id": 2, "text": "y"}
    assert seen == ['{"type": "echo", "id": 2, "text": "y"}']
