"""Rooms shared by every process and host that uses one Redis: `RedisBackplane(url)`.

    app = App("chat", backplane=RedisBackplane("redis://127.0.0.1:6379/0"))
    websock-actors run examples.chat:app --workers 4 --redis redis://127.0.0.1:6379/0
    --redis redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0    # through Sentinel
    --redis redis+cluster://10.0.0.1:7000,10.0.0.2:7000/                 # a Redis Cluster

Each process (a "node", with a fresh random id per start) keeps its own members in a
`LocalRooms`, and Redis carries what the others need. The jobs are split by module:

- redis_subscriber.py: one pub/sub channel per room, `<key_prefix>:room:<room>`, subscribed
  while this node has members there (and `linger` seconds after).
- redis_presence.py: who is in each room, node heartbeats, dead nodes' members reported
  as left, and a Redis that lost its data noticed by every node.
- redis_stream.py: numbered broadcasts (resumption on): seq, epoch, the kept history.
- redis_sessions.py: resumable sessions.
- redis_users.py: a channel per user, for `send_to_user` and `disconnect_user`.

A plain broadcast is framed once; the Redis message is a 17-byte header (kind, origin
node) and that frame, which every node puts as it is into its members' mailboxes: one
PUBLISH per broadcast, without waiting for Redis's answer. Redis sends a node its own
publishes back; the header drops them unread. When Redis is down a plain broadcast still
reaches this node's members, then raises `BackplaneUnavailable` (the sender gets
`backplane_unavailable`); a join fails the same way (and is undone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BackplaneUnavailable
from ..protocol.redact import mask_url
from ..typed.rooms import LocalRooms, LostMember, MemberRef
from ..typed.streams import RoomStream
from .redis_connect import RedisClients
from .redis_io import PublishFailures
from .redis_presence import PRESENCE, NodeLiveness, PresenceCache, PresenceEntry, PresenceWrites
from .redis_ratelimit import RedisLeases
from .redis_sessions import RedisSessions
from .redis_stream import RedisStream
from .redis_users import RedisUsers
from .redis_wire import FRAME, HEADER, NUMBERED

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["BackplaneStats", "RedisBackplane"]

log = logging.getLogger("websock_actors")

# Seconds `start` waits for the first connections to Redis before the server goes on.
START_WAIT = 2.0


@dataclass
class BackplaneStats:
    """Counters of one node, for logs, metrics and tests."""

    published: int = 0  # broadcasts sent to Redis
    publish_failures: int = 0  # broadcasts Redis did not take (the sender got an error)
    received: int = 0  # messages of other nodes received (for rooms with members here)
    own: int = 0  # our own publishes echoed back by Redis, dropped on the header
    foreign: int = 0  # received for a room without members here (only while lingering)
    delivered: int = 0  # frames put into local mailboxes from other nodes' messages


class RedisBackplane:
    """`Rooms` over Redis: see the module's docstring."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wsa",
        linger: float = 2.0,
        heartbeat: float = 1.0,
        node_timeout: float = 10.0,
        join_timeout: float = 5.0,
        pool_size: int = 8,
        ping_interval: float = 5.0,
    ) -> None:
        """`linger`: seconds a room stays subscribed after its last member here left (a
        member coming back costs no SUBSCRIBE); `heartbeat`/`node_timeout`: how often a node
        says it lives, and after how long without it it counts as dead."""
        self.url = url
        self._shown_url = mask_url(url)  # in log lines: no password
        self.local = LocalRooms()
        self.node = self.local.node  # a fresh random id: this node's, in Redis and in headers
        self.stats = BackplaneStats()
        self._failures = PublishFailures(self, self.stats)  # counted, and logged sparingly
        # heartbeats and reaping (`beats`): never behind a join rush, and quick to notice a stall
        clients = RedisClients.of(
            url, prefix, pool_size=pool_size, beat_timeout=max(0.5, heartbeat),
            on_lost=self._failures.lost, on_refused=self._failures.refused,
        )  # fmt: skip
        self._keys = clients.keys  # Redis keys and channels start with `prefix`
        self._pool = clients.pool  # joins, leaves, presence, stream reads
        self._beats = clients.beats
        self._publisher = clients.publisher
        self._key_prefix = prefix
        self._header = FRAME + self.node.encode()
        self.sessions = RedisSessions(self._pool, prefix)
        self.rate_leases = RedisLeases(self._pool, prefix)  # the typed apps' rate limits
        self._stream: RedisStream | None = None
        self._lost: LostMember | None = None
        self._reset: Callable[[], None] | None = None
        # member bookkeeping: (connection id, room) -> (presence entry, join time)
        self._entries: dict[tuple[int, str], tuple[str, float]] = {}
        self.subscriber = clients.subscriber(
            self._keys.room_prefix,
            on_message=self._on_message,
            on_subscribed=self._on_subscribed,
            on_unsubscribed=self._on_unsubscribed,
            rooms_wanted=lambda: self.local.rooms,
            control=self.sessions.control_channel(self.node),
            on_control=self.sessions.on_control,
            linger=linger,
            join_timeout=join_timeout,
            ping_interval=ping_interval,
            max_backoff=clients.backoff,
        )
        self.user_channels = RedisUsers(
            clients.subscriber, self._publisher, self._keys, self.node, self.subscriber
        )  # fmt: skip
        self._writes = PresenceWrites(self._keys, self.node)
        self._cache = PresenceCache(self.node)
        self.liveness = NodeLiveness(
            self._beats,
            prefix,
            self.node,
            writes=self._writes,
            cache=self._cache,
            entries=lambda: self._entries,
            local_rooms=lambda: set(self.local.rooms),
            report_left=self._report_left,
            on_reset=self._on_reset,
            heartbeat=heartbeat,
            node_timeout=node_timeout,
        )
        self.resets = 0
        self._started = False

    def __repr__(self) -> str:
        return f"<RedisBackplane node={self.node} {self._shown_url}>"

    @property
    def broadcast_failures(self) -> int:
        return self.local.broadcast_failures

    @property
    def deliveries(self) -> int:
        """Frames put into this node's mailboxes, from its own broadcasts and other nodes'."""
        return self.local.deliveries

    @property
    def connected(self) -> bool:
        """Redis answers: other nodes' broadcasts arrive, ours are taken, heartbeats go."""
        return self.subscriber.connected.is_set() and self._publisher.healthy and self.liveness.healthy

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, lost: LostMember | None = None, reset: Callable[[], None] | None = None) -> None:
        """Start the subscriber and the heartbeat, and give them a moment to connect, so that
        the first clients of a server that starts beside a working Redis are not refused;
        Redis may be down (then they keep trying, and the server starts not ready)."""
        if self._started:
            return
        self._started = True
        self._lost = lost
        self._reset = reset
        self._publisher.start()
        self.subscriber.start()
        self.user_channels.start()
        self.liveness.start()
        deadline = time.monotonic() + START_WAIT
        self._publisher.connected_once.wait(START_WAIT)
        self.subscriber.connected.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Say goodbye (other nodes need not wait for our heartbeat to expire), then stop."""
        if not self._started:
            return
        self._started = False
        self.subscriber.stop()
        self.user_channels.stop()
        self._publisher.stop()  # what the last connections' goodbyes published goes out first
        self.liveness.stop()
        # With resumption, the members still here are in their grace (every open connection
        # was closed): their presence stays until they resume elsewhere or their grace ends.
        removals = [] if self._stream is not None else self._presence_removals(list(self._entries))
        goodbye = [*removals, ("ZREM", self.liveness.nodes_key, self.node), ("DEL", self.liveness.rooms_key)]
        try:
            self._pool.run(goodbye)
        except BackplaneUnavailable as exc:
            log.warning("%r: could not say goodbye to Redis: %s", self, exc)
        self.local.stop()
        self._entries.clear()
        self._pool.close()
        self._beats.close()

    def open_stream(self, size: int, retention: float, retained: int) -> RoomStream:
        shared = self._pool, self._publisher, self._keys, self.node, self.stats
        self._stream = RedisStream(*shared, size=size, retention=retention, retained=retained)
        return self._stream

    # -- idempotency keys (the server API's; an Emitter's share them: redis_wire.py) -------

    def first_use(self, key: str, ttl: int) -> bool:
        """Whether idempotency `key` is new: False for a repeat within `ttl` seconds, on any
        node. BackplaneUnavailable when Redis does not answer."""
        return self._pool.execute("SET", self._idempotency_key(key), "1", "NX", "EX", ttl) is not None

    def forget_use(self, key: str) -> None:
        """The request of `key` failed: a retry of it is not a repeat."""
        self._pool.execute("DEL", self._idempotency_key(key))

    def _idempotency_key(self, key: str) -> str:
        return f"{self._key_prefix}:idempotency:{key}"

    # -- membership ----------------------------------------------------------------------

    def join(
        self,
        conn: Connection,
        room: str,
        presence: Any = None,
        *,
        since: float | None = None,
        replacing: MemberRef | None = None,
    ) -> bool:
        """Subscribe and write the presence first; the member is added here last, in one
        step with no wait after it (a numbered room's cursor is where the member starts)."""
        if self.local.is_member(conn, room):
            return False
        joined_at = since if since is not None else time.time()
        entry = PresenceEntry(self.node, conn.id, presence).encode()
        commands = [*self._writes.added(room, joined_at, entry), ("SADD", self.liveness.rooms_key, room)]
        replaced = []
        if replacing is not None:
            replaced = [PresenceEntry(replacing.node, replacing.conn_id, presence).encode()]
            commands.extend(self._writes.removed(room, replaced))
        try:
            self.subscriber.want(room)
            self._pool.run(commands)
        except BackplaneUnavailable:
            if room not in self.local.rooms:
                self.subscriber.release(room)
            raise
        self._cache.added(room, joined_at, entry)
        self._cache.removed(room, replaced)
        self.local.join(conn, room, presence, since=since, replacing=replacing)
        if replacing is not None and replacing.node == self.node:
            self._entries.pop((replacing.conn_id, room), None)  # its entry was removed above
        self._entries[(conn.id, room)] = (entry, joined_at)
        return True

    def leave(self, conn: Connection, room: str) -> bool:
        if not self.local.leave(conn, room):
            return False
        self._write_removals(conn, [room])
        return True

    def forget(self, conn: Connection) -> set[str]:
        rooms = self.local.forget(conn)
        if rooms:
            self._write_removals(conn, rooms)
        return rooms

    def members(self, room: str) -> list[Connection]:
        return self.local.members(room)

    def presence(self, room: str) -> list[Any]:
        """From this node's copy when it has members in `room` (no read of the whole set)."""
        kept = self._cache.presence(room)
        if kept is not None:
            return kept
        entries = self._pool.execute("ZRANGE", self.liveness.presence_key(room), 0, -1)
        return [PresenceEntry.decode(entry).presence for entry in entries]

    def rooms_of(self, conn: Connection) -> set[str]:
        return self.local.rooms_of(conn)

    def is_member(self, conn: Connection, room: str) -> bool:
        return self.local.is_member(conn, room)

    def broadcast(self, room: str, frame: bytes, skip: Collection[Connection] = ()) -> int:
        """Deliver here, then queue the same frame for the other nodes (written to Redis
        with the other publishes of this moment, without waiting for the reply)."""
        delivered = self.local.broadcast_here(room, frame, skip)
        try:
            self._publisher.publish(self._keys.channel(room), self._header + frame)
        except BackplaneUnavailable:
            self._failures.failed(1, f"a broadcast to {room!r} reached only this node")
            raise
        self.stats.published += 1
        return delivered

    def broadcast_here(self, room: str, frame: bytes, skip: Collection[Connection] = ()) -> int:
        return self.local.broadcast_here(room, frame, skip)

    # -- what Redis tells -------------------------------------------------------------------

    def _on_message(self, room: str, data: bytes) -> None:
        kind = data[:1]
        if kind == PRESENCE:
            self._cache.apply(room, data)
            return
        if kind == NUMBERED:
            if data[1:HEADER] == self._header[1:]:
                self.stats.own += 1
            else:
                self.stats.received += 1
            if self._stream is not None:
                self._stream.on_message(room, data)
            return
        if data[:HEADER] == self._header:
            self.stats.own += 1
            return
        self.stats.received += 1
        if room not in self.local.rooms:
            self.stats.foreign += 1
            return
        if kind == FRAME:
            self.stats.delivered += self.local.broadcast_here(room, data[HEADER:])

    def _on_subscribed(self, room: str) -> None:
        """Before any message of the new subscription: the room's presence, the stream's catch-up."""
        try:
            scored = self._pool.execute("ZRANGE", self.liveness.presence_key(room), 0, -1, "WITHSCORES")
            self._cache.load(room, scored)
        except BackplaneUnavailable as exc:
            self._cache.drop(room)  # read from Redis each time until the next subscription
            log.warning("%r: presence of %r not loaded: %s", self, room, exc)
        stream = self._stream
        if stream is not None and stream.sink is not None:
            stream.sink.follow(room)

    def _on_unsubscribed(self, room: str) -> None:
        self._cache.drop(room)
        stream = self._stream
        if stream is not None and stream.sink is not None:
            stream.sink.unfollow(room)

    def _on_reset(self) -> None:
        self.resets += 1
        if self._reset is not None:
            self._reset()

    def _report_left(self, room: str, presence: Any) -> None:
        if self._lost is not None:
            try:
                self._lost(room, presence)
            except BackplaneUnavailable as exc:
                log.warning("%r: a lost member of %r was not reported: %s", self, room, exc)

    # -- presence bookkeeping ------------------------------------------------------------

    def _presence_removals(self, entries: Iterable[tuple[int, str]]) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        for cid, room in entries:
            entry = self._entries[(cid, room)][0]
            commands.extend(self._writes.removed(room, [entry]))
            self._cache.removed(room, [entry])
        return commands

    def _write_removals(self, conn: Connection, rooms: Iterable[str]) -> None:
        """Take `conn` out of the presence of `rooms`; a failure is repaired by the resync."""
        keys = [(conn.id, room) for room in rooms if (conn.id, room) in self._entries]
        commands = self._presence_removals(keys)
        for key in keys:
            del self._entries[key]
        emptied = [room for room in rooms if room not in self.local.rooms]
        if emptied:
            commands.append(("SREM", self.liveness.rooms_key, *emptied))
        for room in emptied:
            self.subscriber.release(room)
        if not commands:
            return
        try:
            self._pool.run(commands)
        except BackplaneUnavailable as exc:
            self.liveness.dirty = True
            log.debug("%r: presence removal postponed: %s", self, exc)
