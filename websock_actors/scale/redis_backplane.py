"""Rooms shared by every process and host that uses one Redis: `RedisBackplane(url)`.

    app = App("chat", backplane=RedisBackplane("redis://127.0.0.1:6379/0"))
    websock-actors run examples.chat:app --workers 4 --redis redis://127.0.0.1:6379/0

Each process (a "node", with a fresh random id per start) keeps its own members in a
`LocalRooms`, and Redis carries what the others need:

- Broadcasts: one pub/sub channel per room, `<prefix>:room:<room>`. A node subscribes when
  its first member joins a room and unsubscribes `linger` seconds after its last one left,
  so a node never receives, let alone decodes, a frame of a room it has no members in. The
  publisher frames the message once; the Redis message is a 17-byte header (kind, origin
  node) and that frame, which every node puts as it is into its members' mailboxes. One
  PUBLISH per broadcast. Redis sends a node its own publishes back (pub/sub has no
  "not to me"); the header drops them unread.
- Presence: a sorted set per room, `<prefix>:presence:<room>`, of `node:connection:presence`
  scored by join time: `presence(room)` is the union over nodes, in join order.
- Liveness: every node writes its heartbeat into `<prefix>:nodes` (a sorted set scored by
  time) every `heartbeat` seconds and lists its rooms in `<prefix>:node:<id>:rooms`. A node
  silent for `node_timeout` seconds is dead: the first survivor to remove it from the set
  (ZREM answers 1 to one node only) removes its presence and sends, through the app's
  `on_member_lost`, a "left" message for each of its members: exactly once.

One greenlet owns the subscriber connection (redis-py connections are not greenlet-safe):
it subscribes and unsubscribes for the others, reconnects with jittered backoff, and
subscribes again. Publishes have a connection and a greenlet of their own, which write
every publish queued since their last write at once (`Publisher`); joins and presence go
through a small pool; heartbeats have their own connection, so that a rush of joins cannot
delay them until the node looks dead. Each greenlet is stopped with a flag and by closing
its connection, never by killing it inside redis-py.

When Redis is down a broadcast still reaches this node's members (not with resumption on:
a numbered broadcast needs Redis for its seq, and reaches no one), then raises
`BackplaneUnavailable` (the sender gets `backplane_unavailable`), and is logged and counted
(`stats.publish_failures`); a join fails the same way (and is undone). Broadcasts already
handed to the publisher when its connection breaks are logged and counted as well (their
senders were answered already). When Redis is back,
the node writes its heartbeat and its members' presence again (a restarted Redis, with no
persistence, has lost them).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import redis

from ..errors import BackplaneUnavailable
from ..server.broadcast import encode_broadcast
from ..typed.history import replay_after
from ..typed.rooms import Attached, Encoder, LocalRooms, LostMember
from ..typed.sessions import RoomMembership, SessionRecord
from .redis_io import REDIS_FAILURES, CommandPool, GeventRedisConnection, Publisher, connection_options
from .redis_sessions import RedisSessions

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["BackplaneStats", "RedisBackplane"]

log = logging.getLogger("websock_actors")

_FRAME = b"F"  # the kind of a Redis message that carries a client frame
_SEQUENCED = b"S"  # ... that carries a numbered broadcast's JSON text (resumption on)
_HEADER = 17  # kind (1 byte) + origin node id (16 hex digits)

# A numbered broadcast, in one atomic step: the room's next seq (a new epoch, and an empty
# stream, when the room has no history), the stamped text into the room's stream, capped at
# about the policy's history, and out on the room's channel, so that every node delivers the
# rooms' messages in seq order.
# KEYS: the room's meta hash (seq, epoch), its stream. ARGV: a fresh epoch, the stamp prefix,
# the history size, the excluded session key, the channel, the message header, the TTL (s).
_PUBLISH_NUMBERED = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local text = ARGV[2] .. seq .. ',"epoch":"' .. epoch .. '"}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'm', text, 'x', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. seq .. ' ' .. text)
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[7])
return seq
"""

