"""A real Redis Cluster for the tests: 3 masters and 3 replicas, Debian's redis-server x 6.

The processes, `redis-cli --cluster create` and the bounded waits are
benchmarks/harness/redis_cluster.py's (the cluster benchmark starts its cluster with the same
code): free ports of 127.0.0.1, a directory per node, no persistence, `cluster-node-timeout`
1 s and any replica promotable, so a master killed with -9 is replaced within a few seconds.

Fixture (registered in tests/conftest.py): `redis_cluster`, a `ClusterDeployment` with
`.url` (`redis+cluster://` and two seeds), `.nodes` (the 6 processes: `.port`, `.pid`,
`.node_id`, `.command(...)`), `.masters()`, `.master_of_slot(slot)`, `.replica_of(master)`,
`.slot_of(key)`, `.kill(node)` (-9), `.wait_promoted(old_master)`, `.reshard(n or [slots],
to=master)`, `.move_slot(slot, to)`, `.wait_ok()`. Every process is stopped by its PID after
the test and checked gone. Without redis-server or redis-cli the tests skip, or fail when
WEBSOCK_ACTORS_REQUIRE_CLUSTER is set (CI sets it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .redis_server import refuses

if TYPE_CHECKING:  # imported where used: conftest imports this module, also in a tree without benchmarks/
    from benchmarks.harness.redis_cluster import ClusterDeployment

__all__ = ["REQUIRE", "executables", "redis_cluster"]

REQUIRE = "WEBSOCK_ACTORS_REQUIRE_CLUSTER"


def executables() -> tuple[str, str]:
    """redis-server and redis-cli; skips the test (or fails it, when required) without them."""
    found = []
    for name in ("redis-server", "redis-cli"):
        path = shutil.which(name) or f"/usr/bin/{name}"
        if os.path.isfile(path) and os.access(path, os.X_OK):
            found.append(path)
    if len(found) == 2:
        return found[0], found[1]
    message = "redis-server and redis-cli are not installed (Debian: apt-get install redis-server)"
    if os.environ.get(REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{message}, and {REQUIRE} is set: the Redis Cluster tests are required", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    """3 masters with a replica each, of this test's own; stopped after it, checked gone."""
    from benchmarks.harness.redis_cluster import ClusterDeployment

    server, cli = executables()
    deployment = ClusterDeployment(server, cli, tmp_path_factory.mktemp("cluster"))
    try:
        yield deployment.start()
    finally:
        deployment.stop()
        still = [node.port for node in deployment.nodes if node.port and not refuses(node.port)]
        assert not still, f"something still listens on the cluster's ports {still}"
