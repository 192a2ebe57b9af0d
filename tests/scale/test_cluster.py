"""`--redis redis+cluster://...`: rooms spread over a Redis Cluster's masters, sharded pub/sub.

Real processes on 127.0.0.1 (tests/support/redis_cluster.py: 3 masters, 3 replicas, a 1 s
node timeout), the chat demo on two nodes, real clients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmarks.chaos_check import Names, check
from websock_actors import RedisBackplane
from websock_actors.client import connect
from websock_actors.scale.redis_keys import Keyspace
from websock_actors.testing import ServerThread

from ..support.apps import fresh_chat_app
from ..support.chat import join, read_until, say, text_is
from ..support.chat_traffic import Member, Sayer, unreplicated_broadcasts
from ..support.waits import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cluster_nodes(redis_cluster: Any) -> Iterator[Callable[[], tuple[ServerThread, RedisBackplane]]]:
    """`node()`: a chat server (resumption on) on a RedisBackplane over the cluster."""
    started: list[ServerThread] = []

    def start() -> tuple[ServerThread, RedisBackplane]:
        app = fresh_chat_app()
        backplane = RedisBackplane(redis_cluster.url)
        app.use_backplane(backplane)
        server = ServerThread(app).start()
        started.append(server)
        return server, backplane

    yield start
    for server in started:
        server.stop()


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
    """A sayer on node A and members on both nodes in room `r`, for a fault in the middle."""

    def __init__(self, a: ServerThread, b: ServerThread) -> None:
        self.names = Names()
        self.a = a
        places = (("a1", a), ("b1", b), ("b2", b))
        self.members = [Member(name, node.url, self.names) for name, node in places]

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
            join(ws, "r", "sayer")
            self.sayer = Sayer(ws, "r", self.names)
            while self.sayer.acked < before:
                assert self.sayer.say_one(), "a say failed before the fault"
            fault()
            self.sayer.until(before + 10)  # through the fault: refused says are retried as new ones
            after_fault()
            self.sayer.until(before + 20, most=4000)
            assert ws.request({"type": "say", "room": "r", "text": "end"})["type"] == "said"
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
def test_a_slot_migrated_under_traffic_loses_nothing_keeps_the_epoch(cluster_nodes, redis_cluster) -> None:
    """Room r's slot moves to another master (keys migrated, then the slot handed over)
    while the sender says on: nothing is lost, so the members are told nothing; the room's
    epoch goes on, and both nodes now listen on the new master."""
    (a, _), (b, _) = cluster_nodes(), cluster_nodes()
    keys = Keyspace("wsa", cluster=True)
    source = master_of_room(redis_cluster, "r")
    target = next(m for m in redis_cluster.masters() if m.port != source.port)
    slot = redis_cluster.slot_of(keys.stream("r")[0])
    traffic = Traffic(a, b)
    traffic.run(lambda: redis_cluster.reshard([slot], to=target), lambda: None)
    result = traffic.check()
    assert result["expected_deliveries"] >= 3 * 40, result
    reports = {m.log.name: m.log.reports for m in traffic.members}
    assert all(not found for found in reports.values()), reports
    epochs = {epoch for m in traffic.members for epoch in m.log.recv_epoch}
    assert len(epochs) == 1, epochs  # the same epoch before and after the move
    assert master_of_room(redis_cluster, "r").port == target.port
    subscribers = lambda: target.command("PUBSUB", "SHARDNUMSUB", keys.channel("r"))[1]  # noqa: E731
    wait_until(lambda: subscribers() == 2, 5, "both nodes listening on the new master")
