"""Presence and node liveness in Redis: who is in a room, which nodes live.

- Presence: a sorted set per room, `<key_prefix>:presence:<room>` (on a cluster the room's
  name carries its hash tag: scale/redis_keys.py), of `PresenceEntry`s
  (`node:connection:presence JSON`) scored by join time: a room's presence is the union
  over nodes, in join order. Every write of it also goes out on the room's channel as a
  diff (`P+<writer> <score> <entry>`, `P-<writer> <entry>`), so a node with members in a
  room keeps the room's presence itself (`PresenceCache`: read once when it subscribes,
  then changed by the diffs): a join costs no read of the whole set.
- Liveness: every node writes its heartbeat into `<key_prefix>:nodes` (a sorted set scored by
  time) every `heartbeat` seconds, on a connection of its own with a short timeout, and
  lists its rooms in `<key_prefix>:node:<id>:rooms`. A node silent for `node_timeout` seconds
  is dead: the first survivor to remove it (ZREM answers 1 to one node only) removes its
  presence and reports each of its members as left, exactly once.
- A Redis that lost its data (restarted without persistence, flushed) shows to every node
  at its next beat, whether or not it saw an error: its own heartbeat entry is gone, or
  Redis's run id changed (on a cluster: any master's). The node then writes its heartbeat
  and its members' presence again, and tells its owner (`on_reset`: the sessions are
  written again too).
- `healthy` is False once a beat failed or none succeeded for 2.5 heartbeats: readiness
  reports a paused or lost Redis within about three seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event

from ..errors import BackplaneUnavailable
from ..typed.sessions import SessionRecord
from .redis_io import Commands, run_ids_of
from .redis_keys import Keyspace

__all__ = ["PRESENCE", "NodeLiveness", "PresenceCache", "PresenceEntry", "PresenceWrites"]

PRESENCE = b"P"  # the kind of a Redis message that carries a presence diff

log = logging.getLogger("websock_actors")

# Seconds past a grace's end before any node (not only the member's own) ends it.
_GRACE_SLACK = 2.0


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One member in a room's presence set: where it lives and what it shows."""

    node: str
    conn_id: int
    presence: Any

    def encode(self) -> str:
        return f"{self.node}:{self.conn_id}:{json.dumps(self.presence, separators=(',', ':'))}"

    @classmethod
    def decode(cls, entry: bytes) -> PresenceEntry:
        node, conn_id, shown = entry.split(b":", 2)
        return cls(node.decode(), int(conn_id), json.loads(shown))


class PresenceWrites:
    """The commands that change a room's presence, each with its diff for the other nodes."""

    def __init__(self, keys: Keyspace, node: str) -> None:
        self._keys = keys
        self._writer = node.encode()

    def key(self, room: str) -> str:
        return self._keys.presence(room)

    def added(self, room: str, score: float, entry: str) -> list[tuple[Any, ...]]:
        diff = b"P+%s %r %s" % (self._writer, score, entry.encode())
        return [("ZADD", self.key(room), score, entry), (self._keys.publish, self._keys.channel(room), diff)]

    def removed(self, room: str, entries: list[Any]) -> list[tuple[Any, ...]]:
        if not entries:
            return []
        commands: list[tuple[Any, ...]] = [("ZREM", self.key(room), *entries)]
        channel = self._keys.channel(room)
        for entry in entries:
            raw = entry if isinstance(entry, bytes) else entry.encode()
            commands.append((self._keys.publish, channel, b"P-%s %s" % (self._writer, raw)))
        return commands


