"""`--redis redis+sentinel://...`: the master found through Sentinel and followed on failover.

Real processes on 127.0.0.1 (tests/support/redis_sentinel.py: a master, a replica, three
sentinels with a 1 s down-after), the chat demo on two nodes, real clients. The delivery
contract is checked by the chaos run's checker (benchmarks/chaos_check.py): every
acknowledged message reaches every member, or the member is told (`room_lost`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from benchmarks.chaos_check import Names, check
from websock_actors import RedisBackplane
from websock_actors.client import connect
from websock_actors.errors import ConfigurationError, RequestError
from websock_actors.protocol.redact import mask_url
from websock_actors.scale.redis_connect import connector
from websock_actors.scale.redis_urls import parse_redis_url
from websock_actors.testing import ServerThread

from ..support.apps import chat_nodes_on, fresh_chat_app
from ..support.chat import join, position, read_until, resume, say, text_is, wait_kept
from ..support.chat_traffic import Member, Sayer, unreplicated_broadcasts
from ..support.elsewhere import emit_elsewhere
from ..support.redis_sentinel import MASTER_NAME
from ..support.redis_server import resp_command
from ..support.waits import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sentinel_nodes(redis_sentinel: Any) -> Iterator[Callable[..., tuple[ServerThread, RedisBackplane]]]:
    """`node()`: a chat server (resumption on) on a RedisBackplane through the sentinels."""
    with chat_nodes_on(redis_sentinel.url) as start:
        yield start


def master_clients(port: int) -> int:
    """The nodes' connections to the Redis on `port`: not the sentinels', the replication
    links (flags S, M), or the one asking."""
    lines = resp_command(port, "CLIENT", "LIST").decode().splitlines()
    return sum(
        1 for line in lines
        if "name=sentinel-" not in line and " flags=S " not in line and " flags=M " not in line
        and "cmd=client|list" not in line
    )  # fmt: skip


# -- the URL -------------------------------------------------------------------------------------


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    target = parse_redis_url("redis+sentinel://:s3cret@10.0.0.1:26379,[::1]:26380/main/3")
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (target.master, target.kwargs) == ("main", {"db": 3, "password": "s3cret"})
    assert "s3cret" not in target.shown and "s3cret" not in mask_url("redis+sentinel://u:s3cret@h:1/m")
    assert parse_redis_url("redis+sentinel://h:1/m").kwargs == {"db": 0}


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://h:1", "redis+sentinel://h/m", "redis+sentinel://h:1,h:x/m", "redis+sentinel://h:1/m/x",
     "redis+sentinel://:pw@h:99999/m", "rediss+cluster://h:1/", "unix:///tmp/redis.sock"],
)  # fmt: skip
def test_a_bad_url_is_a_configuration_error_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RedisBackplane(url)
    assert "pw" not in str(caught.value)


# -- through the sentinels -----------------------------------------------------------------------


def test_chat_across_two_nodes_through_sentinel(sentinel_nodes, redis_sentinel) -> None:
    (a, _), (b, _) = sentinel_nodes(), sentinel_nodes()
    with connect(a.url) as ann, connect(b.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        say(ann, "r", "hello")
        got = read_until(bob, text_is("hello"))[-1]
        assert got["name"] == "ann" and got["seq"] >= 1
    # every connection went to the master the sentinels named, none to the replica
    assert master_clients(redis_sentinel.master.port) >= 6
    assert master_clients(redis_sentinel.replica.port) == 0


def test_the_emitter_publishes_through_sentinel(sentinel_nodes, redis_sentinel) -> None:
    (a, _), (b, _) = sentinel_nodes(), sentinel_nodes()
    with connect(a.url) as ann, connect(b.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        message = {"type": "message", "room": "r", "name": "ops", "text": "from afar", "ts": 0.0}
        done = emit_elsewhere(redis_sentinel.url, "broadcast", "r", message, options={"numbered": True})
        assert done.get("nodes") == 2 and done.get("seq"), done
        for ws in (ann, bob):
            assert read_until(ws, text_is("from afar"))[-1]["seq"] == done["seq"]


# -- a failover under traffic ----------------------------------------------------------------------


@pytest.mark.timeout(45)
@pytest.mark.parametrize("failover", ["kill -9", "SENTINEL FAILOVER"])
def test_a_failover_under_traffic_leaves_no_silent_gap(sentinel_nodes, redis_sentinel, failover) -> None:
    """The master is killed with -9 (or Sentinel is told to fail over: the old master lives
    on, demoted, its clients closed by Sentinel) while a sender on node A says a numbered
    sequence to members on both nodes. Its last writes never reached the replica; the
    promoted replica must not number on from its older seq in the same epoch (members would
    drop the new messages as duplicates, in silence): every member gets every acknowledged
    message or a `room_lost`, and traffic resumes through the new master."""
    (a, bp_a), (b, bp_b) = sentinel_nodes(), sentinel_nodes()
    names = Names()
    members = [Member(name, node.url, names) for name, node in (("a1", a), ("b1", b), ("b2", b))]
    old_port = redis_sentinel.master.port
    with connect(a.url) as ws:
        join(ws, "r", "sayer")
        sayer = Sayer(ws, "r", names)
        while sayer.acked < 20:
            assert sayer.say_one(), "a say failed before the failover"
        unreplicated_broadcasts(old_port, ["lost1", "lost2", "lost3"])
        for member in members:
            wait_until(lambda m=member: m.log.receipts >= 23, 5, "the unreplicated broadcasts delivered")
        if failover == "kill -9":
            redis_sentinel.master.kill()
        else:
            assert redis_sentinel.sentinels[0].command("SENTINEL", "FAILOVER", MASTER_NAME) == "OK"
        sayer.until(30)  # through the failover: refused says are retried as new messages
        new_port = redis_sentinel.wait_failover(old_port)
        assert new_port == redis_sentinel.replica.port
        if failover != "kill -9":  # it takes writes until Sentinel demotes it (then lost too)
            demoted = lambda: redis_sentinel.master.command("ROLE")[0] == b"slave"  # noqa: E731
            wait_until(demoted, 15, "the old master demoted")
        sayer.until(40, most=4000)  # refused while the nodes reconnect, for a demoted master
        assert ws.request({"type": "say", "room": "r", "text": "end"})["type"] == "said"
        for member in members:
            assert member.saw_end.wait(15), f"{member.log.name} did not get the end"
    for member in members:
        member.thread.join(5)
        assert member.failure == [], (member.log.name, member.failure)
    result = check([sayer.log] + [m.log for m in members])
    assert result["gaps_unreported"] == 0, result
    assert (result["duplicates"], result["out_of_order"]) == (0, 0), result
    assert result["expected_deliveries"] >= 3 * 40, result
    # the promoted replica began a new epoch, which every member was told about
    reports = {m.log.name: [source for _, _, source in m.log.reports] for m in members}
    assert all("room_lost" in sources for sources in reports.values()), reports
    wait_until(lambda: bp_a.connected and bp_b.connected, 10, "both nodes connected again")
    # every connection of both nodes (commands, publisher, subscribers, heartbeats) moved
    wait_until(lambda: master_clients(new_port) >= 2 * 4, 10, "both nodes' connections on the new master")


# -- a master demoted under the nodes' feet ------------------------------------------------------------


def test_a_demoted_master_answering_readonly_is_left_for_the_new_one(sentinel_nodes, redis_sentinel) -> None:
    """The roles swap without Sentinel killing the old master's clients (an operator's
    REPLICAOF, the sentinels told to watch the new master): the nodes' connections to the
    old one stay open and their writes get READONLY. One say may fail; the node then asks
    the sentinels again and goes on with the new master, not failing every write."""
    a, _ = sentinel_nodes()
    old, new = redis_sentinel.master, redis_sentinel.replica
    with connect(a.url) as ann, connect(a.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        say(ann, "r", "before")
        read_until(bob, text_is("before"))
        new.command("REPLICAOF", "NO", "ONE")
        for sentinel in redis_sentinel.sentinels:
            sentinel.command("SENTINEL", "REMOVE", MASTER_NAME)
            sentinel.command("SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", new.port, 2)
        old.command("REPLICAOF", "127.0.0.1", new.port)
        assert old.command("ROLE")[0] == b"slave"
        refused = 0
        for i in range(5):
            while True:
                try:
                    ann.request({"type": "say", "room": "r", "text": f"after{i}"})
                    break
                except RequestError as exc:
                    assert "backplane_unavailable" in str(exc), exc
                    refused += 1
                    assert refused <= 3, "the node keeps writing to the demoted master"
                    threading.Event().wait(0.1)  # the publisher reconnects meanwhile
        got = read_until(bob, text_is("after4"))
        assert [m["text"] for m in got if m.get("type") == "message"] == [f"after{i}" for i in range(5)]
        assert 1 <= refused <= 3
    assert master_clients(new.port) >= 1  # the publisher, at least, moved


def test_a_resume_after_a_failover_that_lost_writes_is_told_lost(sentinel_nodes, redis_sentinel) -> None:
    """Ann drops out after seq 3; broadcasts 4-6 reach the master but never its replica;
    the master dies. Ann resumes on the other node, which has no member of the room, and no
    broadcast follows: she must be told `lost` (the promoted replica's stream ends at 3 in
    the same epoch, which would look complete)."""
    (a, _), (b, bp_b) = sentinel_nodes(), sentinel_nodes()
    with connect(a.url) as ann, connect(a.url) as bob:
        join(ann, "r", "ann")
        join(bob, "r", "bob")
        token = ann.session
        assert token is not None
        for i in range(3):
            say(bob, "r", f"m{i}")
        last = position(read_until(ann, text_is("m2"))[-1])
        ann.abort()
        wait_kept(a)
        unreplicated_broadcasts(redis_sentinel.master.port, ["lost1", "lost2", "lost3"])
        read_until(bob, text_is("lost3"))
        old_port = redis_sentinel.master.port
        redis_sentinel.master.kill()
        redis_sentinel.wait_failover(old_port)
        wait_until(lambda: bp_b.connected, 10, "node B connected to the new master")
        with connect(b.url) as ann2:
            answer = wait_until(lambda: resumed(ann2, token, last), 10, "a resume answered")
            assert answer["lost"] == ["r"], answer


def resumed(ws: Any, token: str, last: dict[str, Any]) -> dict[str, Any] | None:
    """The resume's answer; None while Redis refuses it (the failover's tail)."""
    try:
        return resume(ws, token, {"r": last})
    except RequestError as exc:
        assert "backplane_unavailable" in str(exc), exc
        return None


def test_a_master_name_the_sentinels_do_not_know_is_an_outage_that_says_so(redis_sentinel, caplog) -> None:
    """A typo in MASTER_NAME: the server starts not ready, a join is refused (never hangs),
    and the log names the sentinels' answer."""
    url = redis_sentinel.url.replace(f"/{MASTER_NAME}/", "/no-such-master/")
    app = fresh_chat_app()
    backplane = RedisBackplane(url)
    app.use_backplane(backplane)
    server = ServerThread(app).start()
    try:
        with connect(server.url) as ann:
            with pytest.raises(RequestError) as refused:
                join(ann, "r", "ann")
            assert "backplane_unavailable" in str(refused.value)
        assert not backplane.connected
    finally:
        server.stop()
    assert "knows no master 'no-such-master'" in caplog.text


def test_a_server_the_sentinels_name_that_is_not_the_master_is_refused(redis_sentinel) -> None:
    """The sentinels may name a master that is no longer one (they have not seen the change
    yet): the connection checks ROLE and fails like a refused one, to be tried again."""
    connect = connector(redis_sentinel.url, connect_timeout=2.0, timeout=2.0)
    conn = connect()
    conn.connect()
    conn.send_command("PING")
    assert conn.read_response() == b"PONG" and conn.port == redis_sentinel.master.port
    conn.disconnect()
    redis_sentinel.master.command("REPLICAOF", "127.0.0.1", redis_sentinel.replica.port)  # behind their back
    refused = connect()
    with pytest.raises(redis.ConnectionError, match="is not the master of 'wsa-master'"):
        refused.connect()
    assert refused._sock is None  # not left half-open
