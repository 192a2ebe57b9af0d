"""`Emitter` over Redis: pushing into the rooms from a process that is not a server
(websock_actors/emitter/).

Real sockets on 127.0.0.1, a real redis-server, two chat nodes (examples/chat.py, a fresh
copy each) on one Redis. The cross-process cases run the Emitter in a subprocess where
gevent cannot be imported, as in a Celery worker or a Flask view.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from websock_actors import App, BackplaneUnavailable, ConfigurationError, Emitter, RedisBackplane
from websock_actors.client import ClientConnection, connect
from websock_actors.testing import ServerThread

from ..support.apps import fresh_chat_app
from ..support.chat import join, position, read_until, resume, say, text_is, wait_kept
from ..support.elsewhere import emit_elsewhere

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.timeout(60)

def emit_numbered(url: str, room: str, message: dict[str, Any], numbered: bool) -> dict[str, Any]:
    done = emit_elsewhere(url, "broadcast", room, message, options={"numbered": numbered})
    return {"nodes": done["nodes"], "seq": done["seq"], "epoch": done["epoch"]}


def pushed(text: str) -> dict[str, Any]:
    return {"type": "message", "room": "r", "name": "ops", "text": text, "ts": 0.0}


@pytest.fixture
def chat_nodes(shared_redis: Any) -> Iterator[Callable[..., ServerThread]]:
    """`node(resume=True)`: a chat server on its own RedisBackplane over the shared Redis."""
    started: list[ServerThread] = []

    def start(resume: bool = True) -> ServerThread:
        app = fresh_chat_app(resume=resume)
        app.use_backplane(RedisBackplane(shared_redis.url))
        server = ServerThread(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def members_on_two_nodes(
    node: Callable[..., ServerThread], resume: bool = True
) -> tuple[ServerThread, ServerThread, ClientConnection, ClientConnection]:
    a, b = node(resume), node(resume)
    ann, bob = connect(a.url), connect(b.url)
    join(ann, "r", "ann")
    join(bob, "r", "bob")
    return a, b, ann, bob


def test_an_emitter_without_gevent_reaches_members_on_two_nodes_numbered(chat_nodes, shared_redis) -> None:
    _, _, ann, bob = members_on_two_nodes(chat_nodes)
    with ann, bob:
        say(bob, "r", "first")
        last = position(read_until(ann, text_is("first"))[-1])
        read_until(bob, text_is("first"))
        done = emit_numbered(shared_redis.url, "r", pushed("from celery"), numbered=True)
        assert done == {"nodes": 2, "seq": last["seq"] + 1, "epoch": last["epoch"]}
        for ws in (ann, bob):
            got = read_until(ws, text_is("from celery"))[-1]
            assert position(got) == {"seq": done["seq"], "epoch": done["epoch"]}
        say(bob, "r", "after")  # the nodes number on after it: one sequence per room
        assert read_until(ann, text_is("after"))[-1]["seq"] == done["seq"] + 1


def test_an_emitter_without_gevent_reaches_members_on_two_nodes_plain(chat_nodes, shared_redis) -> None:
    _, _, ann, bob = members_on_two_nodes(chat_nodes, resume=False)
    with ann, bob:
        done = emit_numbered(shared_redis.url, "r", pushed("plain push"), numbered=False)
        assert done == {"nodes": 2, "seq": None, "epoch": None}
        for ws in (ann, bob):
            got = read_until(ws, text_is("plain push"))[-1]
            assert "seq" not in got and got["name"] == "ops"


def test_a_client_cut_while_it_was_emitted_gets_it_in_its_replay(chat_nodes, shared_redis) -> None:
    a, b, ann, bob = members_on_two_nodes(chat_nodes)
    with bob:
        say(bob, "r", "before")
        last = position(read_until(ann, text_is("before"))[-1])
        token = ann.session
        assert token is not None
        ann.abort()
        wait_kept(a)
        done = emit_numbered(shared_redis.url, "r", pushed("while cut"), numbered=True)
        with connect(b.url) as ann2:
            answer = resume(ann2, token, {"r": last})
            assert answer["restored"] is True and answer["lost"] == [], answer
            assert answer["replayed"] >= 1, answer
            got = read_until(ann2, text_is("while cut"))[-1]
            assert position(got) == {"seq": done["seq"], "epoch": done["epoch"]}


def test_eight_threads_share_one_emitter(chat_nodes, shared_redis) -> None:
    _, _, ann, bob = members_on_two_nodes(chat_nodes)
    emitter = Emitter(shared_redis.url, numbered=True)
    results: list[int] = []
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for i in range(25):
                done = emitter.broadcast("r", pushed(f"t{thread}-{i}"))
                assert done.seq is not None
                results.append(done.seq)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    with ann, bob:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        assert sorted(results) == list(range(min(results), min(results) + 200))  # no seq twice
        for ws in (ann, bob):
            upto = read_until(ws, lambda m: m.get("seq") == max(results))
            seen = [m for m in upto if m["type"] == "message"]
            assert sorted(m["text"] for m in seen) == sorted(f"t{t}-{i}" for t in range(8) for i in range(25))
            assert [m["seq"] for m in seen] == sorted(results)  # in seq order, once each
    emitter.close()


def test_an_idempotency_key_repeated_is_delivered_once(chat_nodes, shared_redis) -> None:
    _, _, ann, bob = members_on_two_nodes(chat_nodes)
    emitter = Emitter(shared_redis.url, numbered=True)
    with ann, bob:
        first = emitter.broadcast("r", pushed("once"), idempotency_key="task-1")
        again = emitter.broadcast("r", pushed("once"), idempotency_key="task-1")
        assert first.seq is not None and not first.duplicate
        assert again.duplicate and again.seq is None
        emitter.broadcast("r", pushed("next"), idempotency_key="task-2")
        for ws in (ann, bob):
            seen = [m["text"] for m in read_until(ws, text_is("next")) if m["type"] == "message"]
            assert seen == ["once", "next"]
    plain = Emitter(shared_redis.url)
    assert plain.broadcast("q", pushed("x"), idempotency_key="task-3").duplicate is False
    assert plain.broadcast("q", pushed("x"), idempotency_key="task-3").duplicate is True


def test_redis_stopped_raises_within_the_timeout(redis_server) -> None:
    emitter = Emitter(redis_server.url, timeout=1.0)
    assert emitter.broadcast("r", pushed("up")).nodes == 0
    redis_server.stop()
    started = time.monotonic()
    with pytest.raises(BackplaneUnavailable, match="unreachable"):
        emitter.broadcast("r", pushed("down"))
    assert time.monotonic() - started < 1.0 + 1.0  # a bound: the timeout and a margin


def test_redis_paused_raises_within_the_timeout(redis_server) -> None:
    """A Redis that accepts but never answers: the socket's timeout, not a hang."""
    emitter = Emitter(redis_server.url, timeout=1.0, numbered=True)
    assert emitter.broadcast("r", pushed("up")).seq == 1
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(BackplaneUnavailable):
            emitter.broadcast("r", pushed("paused"))
        assert time.monotonic() - started < 1.0 + 1.0
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)