class PresenceCache:
    """The presence of the rooms this node has members in, kept by the diffs on their channels.
    Each entry is decoded once, when it arrives: a join lists the room without a read of
    Redis and without decoding every member again."""

    def __init__(self, node: str) -> None:
        self._node = node.encode()
        self.rooms: dict[str, dict[bytes, tuple[float, Any]]] = {}  # entry -> (score, presence)

    def load(self, room: str, scored: list[Any]) -> None:
        """The set as ZRANGE WITHSCORES read it, right after the room's subscription."""
        self.rooms[room] = {
            scored[i]: (float(scored[i + 1]), PresenceEntry.decode(scored[i]).presence)
            for i in range(0, len(scored), 2)
        }

    def drop(self, room: str) -> None:
        self.rooms.pop(room, None)

    def added(self, room: str, score: float, entry: str) -> None:
        """Our own write, at once (its diff, when it comes back, is skipped)."""
        members = self.rooms.get(room)
        if members is not None:
            raw = entry.encode()
            members[raw] = (score, PresenceEntry.decode(raw).presence)

    def removed(self, room: str, entries: list[Any]) -> None:
        members = self.rooms.get(room)
        if members is not None:
            for entry in entries:
                members.pop(entry if isinstance(entry, bytes) else entry.encode(), None)

    def apply(self, room: str, diff: bytes) -> None:
        """`P+<writer> <score> <entry>` or `P-<writer> <entry>` from another node."""
        members = self.rooms.get(room)
        if members is None:
            return
        writer, _, rest = diff[2:].partition(b" ")
        if writer == self._node:
            return
        if diff[1:2] == b"+":
            score, _, entry = rest.partition(b" ")
            members[entry] = (float(score), PresenceEntry.decode(entry).presence)
        else:
            members.pop(rest, None)

    def presence(self, room: str) -> list[Any] | None:
        """In join order; None when this node does not keep the room's presence."""
        members = self.rooms.get(room)
        if members is None:
            return None
        ordered = sorted(members.items(), key=lambda item: (item[1][0], item[0]))
        return [shown for _, (_, shown) in ordered]


