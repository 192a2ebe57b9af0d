"""The Redis Cluster fixture itself (tests/support/redis_cluster.py): it forms, a killed master's
replica takes over, and one chosen slot moves with its keys."""

from __future__ import annotations

import pytest
from redis.cluster import ClusterNode as Seed
from redis.cluster import RedisCluster
from redis.exceptions import MovedError

from benchmarks.harness.redis_cluster import ClusterDeployment, ClusterError

from .redis_server import refuses

pytestmark = pytest.mark.timeout(60)


def test_three_masters_each_with_a_replica(redis_cluster: ClusterDeployment) -> None:
    seeds = [node.address for node in redis_cluster.nodes[:2]]
    assert redis_cluster.url == f"redis+cluster://{seeds[0]},{seeds[1]}/"
    masters = redis_cluster.masters()
    assert len(masters) == 3 and len(redis_cluster.nodes) == 6
    replicas = [redis_cluster.replica_of(master) for master in masters]
    assert {*masters, *replicas} == set(redis_cluster.nodes)
    for master, replica in zip(masters, replicas, strict=True):
        assert master.command("ROLE")[0] == b"master"
        role = replica.command("ROLE")
        assert role[0] == b"slave" and int(role[2]) == master.port
    assert sum(len(redis_cluster.slots_of(master)) for master in masters) == 16384
    for node in redis_cluster.nodes:
        assert node.command("CONFIG", "GET", "save") == [b"save", b""]
        assert node.command("CONFIG", "GET", "cluster-node-timeout") == [b"cluster-node-timeout", b"1000"]
    # A cluster client finds every master from one seed, and keys spread over them.
    client = RedisCluster(startup_nodes=[Seed("127.0.0.1", redis_cluster.nodes[0].port)])
    try:
        for i in range(30):
            client.set(f"key{i}", i)
        owners = {redis_cluster.master_of_slot(redis_cluster.slot_of(f"key{i}")) for i in range(30)}
        assert owners == set(masters)
        assert client.get("key7") == b"7"
    finally:
        client.close()
    owner = redis_cluster.master_of_slot(redis_cluster.slot_of("key7"))
    other = next(master for master in masters if master is not owner)
    with pytest.raises(MovedError, match=f"{redis_cluster.slot_of('key7')} 127.0.0.1:{owner.port}"):
        other.command("GET", "key7")


def test_a_killed_master_is_replaced_by_its_replica(redis_cluster: ClusterDeployment) -> None:
    slot = redis_cluster.slot_of("kept")
    master = redis_cluster.master_of_slot(slot)
    replica = redis_cluster.replica_of(master)
    # The write reaches the replica before the kill (WAIT), so the promoted node has it.
    assert master.pipeline([("SET", "kept", "yes"), ("WAIT", 1, 5000)]) == [b"OK", 1]
    redis_cluster.kill(master)
    assert not master.running and refuses(master.port)
    promoted = redis_cluster.wait_promoted(master, timeout=15)
    assert promoted is replica
    assert promoted.command("ROLE")[0] == b"master"
    assert redis_cluster.master_of_slot(slot) is promoted
    assert master not in redis_cluster.masters() and len(redis_cluster.masters()) == 3
    assert promoted.command("GET", "kept") == b"yes"
    with pytest.raises(ClusterError, match="no replica"):
        redis_cluster.replica_of(promoted)


def test_one_chosen_slot_moves_with_its_key_then_four_more(redis_cluster: ClusterDeployment) -> None:
    slot = redis_cluster.slot_of("moving")
    source = redis_cluster.master_of_slot(slot)
    target = next(master for master in redis_cluster.masters() if master is not source)
    source.command("SET", "moving", "along")
    neighbour = slot + 1 if slot < 16383 else slot - 1
    owner_of_neighbour = redis_cluster.master_of_slot(neighbour)
    assert redis_cluster.reshard([slot], to=target) == [slot]
    assert redis_cluster.master_of_slot(slot) is target
    assert redis_cluster.master_of_slot(neighbour) is owner_of_neighbour  # that slot only
    assert target.command("GET", "moving") == b"along"
    # Every other node, replicas included, sends a client to the new owner.
    for node in redis_cluster.nodes:
        if node is not target:
            with pytest.raises(MovedError, match=f"{slot} 127.0.0.1:{target.port}"):
                node.command("GET", "moving")
    # By count (redis-cli --cluster reshard): that many slots, taken from the other masters.
    owned = len(redis_cluster.slots_of(target))
    moved = redis_cluster.reshard(4, to=target)
    assert len(moved) == 4 and len(redis_cluster.slots_of(target)) == owned + 4
    assert all(redis_cluster.master_of_slot(slot) is target for slot in moved)


def test_without_the_executables_it_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import redis_cluster as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    monkeypatch.setattr(module.os.path, "isfile", lambda path: False)
    monkeypatch.delenv(module.REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-cli are not installed"):
        module.executables()
    monkeypatch.setenv(module.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="WEBSOCK_ACTORS_REQUIRE_CLUSTER is set"):
        module.executables()
