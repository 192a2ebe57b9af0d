"""Commands and publishes on a Redis Cluster, routed by slot: `ClusterCommandPool`, `ClusterPublisher`.

Both keep the interfaces of their one-server counterparts (scale/redis_io.py), so the
backplane's modules use either without knowing which. Each holds one of those per master
(a `CommandPool`, a `Publisher`), made and dropped as the `ClusterMap` changes, and sends a
command to the master of its key's slot (redis_cluster.py `command_key`).

The cluster's answers to a command sent to the wrong node are followed, never surfaced:
MOVED updates the map and sends again to the new owner; ASK (a slot in migration whose key
already moved) sends `ASKING` and the command to the target once; TRYAGAIN (a script whose
keys are split by a migration under way) and CLUSTERDOWN (a failover under way) wait a little
and try again, a bounded number of times. The pool's commands are idempotent (its contract),
so sending again is safe; a publisher's command waited for (`submit`, `call`) is sent again
through the pool in a greenlet of its own, since a redirection is read in a callback. A
fire-and-forget publish answered MOVED is counted as failed, like any refused publish.

INFO, which has no key, goes to every master: their replies joined (the liveness check reads
every master's run_id from it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.event
import redis

from ..errors import BackplaneUnavailable
from .redis_cluster import MASTERS, Address, ClusterMap, EveryMaster, command_key, redirection, wait_briefly
from .redis_io import CommandPool, Publisher, error_text

__all__ = ["ClusterCommandPool", "ClusterPublisher"]

# Tries of a command the cluster redirects or asks to retry, before the caller is told.
ATTEMPTS = 8

# Seconds a command waits for the map's first read (a node's first heartbeat, at start).
FIRST_READ = 2.0


class ClusterCommandPool:
    """A `CommandPool` per master; see the module's docstring."""

    def __init__(self, cluster: ClusterMap, size: int = 8, timeout: float | None = None) -> None:
        self._cluster = cluster
        self._size = size
        self._timeout = timeout  # for its connections, instead of the map's
        self._pools: dict[Address, CommandPool] = {}
        cluster.listen(self._follow)

    def execute(self, *command: Any) -> Any:
        return self.run([command])[0]

    def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Every command on its slot's master, the replies in order; BackplaneUnavailable
        like CommandPool.run."""
        if not self._cluster.ready.is_set():  # a node's first commands, while the map is read
            self._cluster.wait_ready(FIRST_READ)
        replies: list[Any] = [None] * len(commands)
        todo = []
        for i, command in enumerate(commands):
            if command_key(command) is None:
                replies[i] = self.info() if command[0] == "INFO" else self._any().execute(*command)
            else:
                todo.append(i)
        asked: dict[int, Address] = {}  # command -> the node an ASK sent it to
        for attempt in range(ATTEMPTS):
            again: list[int] = []
            pause = False
            moved_at = 0.0
            for address, indices in self._route(commands, todo, asked).items():
                try:
                    batch = [self._cluster.filled(tuple(commands[i])) for i in indices]
                    got = self._replies(address, batch, [i in asked for i in indices])
                except BackplaneUnavailable:
                    self._cluster.stale()  # a master lost: its failover shows in the map soon
                    if attempt >= 2:
                        raise
                    again.extend(indices)
                    pause = True
                    continue
                for i, reply in zip(indices, got, strict=True):
                    asked.pop(i, None)
                    redirected = redirection(reply)
                    if redirected is None:
                        replies[i] = reply
                        continue
                    kind, slot, target = redirected
                    if kind == "MOVED" and target is not None:
                        self._cluster.moved(slot, target)
                        moved_at = time.monotonic()
                    elif kind == "ASK" and target is not None:
                        asked[i] = target
                    else:
                        pause = True
                    again.append(i)
            if not again:
                break
            todo = again
            if moved_at:  # read the map after the move: MASTERS is filled from it
                self._cluster.read_since(moved_at)
            if pause:
                wait_briefly(attempt)
        else:
            raise BackplaneUnavailable("the Redis Cluster kept redirecting a command")
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise BackplaneUnavailable(f"Redis refused a command: {error_text(reply)}") from reply
        return replies

    def _route(
        self, commands: Sequence[Sequence[Any]], todo: list[int], asked: dict[int, Address]
    ) -> dict[Address, list[int]]:
        groups: dict[Address, list[int]] = {}
        for i in todo:
            target = asked.get(i)
            if target is not None:
                groups.setdefault(target, []).append(i)
                continue
            owner = self._cluster.owner(command_key(commands[i]))
            if owner is None:
                self._cluster.stale()
                raise BackplaneUnavailable("the Redis Cluster's slots are not known yet")
            groups.setdefault(owner, []).append(i)
        return groups

    def _replies(self, address: Address, commands: Sequence[Sequence[Any]], asking: list[bool]) -> list[Any]:
        """`commands` on `address`, each ASK-redirected one after its own ASKING."""
        if not any(asking):
            return self._pool(address).replies(commands)
        sent: list[Sequence[Any]] = []
        for command, ask in zip(commands, asking, strict=True):
            if ask:
                sent.append(("ASKING",))
            sent.append(command)
        got = self._pool(address).replies(sent)
        replies: list[Any] = []
        position = 0
        for ask in asking:
            position += ask
            replies.append(got[position])
            position += 1
        return replies

    def _pool(self, address: Address) -> CommandPool:
        pool = self._pools.get(address)
        if pool is None:
            connect = self._cluster.connector(address, self._timeout)
            pool = self._pools[address] = CommandPool(connect, self._size)
        return pool

    def _any(self) -> CommandPool:
        masters = list(self._cluster.masters)
        if not masters:
            self._cluster.stale()
            raise BackplaneUnavailable("the Redis Cluster's masters are not known yet")
        return self._pool(masters[0])

    def info(self) -> bytes:
        """INFO server of every master that answers, joined (one that does not is left out:
        its run_id missing shows as a change, and the liveness writes presence again)."""
        texts = []
        for address in list(self._cluster.masters):
            try:
                reply = self._pool(address).replies([("INFO", "server")])[0]
            except BackplaneUnavailable:
                self._cluster.stale()
                continue
            texts.append(reply if isinstance(reply, bytes) else str(reply).encode())
        if not texts:
            raise BackplaneUnavailable("no master of the Redis Cluster answered")
        return b"\n".join(texts)

    def _follow(self) -> None:
        """The pools of nodes that are no longer masters are closed."""
        for address in set(self._pools) - set(self._cluster.masters):
            self._pools.pop(address).close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class ClusterPublisher:
    """A `Publisher` per master; see the module's docstring."""

    server_id = ""  # the scripts ask each master for its own run_id (redis_wire.py APPEND)
    masters = MASTERS  # filled in as a script is sent

    def __init__(
        self,
        cluster: ClusterMap,
        pool: ClusterCommandPool,
        on_lost: Callable[[int, BaseException], None],
        on_refused: Callable[[BaseException], None] | None = None,
        max_backoff: float = 1.0,
    ) -> None:
        self._cluster = cluster
        self._pool = pool  # for a waited-for command the cluster redirected
        self._on_lost = on_lost
        self._on_refused = on_refused
        self._max_backoff = max_backoff
        self._nodes: dict[Address, Publisher] = {}
        self._started = False
        self.connected_once = EveryMaster(cluster, lambda: [p.connected_once for p in self._nodes.values()])
        cluster.listen(self._follow)

    @property
    def healthy(self) -> bool:
        return bool(self._nodes) and all(p.healthy for p in self._nodes.values())

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self._nodes.values())

    def start(self) -> None:
        self._started = True
        self._cluster.start()
        self._follow()

    def stop(self, timeout: float = 5.0) -> None:
        self._started = False
        nodes, self._nodes = list(self._nodes.values()), {}
        for publisher in nodes:
            publisher.stop(timeout)
        self._cluster.stop()

    def _follow(self) -> None:
        """A publisher for every master of the map, none for a node that no longer is one."""
        if not self._started:
            return
        masters = set(self._cluster.masters)
        for address in masters - set(self._nodes):
            publisher = Publisher(
                self._cluster.connector(address), self._on_lost, self._refused, self._max_backoff
            )  # fmt: skip
            self._nodes[address] = publisher
            publisher.start()
        for address in set(self._nodes) - masters:
            gevent.spawn(self._nodes.pop(address).stop)  # what it has queued still goes out

    def _refused(self, error: BaseException) -> None:
        redirected = redirection(error)
        if redirected is not None and redirected[0] == "MOVED" and redirected[2] is not None:
            self._cluster.moved(redirected[1], redirected[2])
        if self._on_refused is not None:
            self._on_refused(error)

    def _node(self, key: Any) -> Publisher:
        owner = self._cluster.owner(key)
        publisher = None if owner is None else self._nodes.get(owner)
        if publisher is None:
            self._cluster.stale()
            raise BackplaneUnavailable("Redis Cluster: no connection to that slot's master yet")
        return publisher

    def publish(self, channel: bytes, data: bytes) -> None:
        self._node(channel).send("SPUBLISH", channel, data)

    def send(self, *command: Any) -> None:
        self._node(command_key(command)).send(*self._cluster.filled(command))

    def call(self, *command: Any, timeout: float = 5.0) -> Any:
        try:
            return self.submit(*command).get(timeout=timeout)
        except gevent.Timeout:
            raise BackplaneUnavailable("Redis did not answer in time") from None

    def submit(self, *command: Any) -> gevent.event.AsyncResult[Any]:
        result: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()
        sent = self._node(command_key(command)).submit(*self._cluster.filled(command))
        sent.rawlink(lambda answer: self._answered(answer, command, result))
        return result

    def _answered(self, answer: Any, command: tuple[Any, ...], result: gevent.event.AsyncResult[Any]) -> None:
        if answer.successful():
            result.set(answer.value)
            return
        error = answer.exception
        redirected = redirection(error.__cause__)
        if redirected is None:
            result.set_exception(error)
            return
        moved_at = 0.0
        if redirected[0] == "MOVED" and redirected[2] is not None:
            self._cluster.moved(redirected[1], redirected[2])
            moved_at = time.monotonic()
        gevent.spawn(self._through_pool, command, result, moved_at)

    def _through_pool(
        self, command: tuple[Any, ...], result: gevent.event.AsyncResult[Any], moved_at: float
    ) -> None:
        try:
            if moved_at:
                self._cluster.read_since(moved_at)  # MASTERS is filled from a map read after the move
            result.set(self._pool.execute(*command))
        except BackplaneUnavailable as exc:
            result.set_exception(exc)
