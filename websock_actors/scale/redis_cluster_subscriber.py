"""A node's channels on a Redis Cluster: `ClusterSubscriber`, one sharded `Subscriber` per master.

Sharded pub/sub (SSUBSCRIBE, SPUBLISH) keeps a channel's messages on the master of its slot,
so every master carries only its own rooms' traffic; a subscriber must therefore listen on
each master that owns one of its rooms. This keeps one connection per master, each a
`Subscriber` (scale/redis_subscriber.py) that wants the node's rooms whose slot that master
owns. When the `ClusterMap` changes (a failover, a migrated slot), each room is wanted by its
new owner's subscriber, which subscribes it and calls `on_subscribed` (the backplane then
catches the room up from its history); the old one lets it go without `on_unsubscribed`, which
only runs for a room the node no longer wants at all. Subscribers of nodes that are no longer
masters are stopped.

The same public face as a `Subscriber`, so the backplane and the user channels use either.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import gevent

from ..errors import BackplaneUnavailable
from .redis_cluster import Address, ClusterMap, EveryMaster
from .redis_keys import Keyspace
from .redis_subscriber import Sharded, Subscriber

__all__ = ["ClusterSubscriber"]

# Rooms whose master is remembered, at most (rooms that come and go must not grow it forever).
MAX_OWNERS_KEPT = 100_000


class ClusterSubscriber:
    """See the module's docstring; the arguments are a `Subscriber`'s."""

    def __init__(
        self,
        cluster: ClusterMap,
        keys: Keyspace,
        channel_prefix: bytes,
        *,
        on_message: Callable[[str, bytes], None],
        on_subscribed: Callable[[str], None],
        on_unsubscribed: Callable[[str], None],
        rooms_wanted: Callable[[], Collection[str]],
        control: bytes = b"",
        on_control: Callable[[bytes], None] | None = None,
        linger: float = 2.0,
        join_timeout: float = 5.0,
        ping_interval: float = 1.0,
        max_backoff: float = 1.0,
    ) -> None:
        self.cluster = cluster
        self._keys = keys
        self._channel_prefix = channel_prefix
        self._sharded = Sharded(keys.name, keys.unnamed, cluster)
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._on_unsubscribed = on_unsubscribed
        self._rooms_wanted = rooms_wanted
        self._control = control
        self._on_control = on_control
        self.linger = linger
        self.join_timeout = join_timeout
        self.ping_interval = ping_interval
        self.max_backoff = max_backoff
        self._nodes: dict[Address, Subscriber] = {}
        self._owners: dict[str, Address | None] = {}  # room -> master, for map `_version`
        self._version = -1
        self._started = False
        self.connected = EveryMaster(cluster, lambda: [node.connected for node in self._nodes.values()])
        self._retired = [0, 0, 0]  # subscribes, unsubscribes, reconnects of stopped subscribers
        cluster.listen(self._follow)

    @property
    def subscribed(self) -> set[str]:
        return set().union(*(node.subscribed for node in self._nodes.values()))

    @property
    def subscribes(self) -> int:
        return self._retired[0] + sum(node.subscribes for node in self._nodes.values())

    @property
    def unsubscribes(self) -> int:
        return self._retired[1] + sum(node.unsubscribes for node in self._nodes.values())

    @property
    def reconnects(self) -> int:
        return self._retired[2] + sum(node.reconnects for node in self._nodes.values())

    def start(self) -> None:
        self._started = True
        self.cluster.start()
        self._follow()

    def stop(self) -> None:
        self._started = False
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            node.stop()
        self.cluster.stop()

    def want(self, room: str) -> None:
        """Return once the master of `room`'s slot sends this node its channel; tried again
        on the new owner when the slot moved meanwhile."""
        for _ in range(3):
            version = self.cluster.version
            try:
                self._node_of(room).want(room)
                return
            except BackplaneUnavailable:
                if self.cluster.version == version:
                    raise
        raise BackplaneUnavailable("the Redis Cluster kept moving the room's slot")

    def release(self, room: str) -> None:
        owner = self._owner(room)
        node = None if owner is None else self._nodes.get(owner)
        if node is not None:
            node.release(room)

    def _node_of(self, room: str) -> Subscriber:
        owner = self._owner(room)
        node = None if owner is None else self._nodes.get(owner)
        if node is None:
            self.cluster.stale()
            raise BackplaneUnavailable("Redis Cluster: no subscriber on that slot's master yet")
        return node

    def _owner(self, room: str) -> Address | None:
        if self._version != self.cluster.version or len(self._owners) > MAX_OWNERS_KEPT:
            self._owners.clear()  # a new map; or many rooms came and went under the same one
            self._version = self.cluster.version
        try:
            return self._owners[room]
        except KeyError:
            channel = self._channel_prefix + self._keys.name(room).encode()
            owner = self._owners[room] = self.cluster.owner(channel)
            return owner

    def _wanted_on(self, address: Address) -> set[str]:
        return {room for room in self._rooms_wanted() if self._owner(room) == address}

    def _unsubscribed(self, room: str) -> None:
        if room not in self._rooms_wanted():  # not merely moved to another master
            self._on_unsubscribed(room)

    def _follow(self) -> None:
        """A subscriber per master of the map; each one's rooms synced again."""
        if not self._started:
            return
        masters = set(self.cluster.masters)
        for address in masters - set(self._nodes):
            node = self._nodes[address] = self._subscriber(address)
            node.start()
        for address in set(self._nodes) - masters:
            gone = self._nodes.pop(address)
            self._retired[0] += gone.subscribes
            self._retired[1] += gone.unsubscribes
            self._retired[2] += gone.reconnects
            gevent.spawn(gone.stop)
        control_owner = self.cluster.owner(self._control) if self._control else None
        for address, node in self._nodes.items():
            node.control = self._control if address == control_owner else b""
            node.resync()

    def _subscriber(self, address: Address) -> Subscriber:
        return Subscriber(
            self.cluster.connector(address),
            self._channel_prefix,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            on_unsubscribed=self._unsubscribed,
            rooms_wanted=lambda: self._wanted_on(address),
            on_control=self._on_control,
            linger=self.linger,
            join_timeout=self.join_timeout,
            ping_interval=self.ping_interval,
            max_backoff=self.max_backoff,
            sharded=self._sharded,
            on_lost=self.cluster.stale,
        )

