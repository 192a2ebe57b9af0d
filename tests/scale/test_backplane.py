"""The Redis backplane against a real redis-server (started by the `redis_server` fixture):
two servers sharing one Redis act as two hosts of one chat.

Each "host" is a ServerThread serving its own copy of the chat demo (the module loaded
twice, so each has its own App and RedisBackplane); the dead-node case runs a node in a
subprocess so that it can be killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from websock_actors import BackplaneUnavailable, RedisBackplane, WebSocketError
from websock_actors.client import connect
from websock_actors.errors import RequestError
from websock_actors.testing import ServerThread

from ..support.apps import RoomSequence, chat_nodes_on, unnumbered
from ..support.apps import fresh_chat_app as chat_app
from ..support.raw import free_port
from ..support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat.py"

pytestmark = pytest.mark.timeout(90)

@pytest.fixture
def nodes(redis_server: Any) -> Iterator[Callable[..., tuple[ServerThread, RedisBackplane]]]:
    """`node(resume=True, **backplane_options)`: a chat server on its own RedisBackplane."""
    with chat_nodes_on(redis_server.url) as start:
        yield start


def drain_until(ws: Any, wanted: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
    """Read pushes until one matches (those before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = ws.recv_json(timeout=max(0.01, deadline - time.monotonic()))
        if wanted(message):
            return message


def test_two_hosts_one_chat(nodes) -> None:
    (a, bp_a), (b, bp_b) = nodes(), nodes()
    with connect(a.url) as ann, connect(b.url) as bob, connect(b.url) as cy:
        # Numbered by Redis, each room's broadcasts reach every member in seq order, on every node.
        seqs = {ws: RoomSequence() for ws in (ann, bob, cy)}

        def push(ws: Any) -> dict[str, Any]:
            return seqs[ws](ws.recv_json(timeout=5))

        assert ann.request({"type": "join", "room": "r", "name": "ann"})["members"] == ["ann"]
        assert bob.request({"type": "join", "room": "r", "name": "bob"})["members"] == ["ann", "bob"]
        assert push(ann) == {"type": "member_joined", "room": "r", "name": "bob"}
        assert cy.request({"type": "join", "room": "r", "name": "cy"})["members"] == ["ann", "bob", "cy"]
        assert push(ann)["name"] == "cy"
        assert push(bob)["name"] == "cy"  # same node: delivered locally, once

        bob.request({"type": "say", "room": "r", "text": "from b"})
        for ws in (ann, bob, cy):
            got = push(ws)
            assert (got["type"], got["name"], got["text"]) == ("message", "bob", "from b")
        ann.request({"type": "say", "room": "r", "text": "from a"})
        for ws in (ann, bob, cy):
            got = push(ws)
            assert (got["type"], got["text"]) == ("message", "from a")
        assert seqs[ann].last["r"] == seqs[bob].last["r"] == seqs[cy].last["r"]  # the same numbers

        # exactly once: a marker said after everything arrives right after it, nothing doubled
        ann.request({"type": "leave", "room": "r"})
        for ws in (bob, cy):
            assert push(ws) == {"type": "member_left", "room": "r", "name": "ann"}
        bob.request({"type": "say", "room": "r", "text": "marker"})
        assert push(cy)["text"] == "marker"
        assert cy.request({"type": "join", "room": "r", "name": "cy"})["members"] == ["bob", "cy"]
    assert bp_a.stats.own >= 1 and bp_b.stats.received >= 1  # a's publishes echo back to a, unread
    assert bp_a.stats.publish_failures == bp_b.stats.publish_failures == 0


def test_a_node_never_receives_rooms_it_has_no_members_in(nodes, redis_server) -> None:
    (a, bp_a), (b, bp_b) = nodes(), nodes()
    with connect(a.url) as ann, connect(b.url) as bob:
        ann.request({"type": "join", "room": "only-on-a", "name": "ann"})
        bob.request({"type": "join", "room": "elsewhere", "name": "bob"})
        before = bp_b.stats.received
        for i in range(50):
            ann.request({"type": "say", "room": "only-on-a", "text": f"m{i}"})
        for i in range(50):
            assert drain_until(ann, lambda m: m["type"] == "message")["text"] == f"m{i}"
        # b holds no member of the room: Redis has one subscriber for it (a), none for b
        numsub = redis_server.command("PUBSUB", "NUMSUB", "wsa:room:only-on-a")
        assert numsub[1] == 1
        assert bp_b.stats.received == before and bp_b.stats.foreign == 0
        assert bp_a.stats.published >= 50


def test_last_member_leaving_unsubscribes_after_the_linger(nodes, redis_server) -> None:
    (a, bp_a), _ = nodes(linger=0.2), nodes()
    with connect(a.url) as ann:
        ann.request({"type": "join", "room": "brief", "name": "ann"})
        assert redis_server.command("PUBSUB", "NUMSUB", "wsa:room:brief")[1] == 1
        ann.request({"type": "leave", "room": "brief"})
        wait_until(
            lambda: redis_server.command("PUBSUB", "NUMSUB", "wsa:room:brief")[1] == 0, 5, "unsubscribe"
        )
        assert bp_a.subscriber.unsubscribes == 1
        assert redis_server.command("ZCARD", "wsa:presence:brief") == 0


def test_pubsub_connections_killed_the_nodes_resubscribe(nodes, redis_server) -> None:
    (a, bp_a), (b, bp_b) = nodes(), nodes()
    with connect(a.url) as ann, connect(b.url) as bob:
        ann.request({"type": "join", "room": "r", "name": "ann"})
        bob.request({"type": "join", "room": "r", "name": "bob"})
        redis_server.client_kill_pubsub()
        wait_until(
            lambda: bp_a.subscriber.reconnects and bp_b.subscriber.reconnects, 10, "both nodes reconnecting"
        )
        wait_until(
            lambda: redis_server.command("PUBSUB", "NUMSUB", "wsa:room:r")[1] == 2, 10, "resubscription"
        )
        bob.request({"type": "say", "room": "r", "text": "after the kill"})
        assert drain_until(ann, lambda m: m["type"] == "message")["text"] == "after the kill"


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "numbered"])
def test_redis_restart_publishes_fail_visibly_then_everything_comes_back(nodes, redis_server, resume) -> None:
    (a, bp_a), (b, bp_b) = nodes(resume), nodes(resume)
    with connect(a.url) as ann, connect(a.url) as al, connect(b.url) as bob:
        ann.request({"type": "join", "room": "r", "name": "ann"})
        al.request({"type": "join", "room": "r", "name": "al"})
        bob.request({"type": "join", "room": "r", "name": "bob"})
        for ws in (ann, ann, al):
            joined = drain_until(ws, lambda m: m["type"] == "member_joined")
        assert ("epoch" in joined) is resume

        redis_server.kill()
        # at once: its sockets end. Both of them: `connected` is false as soon as one side (the
        # subscriber, often) knows; a publish the publisher takes before it knows is lost later,
        # and its sender was answered `said` (the module's docstring).
        wait_until(lambda: not bp_a.connected and not bp_a._publisher.healthy, 5, "node a noticing")
        with pytest.raises(RequestError) as refused:
            ann.request({"type": "say", "room": "r", "text": "during the outage"})
        assert refused.value.code == "backplane_unavailable"
        if not resume:
            # ... but the members on this node got it (the sender too): local delivery keeps working
            for ws in (al, ann):
                assert drain_until(ws, lambda m: m["type"] == "message")["text"] == "during the outage"
        # (numbered, it reaches no one: only Redis numbers a room's broadcasts; checked below)
        assert bp_a.stats.publish_failures == 1
        with pytest.raises(RequestError) as no_join:
            al.request({"type": "join", "room": "new", "name": "al"})
        assert no_join.value.code == "backplane_unavailable"
        al_conn = bp_a.local.members("r")[1]
        assert not bp_a.is_member(al_conn, "new")  # the failed join was undone

        redis_server.restart()  # empty: no persistence
        wait_until(lambda: bp_a.connected and bp_b.connected, 15, "both nodes reconnecting")
        # the heartbeat writes each node's presence again
        wait_until(lambda: redis_server.command("ZCARD", "wsa:presence:r") == 3, 10, "presence rewritten")
        bob.request({"type": "say", "room": "r", "text": "back"})
        for ws in (ann, al):
            if resume:  # told the room's history was lost, then the next message, of a new epoch
                lost = ws.recv_json(timeout=5)
                assert lost["type"] == "room_lost" and lost["room"] == "r"
                assert lost["epoch"] != joined["epoch"]
                back = ws.recv_json(timeout=5)
                assert unnumbered(back)["text"] == "back" and back["epoch"] != joined["epoch"]
            else:
                assert drain_until(ws, lambda m: m["type"] == "message")["text"] == "back"
        assert bob.request({"type": "join", "room": "r2", "name": "bob"})["members"] == ["bob"]


