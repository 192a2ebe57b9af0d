"""`--redis redis+cluster://...`: rooms spread over a Redis Cluster's masters, sharded pub/sub.

Real processes on 127.0.0.1 (tests/support/redis_cluster.py: 3 masters, 3 replicas, a 1 s
node timeout), the chat demo on two nodes, real clients.
"""

from __future__ import annotations

import statistics
from binascii import crc_hqx
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.chaos_check import Names, check
from websock_actors import App, RedisBackplane
from websock_actors.client import connect
from websock_actors.errors import ConfigurationError
from websock_actors.scale.redis_keys import PARTITIONS, SLOTS, Keyspace, partition_tags
from websock_actors.scale.redis_urls import parse_redis_url
from websock_actors.testing import ServerThread

from ..support.apps import chat_nodes_on, fresh_chat_app, two_nodes_on
from ..support.chat import join, read_until, say, text_is
from ..support.chat_traffic import Member, Sayer, unreplicated_broadcasts
from ..support.elsewhere import emit_elsewhere
from ..support.users_app import Notice, notice, users_app
from ..support.users_app import member as user
from ..support.waits import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cluster_nodes(redis_cluster: Any) -> Iterator[Callable[..., tuple[ServerThread, RedisBackplane]]]:
    """`node()`: a chat server (resumption on) on a RedisBackplane over the cluster."""
    with chat_nodes_on(redis_cluster.url) as start:
        yield start


# -- names and URLs (no cluster needed) ----------------------------------------------------------


def test_a_cluster_url_names_its_seeds_and_nothing_else() -> None:
    target = parse_redis_url("redis+cluster://:s3cret@10.0.0.1:7000,[::1]:7001/")
    assert target.cluster and not target.sentinel
    assert target.seeds == (("10.0.0.1", 7000), ("::1", 7001))
    assert target.kwargs == {"password": "s3cret"} and "s3cret" not in target.shown
    for bad in ("redis+cluster://h/", "redis+cluster://h:1/0", "redis+cluster://h:1,h:x/"):
        with pytest.raises(ConfigurationError):
            parse_redis_url(bad)


