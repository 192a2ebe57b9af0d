"""A Redis Cluster's slots and masters, as a node of ours last read them: `ClusterMap`.

The map is read with CLUSTER SLOTS from any node that answers (the ones it knows, then the
URL's seeds) by one greenlet: at start, every `refresh_every` seconds, soon after anyone
reports it `stale` (a MOVED reply, a master's connection lost, a sharded subscription the
server ended), and every `unsettled_every` seconds while a master in it cannot be reached (a
failover is under way: its replica is promoted within the cluster's node timeout). Whoever
routes by it (scale/redis_cluster_io.py, redis_cluster_subscriber.py) is told of every
change through `listen`.

It also keeps the run_id of every master it reached (`masters`): a numbered room's epoch
goes on when its slot moved from another master that still is one (a migration), and ends
when the slot's new master is a promoted replica (redis_wire.py APPEND).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import gevent
import gevent.event
import gevent.lock
import redis
from redis.crc import key_slot

from ..errors import BackplaneUnavailable
from .redis_io import REDIS_FAILURES, Connect, GeventRedisConnection, error_text, run_id_of
from .redis_keys import SLOTS

__all__ = ["MASTERS", "Address", "ClusterMap", "EveryMaster", "command_key", "redirection", "wait_briefly"]

log = logging.getLogger("websock_actors")

Address = tuple[str, int]

# The commands whose first argument is not their key (or that have none).
_SCRIPTS = frozenset({"EVAL", "EVALSHA", "eval", "evalsha"})
_KEYLESS = frozenset({"INFO", "PING", "ASKING"})


class _Masters:
    """The last argument a script's caller leaves for the masters' run_ids (redis_wire.py
    APPEND's and READ's last ARGV): the cluster's writers fill it in as they send, from a map
    read after any redirection, so a slot's new owner is never told of a master the map no
    longer has."""

    def __repr__(self) -> str:
        return "MASTERS"


MASTERS = _Masters()


def command_key(command: Sequence[Any]) -> Any:
    """The key (or channel) a command is routed by; None for one without (INFO, PING)."""
    name = command[0]
    if name in _SCRIPTS:
        return command[3] if int(command[2]) > 0 else None
    return command[1] if len(command) > 1 and name not in _KEYLESS else None


def redirection(error: BaseException | None) -> tuple[str, int, Address | None] | None:
    """(kind, slot, address) of a cluster's redirection or pause (MOVED, ASK, TRYAGAIN,
    CLUSTERDOWN), None for any other error."""
    if not isinstance(error, redis.ResponseError):
        return None
    words = str(error).split()
    if len(words) >= 3 and words[0] in ("MOVED", "ASK"):
        host, _, port = words[2].rpartition(":")
        return words[0], int(words[1]), (host, int(port))
    if words and words[0] in ("TRYAGAIN", "CLUSTERDOWN"):
        return words[0], -1, None
    return None


class ClusterMap:
    """See the module's docstring. `options`: a GeventRedisConnection's keyword arguments
    (credentials, timeouts) for every node."""

    def __init__(
        self,
        seeds: Iterable[Address],
        options: dict[str, Any],
        *,
        refresh_every: float = 5.0,
        unsettled_every: float = 0.25,
    ) -> None:
        self._seeds = list(seeds)
        self._options = options
        self.refresh_every = refresh_every
        self.unsettled_every = unsettled_every
        self._slots: list[Address | None] = [None] * SLOTS
        self.masters: dict[Address, str] = {}  # every master of the map -> its run_id ("": unreached)
        self.continuity = ""  # the run_ids of the masters reached, comma-joined (APPEND's last ARGV)
        self.version = 0  # bumped at every change
        self.ready = gevent.event.Event()  # set once a map was read
        self._listeners: list[Callable[[], None]] = []
        self._stale = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self._greenlet: gevent.Greenlet[Any, Any] | None = None
        self._users = 0
        self._read_at = 0.0  # monotonic time the last read began
        self._reading = gevent.lock.Semaphore()

    def connector(self, address: Address, timeout: float | None = None) -> Connect:
        """How to connect to the node at `address` (with its own `timeout`, when given)."""
        options = dict(self._options)
        if timeout is not None:
            options.update(socket_timeout=timeout, socket_connect_timeout=timeout)
        return partial(GeventRedisConnection, host=address[0], port=address[1], **options)

    def listen(self, changed: Callable[[], None]) -> None:
        """`changed()` runs in the map's greenlet after every change (it must not block)."""
        self._listeners.append(changed)

    def owner(self, key: Any) -> Address | None:
        """The master of `key`'s slot, as last read; None before the first read."""
        return self._slots[key_slot(key.encode() if isinstance(key, str) else key)]

    def moved(self, slot: int, address: Address) -> None:
        """A MOVED reply: the slot is `address`'s now (the rest is read again soon). A
        master not in the map yet waits for that read."""
        if self._slots[slot] != address and address in self.masters:
            self._slots[slot] = address
            self._changed()
        self.stale()

    def filled(self, command: tuple[Any, ...]) -> tuple[Any, ...]:
        """`command` with its last argument MASTERS replaced by the masters' run_ids of the
        current map."""
        if command[-1] is not MASTERS:
            return command
        return (*command[:-1], self.continuity)

    def read_since(self, moment: float) -> None:
        """Read the map now, unless a read began after `moment` (a redirection seen then);
        BackplaneUnavailable when no node answers."""
        with self._reading:
            if self._read_at <= moment:
                self.refresh()

    def stale(self) -> None:
        """Read the map again soon (never blocks: callable from any callback)."""
        self._stale.set()

    def start(self) -> None:
        """Start the refreshing greenlet (once for all its users); `stop` ends it with the last."""
        self._users += 1
        if self._greenlet is None:
            self._stopping.clear()
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._greenlet is not None:
            self._stopping.set()
            self._stale.set()
            self._greenlet.join(5.0)
            self._greenlet = None

    def wait_ready(self, timeout: float) -> None:
        if not self.ready.wait(timeout):
            raise BackplaneUnavailable("no node of the Redis Cluster answered")

    def _run(self) -> None:
        while not self._stopping.is_set():
            unsettled = True
            try:
                with self._reading:
                    unsettled = self.refresh()
            except BackplaneUnavailable as exc:
                log.warning("Redis Cluster: %s", exc)
            except Exception:  # the map must outlive any surprise: every route rests on it
                log.exception("Redis Cluster: reading the slots failed")
            wait = self.unsettled_every if unsettled else self.refresh_every
            self._stale.wait(wait)
            self._stale.clear()
            self._stopping.wait(0.05)  # reports come in bursts: one read for all of them

    def refresh(self) -> bool:
        """Read the slots from the first node that answers; True while a master of the map
        could not be reached (its failover may be under way)."""
        failures = []
        self._read_at = time.monotonic()
        candidates = list(dict.fromkeys([*self.masters, *self._seeds]))
        for address in candidates:
            try:
                reply = self._ask(address, "CLUSTER", "SLOTS")
            except REDIS_FAILURES as exc:
                failures.append(f"{address[0]}:{address[1]}: {error_text(exc)}")
                continue
            if reply:
                return self._apply(reply, address)
            failures.append(f"{address[0]}:{address[1]} has no slots assigned")
        raise BackplaneUnavailable(f"no node of the Redis Cluster answered: {'; '.join(failures)}")

    def _apply(self, reply: list[Any], asked: Address) -> bool:
        slots: list[Address | None] = [None] * SLOTS
        for start, end, master, *_replicas in reply:
            host = master[0].decode() if master[0] else asked[0]
            address = (host, int(master[1]))
            slots[int(start) : int(end) + 1] = [address] * (int(end) - int(start) + 1)
        masters = dict.fromkeys(address for address in slots if address is not None)
        unreached = False
        run_ids: dict[Address, str] = {}
        for address in masters:
            try:
                run_ids[address] = run_id_of(self._ask(address, "INFO", "server"))
            except REDIS_FAILURES:
                run_ids[address] = ""
                unreached = True
        changed = slots != self._slots or run_ids != self.masters
        self._slots = slots
        self.masters = run_ids
        self.continuity = ",".join(run for run in run_ids.values() if run)
        self.ready.set()
        if changed:
            log.info("Redis Cluster: %d masters, map version %d", len(run_ids), self.version + 1)
            self._changed()
        return unreached

    def _changed(self) -> None:
        self.version += 1
        for listener in self._listeners:
            listener()

    def _ask(self, address: Address, *command: Any) -> Any:
        conn = self.connector(address)()
        try:
            conn.connect()
            conn.send_command(*command)
            return conn.read_response()
        finally:
            conn.disconnect()


class EveryMaster:
    """An event set while the same event of every master's connection is (a publisher's
    `connected_once`, a subscriber's `connected`): what stands for it over a cluster."""

    def __init__(self, cluster: ClusterMap, events: Callable[[], list[Any]]) -> None:
        self._cluster = cluster
        self._events = events  # one per master of the map now

    def is_set(self) -> bool:
        events = self._events()
        return bool(events) and all(event.is_set() for event in events)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the map, then for each master's event, within `timeout` in all."""
        loop = gevent.get_hub().loop
        deadline = None if timeout is None else loop.now() + timeout
        self._cluster.ready.wait(timeout)
        for event in self._events():
            event.wait(None if deadline is None else max(0.0, deadline - loop.now()))
        return self.is_set()


def wait_briefly(attempt: int) -> None:
    """The pause before the next try of a command the cluster asked to retry."""
    gevent.sleep(min(0.5, 0.02 * 2**attempt))