# Seconds past a grace's end before any node (not only the member's own) ends it.
_GRACE_SLACK = 2.0


@dataclass
class BackplaneStats:
    """Counters of one node, for logs, metrics and tests."""

    published: int = 0  # broadcasts sent to Redis
    publish_failures: int = 0  # broadcasts Redis did not take (the sender got an error)
    received: int = 0  # messages of other nodes received (for rooms with members here)
    own: int = 0  # our own publishes echoed back by Redis, dropped on the header
    foreign: int = 0  # received for a room without members here (only while lingering)
    delivered: int = 0  # frames put into local mailboxes from other nodes' messages
    subscribes: int = 0  # rooms subscribed (SUBSCRIBE commands' channels)
    unsubscribes: int = 0
    reconnects: int = 0  # subscriber connections made after a loss
    lost_members: int = 0  # members of dead nodes this node reported as left
    graces_ended: int = 0  # resumable members of other nodes (or drained ones) reported as left


class RedisBackplane:
    """`Rooms` over Redis pub/sub: see the module's docstring."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "wsa",
        linger: float = 2.0,
        heartbeat: float = 2.0,
        node_timeout: float = 10.0,
        join_timeout: float = 5.0,
        pool_size: int = 8,
        ping_interval: float = 5.0,
    ) -> None:
        """`linger`: seconds a room stays subscribed after its last member here left (a
        member coming back costs no SUBSCRIBE); `heartbeat`/`node_timeout`: how often a node
        says it lives, and after how long without it it counts as dead."""
        options = connection_options(url, connect_timeout=2.0, timeout=5.0)
        self.url = url
        self.node = secrets.token_hex(8)
        self.local = LocalRooms()
        self.stats = BackplaneStats()
        self.linger = linger
        self.heartbeat = heartbeat
        self.node_timeout = node_timeout
        self.join_timeout = join_timeout
        self.ping_interval = ping_interval
        self._options = options
        self._pool = CommandPool(options, pool_size)  # joins, leaves, presence
        self._beats = CommandPool(options, 1)  # heartbeats and reaping: never behind a join rush
        self._publisher = Publisher(options, self._publishes_lost, self._publish_refused)
        self._prefix = prefix
        self._channel_prefix = f"{prefix}:room:".encode()
        self._nodes_key = f"{prefix}:nodes"
        self._node_rooms_key = f"{prefix}:node:{self.node}:rooms"
        self._header = _FRAME + self.node.encode()
        self._node_bytes = self.node.encode()
        self.sessions = RedisSessions(self._pool, prefix)
        self._history: tuple[int, int] | None = None  # (size, TTL in s) once numbered
        self._epochs = 0  # fresh epochs offered to the publish script
        # resuming connections: room -> {conn: [(seq, frame)]} of live messages held back
        self._holding: dict[str, dict[Connection, list[tuple[int, bytes]]]] = {}
        # members who just joined or resumed: room -> {conn: the last seq they have}; Redis
        # may still send them older messages (published before they joined, or replayed)
        self._floors: dict[str, dict[Connection, int]] = {}
        self._join_positions: dict[tuple[int, str], tuple[int, str]] = {}
        self._lost: LostMember | None = None
        # member bookkeeping: (connection id, room) -> (presence entry, join time)
        self._entries: dict[tuple[int, str], tuple[str, float]] = {}
        # the subscriber's state, changed by other greenlets only through _wanted/_linger
        self._subscribed: set[str] = set()
        self._subscribing: set[str] = set()
        self._pending: dict[str, gevent.event.Event] = {}
        self._lingering: dict[str, float] = {}  # room -> when to unsubscribe (monotonic)
        self._wake = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self._connected = gevent.event.Event()  # set while the subscriber is up
        self._known_down = False  # a connection attempt failed since the last success
        self._dirty = True  # presence must be written again (at start, after an outage)
        self._greenlets: list[gevent.Greenlet[Any, Any]] = []
        self._last_failure_log = 0.0

    def __repr__(self) -> str:
        return f"<RedisBackplane node={self.node} {self.url}>"

    @property
    def broadcast_failures(self) -> int:
        return self.local.broadcast_failures

    @property
    def deliveries(self) -> int:
        """Frames put into this node's mailboxes, from its own broadcasts and other nodes'."""
        return self.local.deliveries

    @property
    def connected(self) -> bool:
        """Both directions are up: other nodes' broadcasts arrive, ours are taken."""
        return self._connected.is_set() and self._publisher.healthy

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, lost: LostMember | None = None) -> None:
        """Start the subscriber and the heartbeat; Redis may be down (they keep trying)."""
        if self._greenlets:
            return
        self._lost = lost
        self._stopping.clear()
        self._publisher.start()
        self._greenlets = [gevent.spawn(self._subscriber), gevent.spawn(self._heartbeats)]

    def stop(self) -> None:
        """Say goodbye (other nodes need not wait for our heartbeat to expire), then stop."""
        if not self._greenlets:
            return
        self._stopping.set()
        self._wake.set()
        self._publisher.stop()  # what the last connections' goodbyes published goes out first
        # With resumption, the members still here are in their grace (every open connection
        # was closed): their presence stays until they resume elsewhere or their grace ends.
        removals = [] if self._history is not None else self._presence_removals(self._entries)
        try:
            self._pool.run([*removals, ("ZREM", self._nodes_key, self.node), ("DEL", self._node_rooms_key)])
        except BackplaneUnavailable as exc:
            log.warning("%r: could not say goodbye to Redis: %s", self, exc)
        gevent.joinall(self._greenlets, timeout=5.0)
        self._greenlets = []
        self.local.stop()
        self._entries.clear()
        self._floors.clear()
        self._pool.close()
        self._beats.close()

    # -- membership ----------------------------------------------------------------------

    def join(self, conn: Connection, room: str, presence: Any = None) -> bool:
        if self._history is not None:  # numbered: the member starts at a known seq
            if self.local.is_member(conn, room) or conn in self._holding.get(room, ()):
                return False
            _, positions, _ = self._attach(
                conn, {room: RoomMembership(presence, time.time())}, None, "", None
            )
            self._join_positions[(conn.id, room)] = positions[room]
            return True
        if not self.local.join(conn, room, presence):
            return False
        joined_at = time.time()
        entry = f"{self.node}:{conn.id}:{json.dumps(presence, separators=(',', ':'))}"
        try:
            self._subscribe(room)
            self._pool.run(
                [
                    ("ZADD", self._presence_key(room), joined_at, entry),
                    ("SADD", self._node_rooms_key, room),
                ]
            )
        except BackplaneUnavailable:
            self.local.leave(conn, room)
            self._emptied(room)
            raise
        self._entries[(conn.id, room)] = (entry, joined_at)
        return True

    def leave(self, conn: Connection, room: str) -> bool:
        if not self.local.leave(conn, room):
            return False
        self._drop_floor(conn, room)
        self._write_removals(conn, [room])
        return True

    def forget(self, conn: Connection) -> set[str]:
        rooms = self.local.forget(conn)
        for room in rooms:
            self._drop_floor(conn, room)
        if rooms:
            self._write_removals(conn, rooms)
        return rooms

    def members(self, room: str) -> list[Connection]:
        return self.local.members(room)

    def presence(self, room: str) -> list[Any]:
        entries = self._pool.execute("ZRANGE", self._presence_key(room), 0, -1)
        return [json.loads(entry.split(b":", 2)[2]) for entry in entries]

    def rooms_of(self, conn: Connection) -> set[str]:
        return self.local.rooms_of(conn)

    def is_member(self, conn: Connection, room: str) -> bool:
        return self.local.is_member(conn, room)

    def broadcast(self, room: str, frame: bytes, exclude: Connection | None = None) -> int:
        """Deliver here, then queue the same frame for the other nodes (written to Redis
        with the other publishes of this moment, without waiting for the reply)."""
        delivered = self.local.broadcast(room, frame, exclude)
        try:
            self._publisher.publish(self._channel_prefix + room.encode(), self._header + frame)
        except BackplaneUnavailable:
            self._publishes_failed(1, f"a broadcast to {room!r} reached only this node")
            raise
        self.stats.published += 1
        return delivered

    # -- resumption: numbered broadcasts, history, attach --------------------------------

    def keep_history(self, size: int, ttl: float, encode: Encoder) -> None:
        self._history = (size, max(1, int(ttl)))  # frames come from Redis as bytes: our own encoding

    def _meta_key(self, room: str) -> str:
        return f"{self._prefix}:seq:{room}"

    def _stream_key(self, room: str) -> str:
        return f"{self._prefix}:history:{room}"

    def publish(self, room: str, prefix: str, exclude: Connection | None = None, excluded: str = "") -> int:
        """Numbered by Redis and delivered when Redis sends it back, here as on every node:
        so every member sees a room's messages in seq order. Returns 0 (nothing queued yet)."""
        assert self._history is not None, "keep_history() first"
        size, ttl = self._history
        self._epochs += 1
        header = b"%s%s%d:" % (_SEQUENCED, self._node_bytes, exclude.id if exclude is not None else 0)
        try:
            self._publisher.send(
                "EVAL",
                _PUBLISH_NUMBERED,
                2,
                self._meta_key(room),
                self._stream_key(room),
                f"{self.node}{self._epochs:x}",
                prefix,
                size,
                excluded,
                self._channel_prefix + room.encode(),
                header,
                ttl,
            )
        except BackplaneUnavailable:
            self._publishes_failed(
                1, f"a broadcast to {room!r} was not sent (numbered broadcasts need Redis)"
            )
            raise
        self.stats.published += 1
        return 0

    def position(self, room: str) -> tuple[int, str]:
        seq, epoch = self._pool.execute("HMGET", self._meta_key(room), "seq", "epoch")
        return int(seq or 0), (epoch or b"").decode()

    def attach(
        self,
        conn: Connection,
        rooms: dict[str, RoomMembership],
        after: dict[str, tuple[int, str]],
        key: str,
        previous: tuple[str, int] | None,
        old: Connection | None = None,
    ) -> Attached:
        """Subscribe (live messages held back meanwhile), write the presence, read the
        history; then, without yielding: the missed messages, the held ones not among
        them, and the membership. The presence keeps its place (scored by join time)."""
        if old is not None:
            self.forget(old)
        return self._attach(conn, rooms, after, key, previous)

    def _attach(
        self,
        conn: Connection,
        rooms: dict[str, RoomMembership],
        after: dict[str, tuple[int, str]] | None,
        key: str,
        previous: tuple[str, int] | None,
    ) -> Attached:
        """`after` None: a plain join (nothing replayed: the member starts at the room's
        position now). Messages that Redis sends us after the history was read, though
        they are in it, are dropped for `conn` by its floor (their seq)."""
        holds: dict[str, list[tuple[int, bytes]]] = {}
        for room in rooms:
            holds[room] = self._holding.setdefault(room, {})[conn] = []
        try:
            for room in rooms:
                self._subscribe(room)
            commands: list[tuple[Any, ...]] = []
            entries: dict[str, str] = {}
            for room, membership in rooms.items():
                shown = json.dumps(membership.presence, separators=(",", ":"))
                entries[room] = f"{self.node}:{conn.id}:{shown}"
                commands.append(("ZADD", self._presence_key(room), membership.joined_at, entries[room]))
                if previous is not None:
                    commands.append(
                        ("ZREM", self._presence_key(room), f"{previous[0]}:{previous[1]}:{shown}")
                    )
            if rooms:
                commands.append(("SADD", self._node_rooms_key, *rooms))
            first = len(commands)
            for room, membership in rooms.items():
                commands.append(("HMGET", self._meta_key(room), "seq", "epoch"))
                if after is not None:
                    seq, _ = after.get(room, (membership.seq, membership.epoch))
                    commands.append(("XRANGE", self._stream_key(room), f"{seq + 1}-0", "+"))
            replies = self._pool.run(commands)
        except BaseException:
            self._unhold(conn, rooms)
            for room in rooms:
                self._emptied(room)
            raise
        backlog: list[bytes] = []
        positions: dict[str, tuple[int, str]] = {}
        lost: set[str] = set()
        replayed = 0
        at = first
        for room, membership in rooms.items():
            meta = replies[at]
            now_seq, now_epoch = int(meta[0] or 0), (meta[1] or b"").decode()
            last = now_seq
            if after is not None:
                seq, epoch = after.get(room, (membership.seq, membership.epoch))
                missed = replay_after(_stream_entries(replies[at + 1]), seq, epoch, now_seq, now_epoch)
                if missed is None:
                    lost.add(room)
                else:
                    last = seq
                    for entry_seq, text, skip in missed:
                        if skip != key:
                            backlog.append(encode_broadcast(text, text=True))
                            replayed += 1
                        last = entry_seq
            at += 1 if after is None else 2
            positions[room] = (now_seq, now_epoch)
            for held_seq, frame in holds[room]:
                if held_seq > last:
                    backlog.append(frame)
                    last = held_seq
            self._floors.setdefault(room, {})[conn] = last
            self.local.join(conn, room, membership.presence)
            self._entries[(conn.id, room)] = (entries[room], membership.joined_at)
        self._unhold(conn, rooms)
        conn.send_backlog(backlog)
        return replayed, positions, lost

    def join_position(self, conn: Connection, room: str) -> tuple[int, str]:
        return self._join_positions.pop((conn.id, room), (0, ""))

    def _drop_floor(self, conn: Connection, room: str) -> None:
        floors = self._floors.get(room)
        if floors is not None:
            floors.pop(conn, None)
            if not floors:
                del self._floors[room]

    def _unhold(self, conn: Connection, rooms: Iterable[str]) -> None:
        for room in rooms:
            held = self._holding.get(room)
            if held is not None:
                held.pop(conn, None)
                if not held:
                    del self._holding[room]

    def _publishes_lost(self, count: int, error: BaseException) -> None:
        """The publisher's connection broke with `count` publishes unconfirmed."""
        log.warning("%r: Redis lost (%s) with %d broadcasts unconfirmed", self, error, count)
        self._publishes_failed(count, "")

    def _publish_refused(self, error: BaseException) -> None:
        """Redis answered a publish (or the numbering script) with an error: it went nowhere."""
        self._publishes_failed(1, f"Redis refused a broadcast: {error}")

    def _publishes_failed(self, count: int, what: str) -> None:
        self.stats.publish_failures += count
        now = time.monotonic()
        if what and now - self._last_failure_log >= 1.0:  # one line a second at most
            self._last_failure_log = now
            log.warning("%r: %s (%d publishes failed so far)", self, what, self.stats.publish_failures)

    # -- presence bookkeeping ------------------------------------------------------------

    def _presence_key(self, room: str) -> str:
        return f"{self._prefix}:presence:{room}"

    def _presence_removals(self, entries: Iterable[tuple[int, str]]) -> list[tuple[Any, ...]]:
        return [("ZREM", self._presence_key(room), self._entries[(cid, room)][0]) for cid, room in entries]

    def _write_removals(self, conn: Connection, rooms: Iterable[str]) -> None:
        """Take `conn` out of the presence of `rooms`; a failure is repaired by the resync."""
        keys = [(conn.id, room) for room in rooms if (conn.id, room) in self._entries]
        commands = self._presence_removals(keys)
        for key in keys:
            del self._entries[key]
        emptied = [room for room in rooms if room not in self.local.rooms]
        if emptied:
            commands.append(("SREM", self._node_rooms_key, *emptied))
        for room in emptied:
            self._emptied(room)
        if not commands:
            return
        try:
            self._pool.run(commands)
        except BackplaneUnavailable as exc:
            self._dirty = True
            log.debug("%r: presence removal postponed: %s", self, exc)

    def _resync(self) -> None:
        """Make Redis hold exactly our members' presence (after an outage or a Redis restart)."""
        stale = self._beats.execute("SMEMBERS", self._node_rooms_key)
        rooms = {room.decode() for room in stale} | set(self.local.rooms)
        mine = f"{self.node}:".encode()
        current = {entry.encode() for entry, _ in self._entries.values()}
        commands: list[tuple[Any, ...]] = []
        for room in rooms:
            key = self._presence_key(room)
            old = [e for e in self._beats.execute("ZRANGE", key, 0, -1) if e.startswith(mine)]
            gone = [e for e in old if e not in current]
            if gone:
                commands.append(("ZREM", key, *gone))
        for (_cid, room), (entry, joined_at) in self._entries.items():
            commands.append(("ZADD", self._presence_key(room), joined_at, entry))
        commands.append(("DEL", self._node_rooms_key))
        if self.local.rooms:
            commands.append(("SADD", self._node_rooms_key, *self.local.rooms))
        self._beats.run(commands)
        self._dirty = False

    # -- the subscriber ------------------------------------------------------------------

    def _subscribe(self, room: str) -> None:
        """Return once this node receives `room`'s channel (at once when it already does)."""
        self._lingering.pop(room, None)
        if room in self._subscribed:
            return
        if not self._connected.is_set():
            if self._known_down or not self._connected.wait(self.join_timeout):
                raise BackplaneUnavailable("Redis is unreachable")  # fail fast during an outage
            if room in self._subscribed:  # the subscriber, once up, took the local rooms
                return
        event = self._pending.get(room)
        if event is None:
            event = self._pending[room] = gevent.event.Event()
            self._wake.set()
        if not event.wait(self.join_timeout) or room not in self._subscribed:
            raise BackplaneUnavailable("Redis did not confirm the room's subscription")

    def _emptied(self, room: str) -> None:
        """No member of `room` is left here: unsubscribe after the linger."""
        if room not in self.local.rooms and (room in self._subscribed or room in self._subscribing):
            self._lingering[room] = time.monotonic() + self.linger
            self._wake.set()

    def _subscriber(self) -> None:
        delay = 0.0
        lost_at: float | None = None
        while not self._stopping.is_set():
            conn = GeventRedisConnection(**self._options)
            try:
                conn.connect()
                if lost_at is not None:
                    self.stats.reconnects += 1
                    log.warning("%r: Redis is back after %.1f s", self, time.monotonic() - lost_at)
                    lost_at = None
                delay = 0.0
                self._listen(conn)
            except REDIS_FAILURES as exc:
                if self._stopping.is_set():
                    break
                self._known_down = True
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("%r: Redis lost (%s); reconnecting", self, exc)
                else:
                    log.debug("%r: Redis still down: %s", self, exc)
            finally:
                self._connected.clear()
                self._subscribed.clear()
                self._subscribing.clear()
                for event in self._pending.values():
                    event.set()  # the joins waiting on it fail rather than wait out their timeout
                self._pending.clear()
                conn.disconnect()
            delay = min(5.0, max(0.05, delay * 2))
            self._stopping.wait(delay * random.uniform(0.5, 1.5))

    def _listen(self, conn: GeventRedisConnection) -> None:
        """Keep the subscriptions as the members want them, and deliver what comes."""
        sock: Any = conn._sock
        watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
        watcher.start(self._wake.set)  # readable: wake up (level-triggered; we drain)
        self._known_down = False
        self._connected.set()
        self._dirty = True  # the heartbeat writes our presence again
        ping_sent: float | None = None
        last_heard = time.monotonic()
        try:
            self._wake.set()
            while not self._stopping.is_set():
                self._wake.wait(self._next_timeout(last_heard))
                self._wake.clear()
                self._sync_subscriptions(conn)
                while conn.can_read(timeout=0):
                    self._on_reply(conn.read_response())
                    last_heard = time.monotonic()
                    ping_sent = None
                now = time.monotonic()
                if ping_sent is not None and now - ping_sent > self.ping_interval:
                    raise redis.TimeoutError("no answer to PING")
                if ping_sent is None and now - last_heard >= self.ping_interval:
                    conn.send_command("PING")
                    ping_sent = now
        finally:
            watcher.stop()

    def _next_timeout(self, last_heard: float) -> float:
        now = time.monotonic()
        timeout = max(0.05, last_heard + self.ping_interval - now)
        if self._lingering:
            timeout = min(timeout, max(0.0, min(self._lingering.values()) - now))
        return timeout

    def _sync_subscriptions(self, conn: GeventRedisConnection) -> None:
        now = time.monotonic()
        for room, deadline in list(self._lingering.items()):
            if room in self.local.rooms or room in self._pending:
                del self._lingering[room]  # a member is back
            elif deadline <= now:
                del self._lingering[room]
        wanted = set(self.local.rooms) | set(self._lingering) | set(self._pending) | set(self._holding)
        new = wanted - self._subscribed - self._subscribing
        old = self._subscribed - wanted
        if new:
            log.debug("%r: SUBSCRIBE %s", self, sorted(new))
            conn.send_command("SUBSCRIBE", *(self._channel_prefix + room.encode() for room in new))
            self._subscribing |= new
            self.stats.subscribes += len(new)
        if old:
            conn.send_command("UNSUBSCRIBE", *(self._channel_prefix + room.encode() for room in old))
            self._subscribed -= old
            self.stats.unsubscribes += len(old)

    def _on_reply(self, reply: Any) -> None:
        kind = reply[0]
        if kind == b"message":
            self._deliver(reply[1], reply[2])
        elif kind == b"subscribe":
            log.debug("%r: subscribed %r", self, reply[1])
            room = reply[1][len(self._channel_prefix) :].decode()
            self._subscribing.discard(room)
            self._subscribed.add(room)
            event = self._pending.pop(room, None)
            if event is not None:
                event.set()

    def _deliver(self, channel: bytes, data: bytes) -> None:
        if data[:1] == _SEQUENCED:
            self._deliver_numbered(channel, data)
            return
        if data[:_HEADER] == self._header:
            self.stats.own += 1
            return
        self.stats.received += 1
        room = channel[len(self._channel_prefix) :].decode()
        if room not in self.local.rooms:
            self.stats.foreign += 1
            return
        if data[:1] == _FRAME:
            self.stats.delivered += self.local.broadcast(room, data[_HEADER:])

    def _deliver_numbered(self, channel: bytes, data: bytes) -> None:
        """`S<node><excluded conn id>:<seq> <text>`: every node's, our own included."""
        mine = data[1:_HEADER] == self._node_bytes
        if mine:
            self.stats.own += 1
        else:
            self.stats.received += 1
        room = channel[len(self._channel_prefix) :].decode()
        holds = self._holding.get(room)
        if room not in self.local.rooms and holds is None:
            self.stats.foreign += 1
            return
        colon = data.index(b":", _HEADER)
        space = data.index(b" ", colon)
        seq = int(data[colon + 1 : space])
        frame = encode_broadcast(data[space + 1 :], text=True)
        skip: set[Connection] = set()
        excluded_id = int(data[_HEADER:colon])
        if mine and excluded_id:
            skip.update(c for c in self.local.rooms.get(room, ()) if c.id == excluded_id)
        floors = self._floors.get(room)
        if floors:
            skip.update(c for c, floor in floors.items() if floor >= seq)
            for conn in [c for c, floor in floors.items() if floor < seq]:
                del floors[conn]  # in seq order from here on
            if not floors:
                del self._floors[room]
        self.stats.delivered += self.local.broadcast_skipping(room, frame, skip)
        if holds is not None:
            for held in holds.values():
                held.append((seq, frame))

    # -- liveness ------------------------------------------------------------------------

    def _heartbeats(self) -> None:
        while not self._stopping.is_set():
            try:
                self._beat()
            except BackplaneUnavailable as exc:
                log.debug("%r: heartbeat failed: %s", self, exc)
            self._stopping.wait(self.heartbeat)

    def _beat(self) -> None:
        now = time.time()
        added, dead = self._beats.run(
            [
                ("ZADD", self._nodes_key, now, self.node),
                ("ZRANGEBYSCORE", self._nodes_key, "-inf", now - self.node_timeout),
            ]
        )
        if added or self._dirty:  # new to Redis (it restarted, or we were taken for dead)
            self._resync()
        for node in dead:
            if node.decode() != self.node:
                self._reap(node.decode())
        if self._history is not None:
            self._end_graces(now)

    def _report_left(self, room: str, presence: Any) -> None:
        """The app's `on_member_lost` message for a member gone with no connection to close."""
        out = self._lost(room, presence) if self._lost is not None else None
        if out is None:
            return
        if self._history is not None:
            self.publish(room, out)  # the app gave a stamp prefix (resumption on)
        else:
            self.broadcast(room, encode_broadcast(out))

    def _end_graces(self, now: float) -> None:
        """Graces over for a while that nobody ended (their node drained, or died): the one
        node whose ZREM counts removes the member's presence and reports it as left."""
        graces = self.sessions.graces_key
        due = self._beats.execute("ZRANGEBYSCORE", graces, "-inf", now - _GRACE_SLACK, "LIMIT", 0, 100)
        for token in due:
            if not self._beats.execute("ZREM", graces, token):
                continue  # resumed, or ended by another node meanwhile
            data = self._beats.execute("GET", self.sessions.key(token.decode()))
            if data is None:
                continue
            record = SessionRecord.loads(data)
            for room, membership in record.rooms.items():
                shown = json.dumps(membership.presence, separators=(",", ":"))
                self._beats.execute(
                    "ZREM", self._presence_key(room), f"{record.node}:{record.conn_id}:{shown}"
                )
                self._report_left(room, membership.presence)
            self.stats.graces_ended += 1

    def _reap(self, node: str) -> None:
        """Report the members of a dead node as left; only the node whose ZREM counts does."""
        if not self._beats.execute("ZREM", self._nodes_key, node):
            return
        rooms_key = f"{self._prefix}:node:{node}:rooms"
        prefix = f"{node}:".encode()
        lost = 0
        for raw_room in self._beats.execute("SMEMBERS", rooms_key):
            room = raw_room.decode()
            key = self._presence_key(room)
            entries = [e for e in self._beats.execute("ZRANGE", key, 0, -1) if e.startswith(prefix)]
            if not entries:
                continue
            self._beats.execute("ZREM", key, *entries)
            for entry in entries:
                lost += 1
                self._report_left(room, json.loads(entry.split(b":", 2)[2]))
        self._beats.execute("DEL", rooms_key)
        self.stats.lost_members += lost
        log.warning("%r: node %s stopped beating: %d of its members reported as left", self, node, lost)



def _stream_entries(stream: list[Any]) -> Iterator[tuple[int, str, str]]:
    """A room stream's XRANGE reply as kept broadcasts: (seq, text, excluded session key)."""
    for entry_id, fields in stream:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        yield int(entry_id.split(b"-", 1)[0]), values[b"m"].decode(), values[b"x"].decode()
