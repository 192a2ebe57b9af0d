"""Delivery and session guarantees, each the regression test of one finding.

Real sockets on 127.0.0.1, a real redis-server (`shared_redis`, or `redis_server` for the
tests that restart, pause or disturb it), the chat demo (a fresh copy per node). Cases that
hold for any backplane run with the in-process rooms and with a RedisBackplane.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from websock_actors import App, AppRefusal, AuthRequest, ConnectionClosed, Context, Message, RedisBackplane
from websock_actors.client import ClientConnection, connect
from websock_actors.errors import RequestError
from websock_actors.testing import ServerThread

from ..support.apps import RoomSequence, chat_nodes_on, two_nodes_on
from ..support.apps import fresh_chat_app as chat_app
from ..support.chat import both_join, join, position, read_until, resume, say, text_is, wait_kept
from ..support.raw import free_port
from ..support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def two_nodes(shared_redis: Any) -> Iterator[tuple[ServerThread, ServerThread]]:
    """Two chat servers on the shared Redis, stopped after the test."""
    with two_nodes_on(shared_redis.url, chat_app) as nodes:
        yield nodes


@pytest.fixture
def redis_nodes(redis_server: Any) -> Iterator[Callable[..., tuple[ServerThread, RedisBackplane]]]:
    """`node(**backplane_options)`: a chat server on its own RedisBackplane (the test's Redis)."""
    with chat_nodes_on(redis_server.url) as start:
        yield start


def http_status(port: int, path: str = "/readyz", timeout: float = 1.0) -> int | None:
    """The status of GET `path` on 127.0.0.1:`port`; None when nothing answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def closed_by_server(ws: ClientConnection, timeout: float) -> bool:
    """Read (and drop) what comes until the connection ends: True, or False after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            ws.recv(timeout=remaining)
        except ConnectionClosed:
            return True
        except TimeoutError:
            return False


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == kind]


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in of_type(messages, "message")]


# -- 1. a session outlives a process killed with SIGKILL ------------------------------------------