def test_a_killed_nodes_members_are_reported_left_within_30_s(nodes, redis_server) -> None:
    survivor, bp = nodes()
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", "examples.chat:app", "--port", str(port)]
    doomed = subprocess.Popen(
        [*command, "--no-patch", "--redis", redis_server.url], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert doomed.stdout is not None
        assert "serving" in doomed.stdout.readline()
        with connect(survivor.url) as ann, connect(f"ws://127.0.0.1:{port}/") as ghost:
            ann.request({"type": "join", "room": "r", "name": "ann"})
            assert ghost.request({"type": "join", "room": "r", "name": "ghost"})["members"] == [
                "ann",
                "ghost",
            ]
            assert ann.recv_json(timeout=5)["name"] == "ghost"
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(10)
            started = time.monotonic()
            left = unnumbered(ann.recv_json(timeout=30))
            assert left == {"type": "member_left", "room": "r", "name": "ghost"}
            assert time.monotonic() - started < 30
            assert ann.request({"type": "join", "room": "r", "name": "ann"})["members"] == ["ann"]
        assert bp.liveness.lost_members == 1
        assert redis_server.command("ZSCORE", "wsa:nodes", bp.node) is not None  # the survivor lives
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)


def test_each_start_is_a_new_node_and_bad_urls_are_refused() -> None:
    from websock_actors import ConfigurationError

    assert RedisBackplane().node != RedisBackplane().node
    for url in ("rediss://127.0.0.1:6379/0", "unix:///tmp/redis.sock", "http://x"):
        with pytest.raises(ConfigurationError):
            RedisBackplane(url)


def test_a_broadcast_without_redis_raises_after_delivering_locally(serve) -> None:
    """No Redis at all (a closed port): the app still serves its local members."""
    app = chat_app()
    backplane = RedisBackplane(f"redis://127.0.0.1:{free_port()}/0", join_timeout=1.0)
    app.use_backplane(backplane)
    server = serve(app)
    with connect(server.url) as ann:
        with pytest.raises(RequestError) as refused:
            ann.request({"type": "join", "room": "r", "name": "ann"})
        assert refused.value.code == "backplane_unavailable"
    assert issubclass(BackplaneUnavailable, WebSocketError)