def test_rooms_spread_over_the_slots_as_evenly_as_crc16_spreads_names() -> None:
    """100,000 rooms over 3 masters' contiguous slot ranges, as `redis-cli --cluster create`
    assigns them: each master holds a third of the rooms, within 2%; and over the 1,024
    partitions, no partition holds more than 1.5 times the mean."""
    keys = Keyspace("wsa", cluster=True)
    tags = partition_tags()
    assert len(set(tags)) == PARTITIONS  # one tag per partition, each in its own slot range
    assert all(crc_hqx(tag.encode(), 0) % SLOTS // (SLOTS // PARTITIONS) == i for i, tag in enumerate(tags))
    per_master = [0, 0, 0]
    per_partition = [0] * PARTITIONS
    for i in range(100_000):
        room = f"room-{i}"
        tag = keys.tag(room)[1:-1]
        slot = crc_hqx(tag.encode(), 0) % SLOTS
        per_master[min(2, slot * 3 // SLOTS)] += 1
        per_partition[tags.index(tag)] += 1
        assert keys.unnamed(keys.name(room)) == room
    assert max(per_master) / min(per_master) < 1.02 * 1.02, per_master
    assert max(per_partition) < 1.5 * statistics.mean(per_partition), max(per_partition)
    # a room's four keys and its channel share one slot: the numbering script is one call
    slots = {crc_hqx(k.split("{")[1].split("}")[0].encode(), 0) for k in keys.stream("lobby")}
    assert len(slots) == 1
    assert Keyspace("wsa").stream("lobby") == ("wsa:seq:lobby", "wsa:history:lobby", "wsa:retained",
                                               "wsa:presence:lobby")  # one server: unchanged


# -- on a real cluster -------------------------------------------------------------------------------


def rooms_on_every_master(cluster: Any, count: int = 3) -> list[str]:
    """Room names whose slots are on different masters, one per master."""
    keys = Keyspace("wsa", cluster=True)
    wanted = {master.port: None for master in cluster.masters()}
    for i in range(1000):
        room = f"room{i}"
        owner = cluster.master_of_slot(cluster.slot_of(keys.stream(room)[0]))
        if wanted.get(owner.port, "x") is None:
            wanted[owner.port] = room
        if all(wanted.values()):
            break
    return [room for room in wanted.values() if room][:count]


def test_chat_across_two_nodes_with_rooms_on_every_master(cluster_nodes, redis_cluster) -> None:
    (a, _), (b, _) = cluster_nodes(), cluster_nodes()
    rooms = rooms_on_every_master(redis_cluster)
    assert len(rooms) == 3
    with connect(a.url) as ann, connect(b.url) as bob:
        for room in rooms:
            join(ann, room, "ann")
            join(bob, room, "bob")
        for room in rooms:
            say(ann, room, f"hello {room}")
            got = read_until(bob, text_is(f"hello {room}"))[-1]
            assert got["name"] == "ann" and got["seq"] >= 1 and got["room"] == room
            say(bob, room, f"back {room}")
            assert read_until(ann, text_is(f"back {room}"))[-1]["room"] == room
        # every master carries its rooms' channels (sharded), and no classic room channel is used
        for master in redis_cluster.masters():
            shard_channels = master.command("PUBSUB", "SHARDCHANNELS")
            assert len(shard_channels) >= 1, (master.port, shard_channels)
            assert not [c for c in master.command("PUBSUB", "CHANNELS") if b":room:" in c]
            stats = master.command("INFO", "commandstats").decode()
            assert "cmdstat_spublish" in stats or "cmdstat_evalsha" in stats, stats


def master_of_room(cluster: Any, room: str) -> Any:
    return cluster.master_of_slot(cluster.slot_of(Keyspace("wsa", cluster=True).stream(room)[0]))


class Traffic:
    """A sayer on node A and members on both nodes in `room`, for a fault in the middle."""

    def __init__(self, a: ServerThread, b: ServerThread, room: str = "r") -> None:
        self.names = Names()
        self.a = a
        self.room = room
        places = (("a1", a), ("b1", b), ("b2", b))
        self.members = [Member(name, node.url, self.names, room) for name, node in places]

    def check(self) -> dict[str, Any]:
        for member in self.members:
            member.thread.join(5)
            assert member.failure == [], (member.log.name, member.failure)
        result = check([self.sayer.log] + [m.log for m in self.members])
        assert result["gaps_unreported"] == 0, result
        assert (result["duplicates"], result["out_of_order"]) == (0, 0), result
        return result

    def run(self, fault: Callable[[], None], after_fault: Callable[[], None], before: int = 20) -> None:
        with connect(self.a.url) as ws:
            join(ws, self.room, "sayer")
            self.sayer = Sayer(ws, self.room, self.names)
            while self.sayer.acked < before:
                assert self.sayer.say_one(), "a say failed before the fault"
            fault()
            self.sayer.until(before + 10)  # through the fault: refused says are retried as new ones
            after_fault()
            self.sayer.until(before + 20, most=4000)
            assert ws.request({"type": "say", "room": self.room, "text": "end"})["type"] == "said"
            for member in self.members:
                assert member.saw_end.wait(15), f"{member.log.name} did not get the end"


@pytest.mark.timeout(60)
def test_a_master_killed_under_traffic_leaves_no_silent_gap(cluster_nodes, redis_cluster) -> None:
    """The master of room r's slot is killed with -9 while a sender on node A says a numbered
    sequence to members on both nodes; its last writes never reached its replica. The
    promoted replica must begin a new epoch (the members told `room_lost`), the nodes'
    subscriptions move to it, and traffic resumes."""
    (a, bp_a), (b, bp_b) = cluster_nodes(), cluster_nodes()
    victim = master_of_room(redis_cluster, "r")
    traffic = Traffic(a, b)

    def fault() -> None:
        unreplicated_broadcasts(victim.port, ["lost1", "lost2", "lost3"], cluster=True)
        for member in traffic.members:
            wait_until(lambda m=member: m.log.receipts >= 23, 5, "the unreplicated broadcasts delivered")
        redis_cluster.kill(victim)

    promoted: list[Any] = []
    traffic.run(fault, lambda: promoted.append(redis_cluster.wait_promoted(victim)))
    result = traffic.check()
    assert result["expected_deliveries"] >= 3 * 40, result
    reports = {m.log.name: [source for _, _, source in m.log.reports] for m in traffic.members}
    assert all("room_lost" in sources for sources in reports.values()), reports
    wait_until(lambda: bp_a.connected and bp_b.connected, 10, "both nodes connected again")
    assert master_of_room(redis_cluster, "r").port == promoted[0].port
    channels = promoted[0].command("PUBSUB", "SHARDNUMSUB", Keyspace("wsa", cluster=True).channel("r"))
    assert channels[1] == 2, channels  # both nodes subscribed on the new master


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["redis-cli --cluster reshard", "one slot by hand"])
def test_a_slot_migrated_under_traffic_loses_nothing(cluster_nodes, redis_cluster, how) -> None:
    """Room r's slot moves to another master (keys migrated, then the slot handed over)
    while the sender says on: nothing is lost, so the members are told nothing; the room's
    epoch goes on, and both nodes now listen on the new master. `redis-cli` moves the lowest
    slots of r's master up to r's (the room is named so that its slot is among the first)."""
    (a, _), (b, _) = cluster_nodes(), cluster_nodes()
    keys = Keyspace("wsa", cluster=True)
    room = next(f"r{i}" for i in range(10_000) if redis_cluster.slot_of(keys.stream(f"r{i}")[0]) < 64)
    source = master_of_room(redis_cluster, room)
    target = next(m for m in redis_cluster.masters() if m.port != source.port)
    slot = redis_cluster.slot_of(keys.stream(room)[0])
    if how == "one slot by hand":
        move = lambda: redis_cluster.reshard([slot], to=target)  # noqa: E731
    else:
        move = lambda: redis_cluster.reshard(slot + 1, to=target, source=source)  # noqa: E731
    traffic = Traffic(a, b, room)
    traffic.run(lambda: None if slot in move() else pytest.fail(f"slot {slot} did not move"), lambda: None)
    result = traffic.check()
    assert result["expected_deliveries"] >= 3 * 40, result
    reports = {m.log.name: m.log.reports for m in traffic.members}
    assert all(not found for found in reports.values()), reports
    epochs = {epoch for m in traffic.members for epoch in m.log.recv_epoch}
    assert len(epochs) == 1, epochs  # the same epoch before and after the move
    assert master_of_room(redis_cluster, room).port == target.port
    subscribers = lambda: target.command("PUBSUB", "SHARDNUMSUB", keys.channel(room))[1]  # noqa: E731
    wait_until(lambda: subscribers() == 2, 5, "both nodes listening on the new master")


def test_the_emitter_broadcasts_numbered_and_reaches_users_through_the_cluster(redis_cluster) -> None:
    """An Emitter outside gevent: a numbered broadcast to a room and a message to a user, by
    redis-py's cluster client, reach both nodes; an idempotency key holds on a cluster too."""
    with two_nodes_on(redis_cluster.url, users_app) as (a, b):
        ann_a, ann_b = user(a, "ann"), user(b, "ann")
        done = emit_elsewhere(redis_cluster.url, "send_to_user", "ann", {"type": "notice", "text": "hi"})
        assert done.get("nodes") == 2, done
        assert notice(ann_a) == notice(ann_b) == "hi"
        once = {"type": "notice", "text": "once"}
        first = emit_elsewhere(redis_cluster.url, "send_to_user", "ann", once, idempotency_key="k1")
        again = emit_elsewhere(redis_cluster.url, "send_to_user", "ann", once, idempotency_key="k1")
        assert (first.get("duplicate"), again.get("duplicate")) == (False, True), (first, again)
        assert notice(ann_a) == notice(ann_b) == "once"  # once, not twice: "from b" comes next
        assert b.call(app_of(b).send_to_user, "ann", Notice(text="from b")) == 1
        assert notice(ann_a) == notice(ann_b) == "from b"
        for ws in (ann_a, ann_b):
            ws.close()
    numbered = {"numbered": True}
    chat = two_nodes_on(redis_cluster.url, fresh_chat_app)
    with chat as (a, b), connect(a.url) as ann, connect(b.url) as bob:
        rooms = rooms_on_every_master(redis_cluster)
        for room in rooms:
            join(ann, room, "ann")
            join(bob, room, "bob")
        for room in rooms:
            message = {"type": "message", "room": room, "name": "ops", "text": f"to {room}", "ts": 0.0}
            done = emit_elsewhere(redis_cluster.url, "broadcast", room, message, options=numbered)
            assert done.get("nodes") == 2 and done.get("seq"), done
            for ws in (ann, bob):
                assert read_until(ws, text_is(f"to {room}"))[-1]["seq"] == done["seq"]


def app_of(server: ServerThread) -> App:
    app = server.app
    assert isinstance(app, App)
    return app


def test_a_stopped_nodes_members_are_reported_left_by_the_other(cluster_nodes, redis_cluster) -> None:
    """Node liveness on a cluster: node B's heartbeat stops (its backplane stopped without a
    goodbye, as a crash would); node A reaps it and reports its member left."""
    (a, bp_a), (b, bp_b) = cluster_nodes(), cluster_nodes()
    bp_a.liveness.node_timeout = bp_b.liveness.node_timeout = 2.0
    room = rooms_on_every_master(redis_cluster)[1]
    with connect(a.url) as ann, connect(b.url) as ghost:
        join(ann, room, "ann")
        assert join(ghost, room, "ghost")["members"] == ["ann", "ghost"]
        read_until(ann, lambda m: m.get("name") == "ghost")
        b.call(bp_b.liveness.stop)  # silent from now on, its members' presence left behind
        left = read_until(ann, lambda m: m.get("type") == "member_left", timeout=15)[-1]
        assert left["name"] == "ghost"
        wait_until(lambda: bp_a.liveness.lost_members == 1, 5, "the reap counted")