class NodeLiveness:
    """The heartbeat greenlet of one node: liveness, resync after a reset, reaping, graces."""

    def __init__(
        self,
        beats: Commands,
        key_prefix: str,
        node: str,
        *,
        writes: PresenceWrites,
        cache: PresenceCache,
        entries: Callable[[], dict[tuple[int, str], tuple[str, float]]],
        local_rooms: Callable[[], set[str]],
        report_left: Callable[[str, Any], None],
        on_reset: Callable[[], None],
        heartbeat: float = 1.0,
        node_timeout: float = 10.0,
    ) -> None:
        self._beats = beats
        self._writes = writes
        self._cache = cache
        self._key_prefix = key_prefix
        self.node = node
        self._entries = entries  # (connection id, room) -> (presence entry, join time)
        self._local_rooms = local_rooms
        self._report_left = report_left
        self._on_reset = on_reset
        self.heartbeat = heartbeat
        self.node_timeout = node_timeout
        self.nodes_key = f"{key_prefix}:nodes"
        self.rooms_key = f"{key_prefix}:node:{node}:rooms"
        self.graces_key = f"{key_prefix}:graces"
        self.dirty = True  # presence must be written again (at start, after an outage)
        self._run_id = b""
        self._last_beat = 0.0  # monotonic time of the last successful beat
        self._stopping = gevent.event.Event()
        self._greenlet: gevent.Greenlet[Any, Any] | None = None
        self.resets = 0  # times Redis was found to have lost its data
        self.lost_members = 0
        self.graces_ended = 0

    @property
    def healthy(self) -> bool:
        return time.monotonic() - self._last_beat < 2.5 * self.heartbeat

    def presence_key(self, room: str) -> str:
        return self._writes.key(room)

    def start(self) -> None:
        self._stopping.clear()
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._stopping.set()
        if self._greenlet is not None:
            self._greenlet.join(5.0)
            self._greenlet = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._beat()
            except BackplaneUnavailable as exc:  # a lost Redis shows at the next beat that works
                log.debug("node %s: heartbeat failed: %s", self.node, exc)
            except Exception:  # the heartbeat must outlive any surprise: liveness rests on it
                self.dirty = True
                log.exception("node %s: heartbeat failed", self.node)
            self._stopping.wait(self.heartbeat)

    def _beat(self) -> None:
        now = time.time()
        added, dead, info = self._beats.run(
            [
                ("ZADD", self.nodes_key, now, self.node),
                ("ZRANGEBYSCORE", self.nodes_key, "-inf", now - self.node_timeout),
                ("INFO", "server"),
            ]
        )
        run_id = _run_id(info)
        reset = bool(self._run_id) and run_id != self._run_id
        if added and not self.dirty:
            reset = True  # our entry was gone: Redis lost it, or reaped us for dead
        self._run_id = run_id
        self._last_beat = time.monotonic()
        if reset:
            self.resets += 1
            log.warning("node %s: Redis lost its data (run id %s): writing presence and sessions again",
                        self.node, run_id.decode())  # fmt: skip
        if reset or self.dirty:
            self.resync()
        if reset:
            self._on_reset()
        for node in dead:
            if node.decode() != self.node:
                self._reap(node.decode())
        self._end_graces(now)

    def resync(self) -> None:
        """Make Redis hold exactly our members' presence (after an outage or a Redis restart)."""
        stale = self._beats.execute("SMEMBERS", self.rooms_key)
        local = self._local_rooms()
        rooms = {room.decode() for room in stale} | local
        mine = f"{self.node}:".encode()
        current = {entry.encode() for entry, _ in self._entries().values()}
        commands: list[tuple[Any, ...]] = []
        for room in rooms:
            key = self.presence_key(room)
            old = [e for e in self._beats.execute("ZRANGE", key, 0, -1) if e.startswith(mine)]
            gone = [e for e in old if e not in current]
            commands.extend(self._writes.removed(room, gone))
            self._cache.removed(room, gone)
        for (_cid, room), (entry, joined_at) in self._entries().items():
            commands.extend(self._writes.added(room, joined_at, entry))
            self._cache.added(room, joined_at, entry)
        commands.append(("DEL", self.rooms_key))
        if local:
            commands.append(("SADD", self.rooms_key, *local))
        self._beats.run(commands)
        self.dirty = False

    def _end_graces(self, now: float) -> None:
        """Graces over for a while that nobody ended (their node drained, or died): the one
        node whose ZREM counts removes the member's presence and reports it as left."""
        due = self._beats.execute(
            "ZRANGEBYSCORE", self.graces_key, "-inf", now - _GRACE_SLACK, "LIMIT", 0, 100
        )
        for token in due:
            if not self._beats.execute("ZREM", self.graces_key, token):
                continue  # resumed, or ended by another node meanwhile
            data = self._beats.execute("GET", f"{self._key_prefix}:session:{token.decode()}")
            if data is None:
                continue
            record = SessionRecord.loads(data)
            for room, membership in record.rooms.items():
                entry = PresenceEntry(record.node, record.conn_id, membership.presence).encode()
                self._beats.run(self._writes.removed(room, [entry]))
                self._cache.removed(room, [entry])
                self._report_left(room, membership.presence)
            self.graces_ended += 1

    def _reap(self, node: str) -> None:
        """Report the members of a dead node as left; only the node whose ZREM counts does."""
        if not self._beats.execute("ZREM", self.nodes_key, node):
            return
        rooms_key = f"{self._key_prefix}:node:{node}:rooms"
        entry_head = f"{node}:".encode()
        lost = 0
        for raw_room in self._beats.execute("SMEMBERS", rooms_key):
            room = raw_room.decode()
            key = self.presence_key(room)
            entries = [e for e in self._beats.execute("ZRANGE", key, 0, -1) if e.startswith(entry_head)]
            if not entries:
                continue
            self._beats.run(self._writes.removed(room, entries))
            self._cache.removed(room, entries)
            for entry in entries:
                lost += 1
                self._report_left(room, PresenceEntry.decode(entry).presence)
        self._beats.execute("DEL", rooms_key)
        self.lost_members += lost
        log.warning(
            "node %s: node %s stopped beating: %d of its members reported as left", self.node, node, lost
        )


def _run_id(info: Any) -> bytes:
    """The run_id in INFO server; on a cluster, every master's (sorted, comma-joined)."""
    return ",".join(sorted(run_ids_of(info))).encode()