@pytest.mark.timeout(60)
def test_a_session_is_resumable_after_its_process_is_killed(shared_redis, tmp_path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", "examples.chat:app", "--no-patch"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--redis", shared_redis.url]
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log:
        node = subprocess.Popen(
            command,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    other: ServerThread | None = None
    try:
        wait_until(lambda: node.poll() is not None or http_status(port) == 200, 20, "the node's /readyz")
        assert node.poll() is None, f"the node exited:\n{log_path.read_text(errors='replace')}"
        app = chat_app()
        app.use_backplane(RedisBackplane(shared_redis.url))
        other = ServerThread(app).start()
        with connect(f"ws://127.0.0.1:{port}/") as ann, connect(other.url) as bob:
            join(ann, "r", "ann")
            join(bob, "r", "bob")
            for i in range(3):
                say(bob, "r", f"before{i}")
            seen = read_until(ann, text_is("before2"))
            assert texts(seen) == ["before0", "before1", "before2"]
            last = position(seen[-1])
            token = ann.session
            assert token is not None

            os.kill(node.pid, signal.SIGKILL)
            assert node.wait(10) == -signal.SIGKILL
            ann.abort()
            for i in range(5):
                say(bob, "r", f"after{i}")

            with connect(other.url) as ann2:
                answer = resume(ann2, token, {"r": last})
                assert answer["restored"] is True, answer
                assert answer["lost"] == [] and answer["recovered"] is True, answer
                assert answer["session"] not in (token, "")
                assert answer["replayed"] == 5, answer
                missed = [ann2.recv_json(timeout=5) for _ in range(5)]
                assert [m["text"] for m in missed] == [f"after{i}" for i in range(5)]
                assert [m["seq"] for m in missed] == list(range(last["seq"] + 1, last["seq"] + 6))
                say(bob, "r", "live")
                assert ann2.recv_json(timeout=5)["text"] == "live"
                # in the room's presence once: the dead node's entry was taken over
                assert join(bob, "r", "bob")["members"] == ["ann", "bob"]
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(10)
        if other is not None:
            other.stop()


# -- 2. a half-open connection on another node is taken over --------------------------------------


def test_a_half_open_connection_is_taken_over_from_another_node(two_nodes) -> None:
    a, b = two_nodes
    with connect(a.url) as ann, connect(b.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        say(bob, "r", "before")
        last = position(read_until(ann, text_is("before"))[-1])
        token = ann.session
        assert token is not None
        with connect(b.url) as ann2:  # ann's old connection is still open on a
            answer = resume(ann2, token, {"r": last})
            assert answer["restored"] is True and answer["recovered"] is True, answer
            assert answer["lost"] == [] and answer["replayed"] == 0, answer
            # node a drops the old connection
            assert closed_by_server(ann, 5.0), "node a did not close the taken-over connection"
            wait_until(lambda: a.call(lambda: len(a.server.connections)) == 0, 5, "a's close of ann")
            # the room heard nothing: no member_left before a marker said after the close
            say(bob, "r", "marker")
            by = read_until(bob, text_is("marker"))
            assert of_type(by, "member_left") == [], by
            assert [m["type"] for m in by] == ["message", "message"]  # before, marker
            assert texts(read_until(ann2, text_is("marker"))) == ["marker"]
            assert join(bob, "r", "bob")["members"] == ["ann", "bob"]


def test_state_set_after_a_join_is_resumed_from_another_node(two_nodes) -> None:
    """The chat's `join` handler sets ctx.state (the member's name in the room) after
    ctx.join: a session resumed from a node that never saw its connection close (here a
    half-open one taken over; kill -9 alike) must have that state, not the join's snapshot."""
    a, b = two_nodes
    with connect(a.url) as ann, connect(b.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        token = ann.session
        assert token is not None
        with connect(b.url) as ann2:
            assert resume(ann2, token)["restored"] is True
            assert closed_by_server(ann, 5.0)
            say(ann2, "r", "from b")  # chat.py's say reads ctx.state["names"]["r"]
            assert read_until(bob, text_is("from b"))[-1]["name"] == "ann"


# -- 3. a token resumes once ----------------------------------------------------------------------


def test_a_token_works_once(nodes) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        wait_kept(server)
        with connect(server.url) as ann2:
            first = resume(ann2, token)
            assert first["restored"] is True, first
            token2 = first["session"]
            assert token2 not in (token, "")
            with connect(server.url) as ann3:
                again = resume(ann3, token)
                assert again["restored"] is False and again["recovered"] is False, again
                assert again["session"] not in (token, token2)
            ann2.abort()
        wait_kept(server)
        with connect(server.url) as ann4:
            third = resume(ann4, token2)
            assert third["restored"] is True, third
            assert third["session"] not in (token, token2, "")
            say(bob, "r", "to the one session")
            assert texts(read_until(ann4, text_is("to the one session")))[-1] == "to the one session"


@pytest.mark.timeout(60)
def test_concurrent_resumes_of_one_token_restore_one(nodes, backplane) -> None:
    servers = [nodes(), nodes()] if backplane == "redis" else [nodes()]
    with connect(servers[0].url) as ann, connect(servers[0].url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        wait_kept(servers[0])
        attempts = 10
        barrier = threading.Barrier(attempts)
        answers: list[dict[str, Any] | None] = [None] * attempts
        errors: list[BaseException] = []

        def attempt(i: int) -> None:
            try:
                with connect(servers[i % len(servers)].url) as ws:
                    barrier.wait(10)
                    answers[i] = resume(ws, token)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        restored = [a for a in answers if a is not None and a["restored"] is True]
        fresh = [a for a in answers if a is not None and a["restored"] is False]
        assert (len(restored), len(fresh)) == (1, attempts - 1), answers


# -- 4. a room joined in on_connect does not make the resume a late one ---------------------------


class Notice(BaseModel):
    type: Literal["notice"] = "notice"
    text: str


def personal_app() -> App:
    """The chat demo with identities (`?user=`) and a personal room joined at connect."""
    app = chat_app()

    @app.authenticate
    def by_query(request: AuthRequest) -> str:
        user = request.query.get("user", [""])[0]
        if not user:
            raise AppRefusal(401, "who?")
        return str(user)

    @app.on_connect
    def personal_room(ctx: Context) -> None:
        ctx.join(f"user:{ctx.identity}", presence=ctx.identity)

    return app


def test_a_join_in_on_connect_does_not_refuse_the_resume(nodes) -> None:
    server = nodes(personal_app())
    app: App = server.app  # type: ignore[assignment]
    # one connection at a time: two first joins at once on a node race in the subscriber
    # (test_concurrent_first_joins_on_one_node_all_succeed)
    with connect(server.url + "?user=ann") as ann:
        join(ann, "r", "ann")
        with connect(server.url + "?user=bob") as bob:
            join(bob, "r", "bob")
            token = ann.session
            assert token is not None
            ann.abort()
            wait_kept(server)
            with connect(server.url + "?user=ann") as ann2:
                answer = resume(ann2, token)  # a refusal raises RequestError (resume_refused)
                assert answer["restored"] is True and answer["recovered"] is True, answer
                assert sorted(answer["positions"]) == ["r", "user:ann"], answer
                for text in ("n1", "n2"):
                    server.call(lambda text=text: app.broadcast("user:ann", Notice(text=text)))
                got = read_until(ann2, lambda m: m.get("type") == "notice" and m.get("text") == "n2")
                assert [m["text"] for m in of_type(got, "notice")] == ["n1", "n2"]  # once each
                say(bob, "r", "still in r")
                assert texts(read_until(ann2, text_is("still in r")))[-1] == "still in r"


def test_concurrent_first_joins_on_one_node_all_succeed(shared_redis) -> None:
    """Found while writing the test above: joins of new rooms at the same moment on one
    node failed now and then with `backplane_unavailable` ("Redis did not confirm the
    room's subscription")."""
    app = chat_app()
    backplane = RedisBackplane(shared_redis.url)
    app.use_backplane(backplane)
    with ServerThread(app) as server:
        wait_until(lambda: backplane.connected, 10, "the backplane connected")
        for round_ in range(5):
            count = 8
            barrier = threading.Barrier(count)
            outcomes: list[Any] = [None] * count

            def member(
                i: int,
                round_: int = round_,
                barrier: threading.Barrier = barrier,
                outcomes: list[Any] = outcomes,
            ) -> None:
                room = f"room-{round_}-{i}"
                try:
                    with connect(server.url) as ws:
                        barrier.wait(10)
                        join(ws, room, f"m{i}")
                        say(ws, room, "hello")
                        outcomes[i] = texts(read_until(ws, text_is("hello")))
                except Exception as exc:
                    outcomes[i] = exc

            threads = [threading.Thread(target=member, args=(i,)) for i in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert outcomes == [["hello"]] * count, (round_, outcomes)


# -- 5. a Redis that lost its data gets every node's presence again -------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("loss", ["restart", "flushall"])
def test_a_node_that_saw_no_error_writes_its_presence_again_after_a_redis_restart(
    redis_nodes, redis_server, loss
) -> None:
    (a, bp_a), (b, bp_b) = redis_nodes(), redis_nodes()

    def presence() -> int:
        try:
            return int(redis_server.command("ZCARD", "wsa:presence:r"))
        except OSError:
            return -1

    def both_listed() -> bool:
        try:
            return all(
                redis_server.command("ZSCORE", "wsa:nodes", bp.node) is not None for bp in (bp_a, bp_b)
            )
        except OSError:
            return False

    def sessions() -> int:
        try:
            return len(redis_server.command("KEYS", "wsa:session:*"))
        except OSError:
            return -1

    with connect(a.url) as ann, connect(a.url) as al, connect(b.url) as bob:
        join(ann, "r", "ann")
        join(al, "r", "al")
        join(bob, "r", "bob")
        assert presence() == 3 and both_listed() and sessions() == 3
        if loss == "restart":
            redis_server.restart()  # empty: no persistence
        else:
            redis_server.command("FLUSHALL")
        wait_until(lambda: presence() == 3 and both_listed(), 15, "presence and heartbeats written again")
        assert bp_a.resets >= 1 and bp_b.resets >= 1, (bp_a.resets, bp_b.resets)
        wait_until(lambda: sessions() == 3, 10, "the open sessions written again")
        assert join(bob, "r", "bob")["members"] == ["ann", "al", "bob"]


# -- 6. readiness notices a paused Redis within 3 s -----------------------------------------------


@pytest.mark.timeout(30)
def test_readiness_reports_a_paused_redis_within_3_s(redis_nodes, redis_server) -> None:
    server, backplane = redis_nodes()
    wait_until(lambda: backplane.connected, 10, "the backplane connected")
    assert http_status(server.port) == 200
    statuses: list[int | None] = []
    os.kill(redis_server.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        deadline = stopped + 3.5
        while True:
            status = http_status(server.port, timeout=max(0.05, deadline - time.monotonic()))
            statuses.append(status)
            if status == 503:
                break
            assert time.monotonic() < deadline, f"/readyz still answers {statuses[-3:]} 3.5 s after SIGSTOP"
            time.sleep(0.05)  # the pause between two polls
        noticed = time.monotonic() - stopped
        assert noticed <= 3.5
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    wait_until(lambda: http_status(server.port) == 200, 10, "/readyz 200 again after SIGCONT")
    assert None not in statuses, statuses  # the server itself answered all along


# -- 7. after an epoch change, the new epoch's messages are delivered -----------------------------


def test_epoch_change_delivers_the_new_epoch(nodes, backplane, request) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        for i in range(3):
            say(bob, "r", f"old{i}")
        last = position(read_until(ann, text_is("old2"))[-1])
        ann.abort()
        wait_kept(server)
        # the room's history is lost (and with it its seq and epoch), the sessions are not
        if backplane == "redis":
            assert request.getfixturevalue("shared_redis").command("DEL", "wsa:seq:r", "wsa:history:r") == 2
        else:
            stream = server.app.resumption.numbered._stream  # type: ignore[attr-defined]
            assert server.call(lambda: stream.logs.pop("r", None)) is not None
        for i in range(20):
            say(bob, "r", f"new{i}")
        new = [
            m for m in of_type(read_until(bob, text_is("new19")), "message") if m["text"].startswith("new")
        ]
        assert [m["seq"] for m in new] == list(range(1, 21))
        assert {m["epoch"] for m in new} != {last["epoch"]} and len({m["epoch"] for m in new}) == 1
        with connect(server.url) as ann2:
            answer = resume(ann2, token, {"r": last})
            assert answer["restored"] is True and answer["recovered"] is False, answer
            assert answer["lost"] == ["r"], answer
            say(bob, "r", "marker")
            got = read_until(ann2, text_is("marker"))
            assert texts(got) == [f"new{i}" for i in range(20)] + ["marker"], got


# -- 8. killed pub/sub connections lose no acknowledged message -----------------------------------


@pytest.mark.timeout(90)
def test_pubsub_kills_lose_no_acknowledged_message(redis_nodes, redis_server) -> None:
    (a, bp_a), (b, bp_b) = redis_nodes(), redis_nodes()
    total, kills = 200, 10
    every = total // kills
    with (
        connect(a.url) as sayer,
        connect(a.url) as a1,
        connect(a.url) as a2,
        connect(b.url) as b1,
        connect(b.url) as b2,
        connect(b.url) as b3,
    ):
        members = {"sayer": sayer, "a1": a1, "a2": a2, "b1": b1, "b2": b2, "b3": b3}
        for name, ws in members.items():
            join(ws, "r", name)
        for bp in (bp_a, bp_b):
            wait_until(lambda bp=bp: "r" in bp.subscriber.subscribed, 5, "the room subscribed")

        acked: list[int] = []
        progress = threading.Condition()
        back = [threading.Event() for _ in range(kills)]
        killed: list[int] = []
        failures: list[BaseException] = []

        def killer() -> None:
            """Kill the pub/sub connections halfway through each stretch of `every` says;
            the stretch's end waits until both nodes are subscribed again."""
            try:
                for k in range(kills):
                    with progress:
                        if not progress.wait_for(lambda k=k: len(acked) >= k * every + every // 2, 30):
                            raise AssertionError(f"the sayer stalled at {len(acked)}")
                    killed.append(redis_server.client_kill_pubsub())
                    wait_until(
                        lambda k=k: all(
                            bp.subscriber.reconnects >= k + 1 and "r" in bp.subscriber.subscribed
                            for bp in (bp_a, bp_b)
                        ),
                        10,
                        f"both nodes subscribed again after kill {k + 1}",
                    )
                    back[k].set()
            except BaseException as exc:
                failures.append(exc)
                for event in back:
                    event.set()

        thread = threading.Thread(target=killer, name="pubsub-killer")
        thread.start()
        try:
            for i in range(total):
                if i and i % every == 0:
                    assert back[i // every - 1].wait(15), "no resubscription"
                    assert failures == [], failures
                reply = sayer.request({"type": "say", "room": "r", "text": f"m{i}"})
                assert reply["type"] == "said", reply
                with progress:
                    acked.append(i)
                    progress.notify_all()
        finally:
            thread.join(30)
        assert failures == [], failures
        assert killed == [2] * kills, killed  # each kill hit both nodes' subscriber
        assert len(acked) == total
        say(sayer, "r", "end")
        for name, ws in members.items():
            seq = RoomSequence()
            got = read_until(ws, text_is("end"), timeout=15)
            assert of_type(got, "room_lost") == [], (name, of_type(got, "room_lost"))
            said = [m for m in got if m["type"] == "message"]
            for message in said:
                seq(message)  # in seq order, +1 each, one epoch
            assert [m["text"] for m in said] == [f"m{i}" for i in range(total)] + ["end"], name
    # the kills did cut deliveries: what pub/sub lost was read from the stream
    caught_up = [s.call(lambda s=s: s.app.resumption.numbered.caught_up) for s in (a, b)]
    assert min(caught_up) >= 1, caught_up


# -- 9. rooms per connection are bounded ----------------------------------------------------------


class Enter(Message):
    type: Literal["enter"]
    room: str


class Exit(Message):
    type: Literal["exit"]
    room: str


class Mine(Message):
    type: Literal["mine"]


class MyRooms(Message):
    type: Literal["my_rooms"] = "my_rooms"
    rooms: list[str]


def rooms_app() -> App:
    app = App("rooms", max_rooms=3)

    @app.handler
    def enter_room(msg: Enter, ctx: Context) -> None:
        ctx.join(msg.room)

    @app.handler
    def exit_room(msg: Exit, ctx: Context) -> None:
        ctx.leave(msg.room)

    @app.handler
    def mine(msg: Mine, ctx: Context) -> MyRooms:
        return MyRooms(rooms=sorted(ctx.rooms))

    return app


def test_rooms_per_connection_are_bounded() -> None:
    with ServerThread(rooms_app()) as server, connect(server.url) as ws, connect(server.url) as other:
        for room in ("a", "b", "c"):
            ws.request({"type": "enter", "room": room})
        ws.request({"type": "enter", "room": "a"})  # already in it: not another room
        with pytest.raises(RequestError) as refused:
            ws.request({"type": "enter", "room": "d"})
        assert refused.value.code == "too_many_rooms"
        assert ws.request({"type": "mine"})["rooms"] == ["a", "b", "c"]
        other.request({"type": "enter", "room": "d"})  # the bound is per connection
        ws.request({"type": "exit", "room": "b"})
        ws.request({"type": "enter", "room": "d"})
        assert ws.request({"type": "mine"})["rooms"] == ["a", "c", "d"]
        with pytest.raises(RequestError) as again:
            ws.request({"type": "enter", "room": "e"})
        assert again.value.code == "too_many_rooms"
        assert server.call(lambda: server.app.rooms_refused) == 2  # type: ignore[attr-defined]


# -- 10. a replay is bounded --------------------------------------------------------------------


def test_replay_is_bounded(nodes) -> None:
    server = nodes(replay_messages=50)
    rooms = [f"r{i}" for i in range(5)]
    with connect(server.url) as ann, connect(server.url) as bob:
        for room in rooms:
            join(bob, room, "bob")
        for room in rooms:
            join(ann, room, "ann")
        token = ann.session
        assert token is not None
        ann.abort()
        wait_kept(server)
        for room in rooms:
            for i in range(30):
                say(bob, room, f"{room}-{i}")
        with connect(server.url) as ann2:
            # sent by hand (an id no request waits for): the reply is read in order with the replay
            ann2.send(json.dumps({"type": "resume", "id": "resume-1", "session": token, "rooms": {}}))
            before = read_until(ann2, lambda m: m.get("id") == "resume-1")
            answer = before.pop()
            assert answer["type"] == "resumed", answer
            assert answer["restored"] is True and answer["recovered"] is False, answer
            assert answer["replayed"] == len(before) <= 50, answer
            lost = answer["lost"]
            replayed_rooms = Counter(m["room"] for m in before)
            # nothing of a lost room comes before `resumed`: it goes on live from where it is
            assert not set(replayed_rooms) & set(lost), (replayed_rooms, lost)
            # 30 fit in the budget of 50, and then 20 are left: not enough for another room
            assert len(lost) == 4 and lost == sorted(lost) and set(lost) < set(rooms), answer
            (whole,) = set(rooms) - set(lost)
            assert [m["text"] for m in before] == [f"{whole}-{i}" for i in range(30)]
            assert sorted(answer["positions"]) == rooms
            # every room goes on live from its position: the lost ones from where they are now
            for room in rooms:
                say(bob, room, f"{room}-live")
            got = read_until(ann2, text_is("r4-live"))
            assert [m["type"] for m in got] == ["message"] * 5, got
            for message in got:
                at = answer["positions"][message["room"]]
                assert (message["seq"], message["epoch"]) == (at["seq"] + 1, at["epoch"]), (message, at)
            assert [m["text"] for m in got] == [f"{room}-live" for room in rooms]


# -- 11. resumes per minute are bounded ---------------------------------------------------------


def test_resumes_per_minute_are_bounded(nodes) -> None:
    server = nodes(resumes_per_minute=2)
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        wait_kept(server)
        with connect(server.url) as ann1:
            first = resume(ann1, token)
            assert first["restored"] is True, first
            ann1.abort()
        wait_kept(server)
        with connect(server.url) as ann2:
            second = resume(ann2, first["session"])
            assert second["restored"] is True, second
            with connect(server.url) as ann3:  # a third within the minute
                with pytest.raises(RequestError) as refused:
                    resume(ann3, second["session"])
                assert refused.value.code == "rate_limited"
            # refused before anything changed: the session lives on on ann2's connection
            say(ann2, "r", "still here")
            by = read_until(bob, text_is("still here"))
            assert by[-1]["name"] == "ann" and of_type(by, "member_left") == [], by
            assert join(bob, "r", "bob")["members"] == ["ann", "bob"]
    resumes = server.call(lambda: dict(server.app.resumption.resumes))  # type: ignore[attr-defined]
    assert resumes["refused"] == 1 and resumes["recovered"] == 2, resumes


# -- acknowledged means kept, and replies keep their order --------------------------------------


@pytest.mark.timeout(60)
def test_said_comes_once_the_message_is_kept_and_replies_keep_their_order(shared_redis) -> None:
    """A sender's says in flight together: each `said` comes only once its message is in the
    room's stream, and the replies come in the order of the requests (the handler did not
    wait for Redis: the replies did)."""
    app = chat_app()
    app.use_backplane(RedisBackplane(shared_redis.url))
    with ServerThread(app) as server, connect(server.url) as ann:
        join(ann, "r", "ann")
        count = 15  # within the chat's burst of 20 says
        for i in range(count):
            ann.send(json.dumps({"type": "say", "id": f"s{i}", "room": "r", "text": f"m{i}"}))
        answered: list[str] = []
        while len(answered) < count:
            message = ann.recv_json(timeout=5)
            if message["type"] == "said":
                kept = shared_redis.command("XRANGE", "wsa:history:r", "-", "+")
                texts = [json.loads(fields[1])["text"] for _, fields in kept if b'"text"' in fields[1]]
                assert f"m{len(answered)}" in texts, (message, texts)
                answered.append(message["id"])
        assert answered == [f"s{i}" for i in range(count)]


class Note(Message):
    type: Literal["note"]
    room: str


def test_a_state_that_is_not_json_is_not_kept_and_the_join_is_answered(nodes, caplog) -> None:
    """A session whose ctx.state cannot be stored is not kept (a warning says so); the
    handler that joined is answered as usual, and a resume of it starts afresh."""
    app = chat_app()

    @app.handler
    def note(msg: Note, ctx: Context) -> None:
        ctx.state["opaque"] = object()  # not JSON-able
        ctx.join(msg.room, presence="ann")

    server = nodes(app)
    with connect(server.url) as ann:
        assert ann.request({"type": "note", "room": "r"})["type"] == "ack"
        token = ann.session
        assert token is not None
        assert ann.request({"type": "note", "room": "s"})["type"] == "ack"  # still served
        ann.abort()
    with connect(server.url) as ann2:
        assert resume(ann2, token)["restored"] is False
    assert any("not JSON-able" in record.getMessage() for record in caplog.records)
