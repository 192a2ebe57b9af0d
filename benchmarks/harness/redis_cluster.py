"""A Redis Cluster of our own: 3 masters with a replica each, Debian's redis-server x 6.

Every node listens on a free port of 127.0.0.1 (its cluster bus on another free port, so that
port + 10000 need not be free), keeps nothing but its nodes.conf in a directory of its own
(no RDB, no AOF, diskless replication) and runs in the foreground, its output in `out.log`.
`cluster-node-timeout` is short (1 s) and any replica may be promoted (validity factor 0), so
a master killed with -9 is replaced within a few seconds; while slots are uncovered the
cluster refuses reads too. `redis-cli --cluster create` assigns the slots and the replicas.

Used by the tests' fixture (tests/support/redis_cluster.py) and by the cluster benchmark
(benchmarks/redis_cluster_broadcast.py); every wait is bounded and raises ClusterError with
the nodes' logs; every process is stopped by its PID.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from benchmarks.harness.ports import free_port
from benchmarks.harness.redis_cluster_nodes import (
    ClusterError,
    ClusterNode,
    NodeEntry,
    command,
    parse_cluster_nodes,
)

__all__ = ["SLOTS", "ClusterDeployment", "ClusterError", "ClusterNode", "NodeEntry"]

SLOTS = 16384
NODE_TIMEOUT_MS = 1000
READY_TIMEOUT = 30.0  # the cluster formed: slots assigned, replicas in sync
CLI_TIMEOUT = 60.0


class ClusterDeployment:
    """`masters` masters with a replica each (see the module's docstring). `cpus`: taskset's
    CPU list for every node (None: anywhere); `guard`: nodes die with this process (the
    benchmarks, not pytest: its Popen may run off the main thread)."""

    def __init__(
        self,
        server: str,
        cli: str,
        root: Path,
        masters: int = 3,
        cpus: int | str | None = None,
        guard: bool = False,
    ) -> None:
        self.server, self.cli, self.root = server, cli, root
        self.cpus, self.guard = cpus, guard
        self.nodes = [ClusterNode(f"node{i}", self._folder(f"node{i}")) for i in range(2 * masters)]
        self.master_count = masters
        self._replicas_of: dict[str, set[int]] = {}  # a killed master's replicas' ports

    def _folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path

    @property
    def url(self) -> str:
        """The backplane's URL: two seeds, any one is enough to discover the cluster."""
        return f"redis+cluster://{self.nodes[0].address},{self.nodes[1].address}/"

    # -- start and stop ---------------------------------------------------------------------

    def start(self) -> ClusterDeployment:
        """Start the nodes, create the cluster, wait until it is ok with every replica in sync."""
        used: set[int] = set()
        for node in self.nodes:
            self._launch(node, used)
        addresses = [node.address for node in self.nodes]
        create = [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        self._cli(create, "cluster-create.log")
        self.wait_ok(READY_TIMEOUT, replicas=True)
        return self

    def _argv(self, port: int, bus_port: int) -> list[str]:
        return [
            self.server, "--port", str(port), "--cluster-port", str(bus_port), "--bind", "127.0.0.1",
            "--daemonize", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-replica-validity-factor", "0",
            "--cluster-allow-reads-when-down", "no", "--save", "", "--appendonly", "no",
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
            "--repl-diskless-load", "on-empty-db", "--shutdown-timeout", "1",
        ]  # fmt: skip

    def _launch(self, node: ClusterNode, used: set[int]) -> None:
        for _ in range(5):
            port, bus_port = self._free(used), self._free(used)
            if node.start(self._argv(port, bus_port), port, bus_port, self.cpus, self.guard):
                return
            if "Address already in use" not in node.output():
                break
        raise ClusterError(f"{node.name} did not start:\n{node.output()[-3000:]}")

    @staticmethod
    def _free(used: set[int]) -> int:
        while (port := free_port()) in used:
            pass
        used.add(port)
        return port

    def _cli(self, argv: list[str], log_name: str) -> str:
        """Run redis-cli (its output kept in the root's `log_name`); raises unless it exits 0."""
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{' '.join(argv)} took over {CLI_TIMEOUT} s") from exc
        output = done.stdout + done.stderr
        (self.root / log_name).write_text(output)
        if done.returncode != 0 or "[ERR]" in output:
            raise ClusterError(f"{' '.join(argv)} failed ({done.returncode}):\n{output[-3000:]}")
        return output

    def stop(self) -> None:
        """SIGTERM to every node at once, then wait (SIGKILL after a bound); checks them gone."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.wait_gone()
        alive = [node.name for node in self.nodes if node.running]
        if alive:
            raise ClusterError(f"still running: {alive}")

    # -- what the cluster says ----------------------------------------------------------------

    def live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running]

    def by_port(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise ClusterError(f"no node of ours on port {port}")

    def view(self, node: ClusterNode | None = None) -> list[NodeEntry]:
        """CLUSTER NODES as `node` (default: the first live node) sees the cluster."""
        asked = node or self.live()[0]
        return parse_cluster_nodes(asked.command("CLUSTER", "NODES"))

    def masters(self) -> list[ClusterNode]:
        """The running masters that own slots now, in the order of their first slot."""
        owners = [e for e in self.view() if e.is_master and e.slots and not e.failing]
        owners.sort(key=lambda entry: entry.slots[0])
        return [node for node in (self.by_port(e.port) for e in owners) if node.running]

    def slots_of(self, master: ClusterNode) -> list[int]:
        """The slots `master` owns (by the first live node's view)."""
        for entry in self.view():
            if entry.id == master.node_id:
                return [slot for first, last in entry.slots for slot in range(first, last + 1)]
        return []

    def master_of_slot(self, slot: int) -> ClusterNode:
        for entry in self.view():
            if entry.is_master and not entry.failing and entry.owns(slot):
                return self.by_port(entry.port)
        raise ClusterError(f"no live master owns slot {slot}")

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        for entry in self.view():
            if entry.master_id == master.node_id and not entry.failing:
                return self.by_port(entry.port)
        raise ClusterError(f"{master.name} has no replica")

    def slot_of(self, key: str | bytes) -> int:
        return int(self.live()[0].command("CLUSTER", "KEYSLOT", key))

    # -- waits -------------------------------------------------------------------------------

    def _wait(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except (OSError, redis.RedisError):
                pass  # a node going down or just promoted: ask again
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n.name} :{n.port}\n{n.output()[-2000:]}" for n in self.nodes)
                raise ClusterError(f"not within {timeout} s: {what}\n{logs}")
            time.sleep(0.05)  # polling processes we do not control: nothing to wait on

    def healthy(self, replicas: bool = False) -> bool:
        """Every live node says cluster_state:ok with all slots assigned and none failing, they
        agree on who owns which slot, every owner is live and none of them is suspected; with
        `replicas`, every master also has a live replica whose link to it is up."""
        live = self.live()
        maps = []
        for node in live:
            info = node.command("CLUSTER", "INFO").decode()
            fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
            if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != str(SLOTS):
                return False
            entries = parse_cluster_nodes(node.command("CLUSTER", "NODES"))
            if any(e.failing for e in entries if self.by_port(e.port).running):
                return False
            maps.append(sorted((e.slots, e.port) for e in entries if e.is_master and e.slots))
        if not maps or any(m != maps[0] for m in maps):
            return False
        owners = [self.by_port(port) for _, port in maps[0]]
        if not all(owner.running for owner in owners):
            return False
        if replicas:
            return len(owners) == self.master_count and all(self._replica_in_sync(m) for m in owners)
        return True

    def _replica_in_sync(self, master: ClusterNode) -> bool:
        for node in self.live():
            info = node.command("INFO", "replication").decode()
            if f"master_port:{master.port}\r" in info and "master_link_status:up" in info:
                return True
        return False

    def wait_ok(self, timeout: float = 15.0, replicas: bool = False) -> None:
        """Until `healthy(replicas)`; ClusterError with the nodes' logs after `timeout`."""
        self._wait(lambda: self.healthy(replicas), "cluster_state:ok on every node, one slot map", timeout)

    # -- faults -------------------------------------------------------------------------------

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL: gone at once, no clean shutdown, no failover handed over."""
        self._replicas_of[node.node_id] = {e.port for e in self.view() if e.master_id == node.node_id}
        node.kill()

    def wait_promoted(self, old_master: ClusterNode, timeout: float = 15.0) -> ClusterNode:
        """After `old_master` died: until one of its replicas is a master and the cluster is ok
        again; that new master."""
        replicas = self._replicas_of.get(old_master.node_id) or {
            e.port for e in self.view() if e.master_id == old_master.node_id
        }
        if not replicas:
            raise ClusterError(f"{old_master.name} had no replica to promote")

        def promoted() -> bool:
            masters = {e.port for e in self.view() if e.is_master and e.slots and not e.failing}
            return bool(masters & replicas) and self.healthy()

        self._wait(promoted, f"a replica of {old_master.name} promoted, the cluster ok", timeout)
        return next(node for node in self.masters() if node.port in replicas)

    # -- slot moves ---------------------------------------------------------------------------

    def reshard(
        self, slots: int | Sequence[int], to: ClusterNode, timeout: float = 30.0,
        source: ClusterNode | None = None,
    ) -> list[int]:  # fmt: skip
        """Move slots to the master `to`, keys included, while clients may go on: an int N
        moves N slots taken from `source` (its lowest first) or from all the other masters
        (`redis-cli --cluster reshard`), a list moves exactly those (`move_slot`). Waits
        until the cluster is ok; the slots moved."""
        before = set(self.slots_of(to))
        if isinstance(slots, int):
            origin = "all" if source is None else source.node_id
            self._cli(
                [self.cli, "--cluster", "reshard", to.address, "--cluster-from", origin,
                 "--cluster-to", to.node_id, "--cluster-slots", str(slots), "--cluster-yes"],
                "cluster-reshard.log",
            )  # fmt: skip
        else:
            for slot in slots:
                self.move_slot(slot, to)
        self.wait_ok(timeout)
        return sorted(set(self.slots_of(to)) - before)

    def move_slot(self, slot: int, to: ClusterNode, batch: int = 100) -> None:
        """One slot to `to`, as redis-cli does it: IMPORTING on `to`, MIGRATING on its owner,
        its keys MIGRATEd in batches (a client meanwhile gets ASK for keys already moved), then
        SETSLOT NODE on `to`, the old owner and the other masters."""
        source = self.master_of_slot(slot)
        if source is to:
            return
        to.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", to.node_id)
        while keys := source.command("CLUSTER", "GETKEYSINSLOT", slot, batch):
            source.command("MIGRATE", "127.0.0.1", to.port, "", 0, 10_000, "REPLACE", "KEYS", *keys)
        others = [node for node in self.masters() if node is not to and node is not source]
        for node in (to, source, *others):
            command(node.port, "CLUSTER", "SETSLOT", slot, "NODE", to.node_id)