def test_bad_messages_are_refused_before_redis() -> None:
    emitter = Emitter("redis://127.0.0.1:1/0", timeout=0.5)
    with pytest.raises(ValueError, match="type"):
        emitter.broadcast("r", {"text": "no type"})
    with pytest.raises(TypeError, match="pydantic model or a dict"):
        emitter.broadcast("r", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="redis://"):
        Emitter("ftp://127.0.0.1:8000")
    with pytest.raises(ValueError, match="api_key"):
        Emitter("http://127.0.0.1:8000")
    with pytest.raises(ValueError, match="server API"):
        Emitter("redis://127.0.0.1:1/0", api_key="k")


def test_app_broadcast_before_start_names_the_emitter() -> None:
    app = App("outside")

    class Notice(BaseModel):
        type: Literal["notice"] = "notice"

    app.use_backplane(RedisBackplane("redis://127.0.0.1:1/0"))
    with pytest.raises(ConfigurationError, match="Emitter"):
        app.broadcast("r", Notice())


class Bulletin(BaseModel):
    """A push model without a "room" field (and an `id` left None, not sent)."""

    type: Literal["message"] = "message"
    id: int | None = None
    name: str
    text: str


def test_a_model_without_a_room_gets_one_stamped(chat_nodes, shared_redis) -> None:
    _, _, ann, bob = members_on_two_nodes(chat_nodes)
    with ann, bob:
        done = Emitter(shared_redis.url, numbered=True).broadcast("r", Bulletin(name="ops", text="model"))
        for ws in (ann, bob):
            got = read_until(ws, text_is("model"))[-1]
            assert got == {"type": "message", "name": "ops", "text": "model", "room": "r",
                           "seq": done.seq, "epoch": done.epoch}  # fmt: skip
