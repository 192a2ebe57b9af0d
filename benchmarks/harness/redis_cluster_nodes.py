"""The pieces of a local Redis Cluster (redis_cluster.py): one redis-server process of it, a
command over a connection of its own, and CLUSTER NODES read into entries.

No pytest here: the tests' fixture (tests/support/redis_cluster.py) and the benchmarks both
start their clusters with this code.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks.harness.processes import die_with_parent, pinned

__all__ = ["ClusterError", "ClusterNode", "NodeEntry", "command", "parse_cluster_nodes", "pipeline"]

START_TIMEOUT = 10.0  # seconds for a started server to answer PING
STOP_TIMEOUT = 10.0


class ClusterError(RuntimeError):
    """The cluster did not start, or did not reach a state within its bounded wait."""


def pipeline(port: int, commands: Sequence[Sequence[Any]], timeout: float = 5.0) -> list[Any]:
    """Send `commands` to the Redis on 127.0.0.1:`port` over one connection of their own; their
    raw RESP2 replies (no redis-py callbacks: bulk strings stay bytes). An error reply raises
    redis.ResponseError (a MOVED one too: nothing is followed)."""
    connection = redis.Connection(
        host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout, protocol=2
    )
    try:
        replies = []
        for args in commands:
            connection.send_command(*args)
            replies.append(connection.read_response())
        return replies
    finally:
        connection.disconnect()


def command(port: int, *args: Any, timeout: float = 5.0) -> Any:
    """One command to 127.0.0.1:`port`, e.g. `command(port, "CLUSTER", "MYID")`; its raw reply."""
    return pipeline(port, [args], timeout)[0]


@dataclass(frozen=True)
class NodeEntry:
    """One line of CLUSTER NODES: a node as the asked node sees it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None  # a replica's master
    slots: tuple[tuple[int, int], ...]  # owned ranges, both ends included (no migration marks)

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        """Flagged failed (`fail`) or suspected (`fail?`), or without an address."""
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})

    def owns(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)

    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)


def parse_cluster_nodes(text: str | bytes) -> list[NodeEntry]:
    """The entries of a CLUSTER NODES reply: `<id> <ip:port@cport> <flags> <master> <ping>
    <pong> <epoch> <link> <slot>...`, where a slot is `N`, `N-M` or `[N->-id]` / `[N-<-id]`
    (a slot being migrated or imported: left out, its owner still lists it plainly)."""
    if isinstance(text, bytes):
        text = text.decode()
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@", 1)[0]
        ranges = []
        for item in fields[8:]:
            if item.startswith("["):
                continue
            first, _, last = item.partition("-")
            ranges.append((int(first), int(last or first)))
        entries.append(
            NodeEntry(
                id=fields[0],
                port=int(address.rsplit(":", 1)[1]) if ":" in address else 0,
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                slots=tuple(ranges),
            )
        )
    return entries


class ClusterNode:
    """One cluster-enabled redis-server on its own port and bus port, in its own directory
    (its nodes.conf and out.log); `node_id` is read once it answers."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.log = directory / "out.log"
        self.port = 0
        self.bus_port = 0
        self.node_id = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<ClusterNode {self.name} 127.0.0.1:{self.port}>"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ClusterError(f"{self.name} is not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        return command(self.port, *args, timeout=timeout)

    def pipeline(self, commands: Sequence[Sequence[Any]], timeout: float = 5.0) -> list[Any]:
        return pipeline(self.port, commands, timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, argv: list[str], port: int, bus_port: int, cpus: int | str | None, guard: bool) -> bool:
        """Run `argv` (pinned to `cpus`; with `guard`, killed when its parent dies); True once
        it answers PING on `port`, False if it exited first."""
        self.port, self.bus_port = port, bus_port
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                pinned(cpus, argv),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if guard else None,  # not under pytest: threads
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self.command("PING", timeout=1.0) == b"PONG":
                    self.node_id = self.command("CLUSTER", "MYID").decode()
                    return True
            except (OSError, redis.RedisError):
                pass  # not listening yet, or still loading
            try:
                self.process.wait(0.02)  # the pause between two PINGs, cut short if it exits
            except subprocess.TimeoutExpired:
                continue
            return False
        self.kill()
        return False

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM (a clean shutdown), without waiting: see `wait_gone`."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait_gone(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait for the process to end after `terminate`; SIGKILL once `timeout` passed."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
