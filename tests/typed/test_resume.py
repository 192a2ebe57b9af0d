"""Session resumption (typed/resume.py) on both backplanes: the chat demo, real clients.

Every case runs with the in-process rooms and with a RedisBackplane on a real redis-server
(`shared_redis`, emptied per test); the cases about several nodes, FLUSHALL and the drain
need Redis. A member's connection is cut without a close frame by the client (`abort`) or
by the server (`Connection.abort` in its hub).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from websock_actors import App, AppRefusal, ConnectionClosed, RedisBackplane
from websock_actors.client import connect
from websock_actors.errors import RequestError
from websock_actors.testing import ServerThread

from ..support.apps import fresh_chat_app as chat_app
from ..support.chat import both_join, join, position, read_until, resume, say, text_is, wait_kept
from ..support.raw import free_port

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat.py"

pytestmark = pytest.mark.timeout(60)


def cut_on_server(server: ServerThread, name: str) -> None:
    """Drop the connection of the member called `name` in the server, without a close frame."""

    def abort() -> None:
        conns = [c for c in server.server.connections.values() if name in c.state.get("names", {}).values()]
        assert len(conns) == 1
        conns[0].abort()

    server.call(abort)


def test_a_cut_member_resumes_with_all_it_missed_and_the_room_sees_nothing(nodes) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        say(bob, "r", "before")
        seen = read_until(ann, text_is("before"))
        assert seen[0]["type"] == "member_joined" and seen[1]["seq"] == seen[0]["seq"] + 1
        token, last = ann.session, position(seen[-1])
        assert token is not None
        cut_on_server(server, "ann")
        for i in range(50):
            say(bob, "r", f"m{i}")
        with connect(server.url) as ann2:
            answer = resume(ann2, token, {"r": last})
            assert answer["recovered"] is True and answer["restored"] is True
            assert answer["session"] not in (token, "") and answer["lost"] == [] and answer["replayed"] == 50
            missed = [ann2.recv_json(timeout=5) for _ in range(50)]
            assert [m["text"] for m in missed] == [f"m{i}" for i in range(50)]
            assert [m["seq"] for m in missed] == list(range(last["seq"] + 1, last["seq"] + 51))
            # live messages go on from there, with no gap and no duplicate
            say(bob, "r", "after")
            assert ann2.recv_json(timeout=5)["seq"] == last["seq"] + 51
            # the session is whole: ann is still in the room under her name
            say(ann2, "r", "ann is back")
            by = read_until(bob, text_is("ann is back"))
            assert by[-1]["name"] == "ann"
            assert [m for m in by if m["type"] != "message"] == []  # no member_left / joined
            assert join(bob, "r", "bob")["members"] == ["ann", "bob"]


def test_rooms_the_session_did_not_join_are_not_replayed(nodes) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        join(ann, "mine", "ann")
        join(bob, "mine", "bob")
        join(bob, "other", "bob")
        token = ann.session
        assert token is not None
        ann.abort()
        say(bob, "other", "not for ann")
        say(bob, "mine", "for ann")
        with connect(server.url) as ann2:
            # asking for a room it never joined gets nothing of it
            answer = resume(ann2, token, {"other": {"seq": 0, "epoch": ""}})
            assert answer["recovered"] is True
            # replayed, or live right after `resumed` when this node had not yet received it
            replay = read_until(ann2, text_is("for ann"))
            assert [m["room"] for m in replay] == ["mine"] * len(replay)
            say(bob, "other", "marker")  # nothing of "other" reaches ann2, now or live
            say(bob, "mine", "marker2")
            assert ann2.recv_json(timeout=5)["text"] == "marker2"


def test_resume_on_another_node(shared_redis) -> None:
    nodes_ = []
    for _ in range(2):
        app = chat_app()
        app.use_backplane(RedisBackplane(shared_redis.url))
        nodes_.append(ServerThread(app).start())
    a, b = nodes_
    try:
        with connect(a.url) as ann, connect(b.url) as bob:
            join(ann, "r", "ann")
            join(bob, "r", "bob")
            ann.request({"type": "say", "room": "r", "text": "one"})
            last = position(read_until(ann, text_is("one"))[-1])
            token = ann.session
            assert token is not None
            cut_on_server(a, "ann")
            for i in range(10):
                say(bob, "r", f"m{i}")
            with connect(b.url) as ann2:  # the other node
                answer = resume(ann2, token, {"r": last})
                assert (answer["recovered"], answer["replayed"]) == (True, 10)
                assert [ann2.recv_json(timeout=5)["text"] for _ in range(10)] == [f"m{i}" for i in range(10)]
                say(ann2, "r", "from b")
                by = read_until(bob, text_is("from b"))
                assert by[-1]["name"] == "ann" and all(m["type"] == "message" for m in by)
                # node a let the member go silently when its grace ran out: still present once
                assert join(bob, "r", "bob")["members"] == ["ann", "bob"]
    finally:
        a.stop()
        b.stop()


def test_trimmed_history_is_not_recovered(nodes, backplane) -> None:
    server = nodes(history=10)
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        # Redis trims a stream with MAXLEN ~ by whole nodes (100 entries): go well past them
        total = 300 if backplane == "redis" else 30
        for i in range(total):
            say(bob, "r", f"m{i}")
        with connect(server.url) as ann2:
            answer = resume(ann2, token)
            assert answer["recovered"] is False and answer["restored"] is True
            # lost, and what is left of the history is replayed: the newest, in order
            kept = answer["replayed"]
            assert answer["lost"] == ["r"] and (kept == 10 if backplane == "local" else 10 <= kept < total)
            texts = [ann2.recv_json(timeout=5)["text"] for _ in range(kept)]
            assert texts == [f"m{i}" for i in range(total - kept, total)]
            say(bob, "r", "live")  # still a member: live messages come
            assert ann2.recv_json(timeout=5)["text"] == "live"


def test_flushall_gives_a_new_epoch_and_no_recovery(shared_redis) -> None:
    app = chat_app()
    app.use_backplane(RedisBackplane(shared_redis.url))
    with ServerThread(app) as server, connect(server.url) as ann, connect(server.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        say(bob, "r", "before")
        before = read_until(ann, text_is("before"))[-1]
        token = ann.session
        assert token is not None
        ann.abort()
        wait_kept(server)  # saved before the flush, so that the flush takes it
        shared_redis.command("FLUSHALL")
        say(bob, "r", "after")
        after = read_until(bob, text_is("after"))[-1]
        assert after["epoch"] != before["epoch"] and after["seq"] == 1
        with connect(server.url) as ann2:
            answer = resume(ann2, token, {"r": position(before)})
            assert answer["recovered"] is False and answer["restored"] is False  # the session went too
            assert answer["session"] == ann2.session != token


def test_an_epoch_that_changed_is_lost(nodes) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        say(bob, "r", "x")
        with connect(server.url) as ann2:
            answer = resume(ann2, token, {"r": {"seq": 1, "epoch": "another"}})
            assert (answer["recovered"], answer["restored"], answer["lost"]) == (False, True, ["r"])


def test_an_expired_session_is_not_recovered(nodes) -> None:
    server = nodes(window=0.3, grace=0.1)
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        # the grace ends first: the room hears ann left, once
        assert read_until(bob, lambda m: m["type"] == "member_left")[-1]["name"] == "ann"
        deadline = time.monotonic() + 5
        while True:  # until the window has passed (expiry is the store's clock, not ours)
            with connect(server.url) as ann2:
                answer = resume(ann2, token)
            if not answer["restored"] or time.monotonic() > deadline:
                break
            token = answer["session"]  # it resumed: drop it again and wait longer
            ann2.abort()
            time.sleep(0.1)  # not synchronisation: lets the 0.3 s window run out
        assert answer["recovered"] is False and answer["restored"] is False


def test_after_the_grace_a_resume_joins_again_and_the_room_hears_it(nodes) -> None:
    server = nodes(grace=0.2)
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        left = read_until(bob, lambda m: m["type"] == "member_left")
        assert left[-1]["name"] == "ann"
        say(bob, "r", "while away")
        with connect(server.url) as ann2:
            answer = resume(ann2, token)
            assert answer["restored"] is True and answer["recovered"] is True
            got = [ann2.recv_json(timeout=5) for _ in range(answer["replayed"])]
            assert "while away" in [m.get("text") for m in got]
            back = read_until(bob, lambda m: m["type"] == "member_joined")
            assert back[-1]["name"] == "ann"
            assert join(bob, "r", "bob")["members"] == ["bob", "ann"]


def test_a_clean_close_leaves_at_once(nodes) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.close()  # 1000
        assert read_until(bob, lambda m: m["type"] == "member_left")[-1]["name"] == "ann"
        with connect(server.url) as ann2:
            assert resume(ann2, token)["restored"] is False


def test_resume_must_come_first(nodes) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        join(ann, "r", "ann")
        token = ann.session
        assert token is not None
        ann.abort()
        join(bob, "r", "bob")
        with pytest.raises(RequestError, match="resume_refused"):
            resume(bob, token)
        with connect(server.url) as ann2:  # the session was not taken by the refused resume
            assert resume(ann2, token)["recovered"] is True


def test_a_resume_while_the_old_connection_looks_alive(nodes) -> None:
    """A phone that changed networks: the server has not seen the old TCP connection die."""
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        with connect(server.url) as ann2:
            answer = resume(ann2, token)
            assert answer["recovered"] is True
            # no position given: from where ann joined, so bob's arrival comes again
            assert ann2.recv_json(timeout=5)["type"] == "member_joined"
            say(bob, "r", "to the new one")
            assert ann2.recv_json(timeout=5)["text"] == "to the new one"
        ann.close()


def test_another_identity_cannot_resume_a_session(nodes) -> None:
    server = nodes()
    app: App = server.app  # type: ignore[assignment]

    @app.authenticate
    def by_query(request: Any) -> str:
        user = request.query.get("user", [""])[0]
        if not user:
            raise AppRefusal(401, "who?")
        return str(user)

    with connect(server.url + "?user=ann") as ann:
        join(ann, "r", "ann")
        token = ann.session
        assert token is not None
        with connect(server.url + "?user=eve") as eve:
            with pytest.raises(RequestError) as refused:
                resume(eve, token)
            assert refused.value.code == "resume_refused"
        # refused before anything changed: ann's live connection and her session are intact
        assert ann.request({"type": "say", "room": "r", "text": "still here"})["type"] == "said"
        ann.abort()
        with connect(server.url + "?user=ann") as ann2:
            answer = resume(ann2, token)
            assert answer["restored"] is True and answer["session"] != token


def test_our_client_resumes_by_itself(nodes) -> None:
    server = nodes()
    with connect(server.url, resume=True) as ann, connect(server.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        say(bob, "r", "first")
        joined, first = read_until(ann, text_is("first"))
        assert first["seq"] == joined["seq"] + 1
        cut_on_server(server, "ann")
        for i in range(5):
            say(bob, "r", f"m{i}")
        # the next recv finds the connection gone, opens another and resumes
        got = [ann.recv_json(timeout=10) for _ in range(5)]
        assert [m["text"] for m in got] == [f"m{i}" for i in range(5)]
        assert ann.resumed is not None and ann.resumed["recovered"] is True and ann.reconnects == 1
        assert ann.positions["r"]["seq"] == got[-1]["seq"]


def test_metrics_count_resumes(nodes) -> None:
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        token = both_join(ann, bob)
        ann.abort()
        say(bob, "r", "x")
        with connect(server.url) as ann2:
            assert resume(ann2, token)["replayed"] == 2  # from ann's join: bob's arrival, "x"
        with connect(server.url) as eve:
            resume(eve, "unknown")
    figures = server.call(lambda: server.app.metrics())
    assert figures["websock_resumes_total"] == {"recovered": 1, "partial": 0, "fresh": 1, "refused": 0}
    assert figures["websock_replayed_messages_total"] == {"": 2}


def test_a_drained_server_sends_its_clients_to_resume_elsewhere(shared_redis) -> None:
    """SIGTERM with Redis (the CLI's `--redis`): the sessions are kept, every client is
    closed with 1012, and resumes on another node with everything (here: in this process)."""
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", "examples.chat:app", "--no-patch"]
    command += ["--port", str(port), "--redis", shared_redis.url]
    node = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ann = connect(f"ws://127.0.0.1:{port}/", open_timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # polling the subprocess's port until it listens
        app = chat_app()
        app.use_backplane(RedisBackplane(shared_redis.url))
        with ServerThread(app) as other, ann, connect(other.url) as bob:
            join(ann, "r", "ann")
            join(bob, "r", "bob")
            last = position(read_until(ann, lambda m: m["type"] == "member_joined")[-1])
            token = ann.session
            assert token is not None
            node.send_signal(signal.SIGTERM)
            assert node.wait(timeout=20) == 0
            with pytest.raises(ConnectionClosed):
                ann.recv(timeout=5)
            assert ann.close_code == 1012
            say(bob, "r", "while moving")
            with connect(other.url) as ann2:
                answer = resume(ann2, token, {"r": last})
                assert (answer["recovered"], answer["restored"], answer["replayed"]) == (True, True, 1)
                assert ann2.recv_json(timeout=5)["text"] == "while moving"
                say(ann2, "r", "moved")
                by = read_until(bob, text_is("moved"))
                assert all(m["type"] == "message" for m in by), by  # no member_left, no member_joined
                assert join(bob, "r", "bob")["members"] == ["ann", "bob"]
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()


def test_a_drained_nodes_members_that_do_not_come_back_are_reported_left_once(shared_redis) -> None:
    """Their node is gone, so another node ends their grace: the one whose claim counts."""
    servers = []
    for _ in range(3):
        app = chat_app(grace=1.5)  # longer than a's drain: its own timer must not end it
        app.use_backplane(RedisBackplane(shared_redis.url, heartbeat=0.2))
        servers.append(ServerThread(app).start())
    a, b, c = servers
    try:
        with connect(a.url) as ann, connect(b.url) as bob, connect(c.url) as cy:
            join(ann, "r", "ann")
            join(bob, "r", "bob")
            join(cy, "r", "cy")
            a.stop()  # drains: ann is closed with 1012, her session kept in Redis
            with pytest.raises(ConnectionClosed):
                while True:  # what she was sent before, then the close
                    ann.recv(timeout=5)
            assert ann.close_code == 1012
            for ws in (bob, cy):
                left = read_until(ws, lambda m: m["type"] == "member_left", timeout=15)
                assert left[-1]["name"] == "ann"
            say(bob, "r", "marker")
            for ws in (bob, cy):  # once: no second member_left before the marker
                assert [m["type"] for m in read_until(ws, text_is("marker"))] == ["message"]
            assert join(bob, "r", "bob")["members"] == ["bob", "cy"]
            graces = sum(s.call(lambda s=s: s.app.rooms.liveness.graces_ended) for s in (b, c))
            assert graces == 1
    finally:
        for server in servers:
            server.stop()


def test_a_replay_never_reaches_back_before_the_members_join(nodes) -> None:
    """A client that left, joined again and heard nothing since holds an older position."""
    server = nodes()
    with connect(server.url) as ann, connect(server.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        say(bob, "r", "heard")
        old = position(read_until(ann, text_is("heard"))[-1])
        ann.request({"type": "leave", "room": "r"})
        say(bob, "r", "said while ann was out")
        # Kept is not yet delivered: through Redis the node hears its own broadcast a little
        # later, and a member joining before that gets it live (and in a replay). Once bob
        # has it, the node is past it, and ann's join starts after it.
        read_until(bob, text_is("said while ann was out"))
        join(ann, "r", "ann")
        token = ann.session
        assert token is not None
        ann.abort()
        say(bob, "r", "missed")
        with connect(server.url) as ann2:
            answer = resume(ann2, token, {"r": old})
            assert (answer["recovered"], answer["replayed"]) == (True, 1)
            assert ann2.recv_json(timeout=5)["text"] == "missed"
