"""The subscriber connection of a node: one greenlet receives every room channel it needs.

redis-py connections are not greenlet-safe, so one greenlet owns the subscriber connection:
it subscribes and unsubscribes for the others (`want`, `release`), reconnects with jittered
backoff, subscribes again, and hands what arrives to its owner's callbacks, in the order
Redis sent it. A room stays subscribed `linger` seconds after its last member left, so a
member coming back costs no SUBSCRIBE. The node's own channel (`control`) carries what
other nodes ask of it. `on_subscribed(room)` runs in this greenlet before any
message of that subscription is handed on, so the owner can catch the room up first.
It is stopped with a flag and by closing its connection, never by killing it in redis-py.

On a Redis Cluster (`sharded`) it is one master's subscriber (scale/redis_cluster_subscriber.py
keeps one per master): rooms are subscribed with SSUBSCRIBE, one command per slot, under their
tagged names (scale/redis_keys.py). A subscription the master refuses with MOVED, or ends
itself (its slot migrated), is dropped here and the map is told: the room is then wanted by the
new owner's subscriber, whose `on_subscribed` catches it up. The control channel stays a classic
one (any node of a cluster hears a classic PUBLISH), given to one of the masters' subscribers.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import redis
from redis.crc import key_slot

from ..errors import BackplaneUnavailable
from .redis_cluster import ClusterMap, redirection
from .redis_io import MAX_BACKOFF, REDIS_FAILURES, Connect, GeventRedisConnection, error_text

__all__ = ["Sharded", "Subscriber"]

log = logging.getLogger("websock_actors")


@dataclass(frozen=True)
class Sharded:
    """What a cluster master's subscriber does differently (see the module's docstring)."""

    name: Callable[[str], str]  # a room's name in its channel (Keyspace.name)
    unnamed: Callable[[str], str]
    cluster: ClusterMap  # told of a MOVED reply and of a slot given away


class Subscriber:
    """Room channels `<channel_prefix><room>` kept subscribed as the members want them."""

    def __init__(
        self,
        connect: Connect,
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
        max_backoff: float = MAX_BACKOFF,
        sharded: Sharded | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._sharded = sharded
        self._on_lost = on_lost  # the connection failed (a cluster reads its map again)
        self._verbs = ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        self.max_backoff = max_backoff  # the longest pause between reconnects
        self._channel_prefix = channel_prefix
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self._on_unsubscribed = on_unsubscribed
        self._rooms_wanted = rooms_wanted  # the rooms with members here
        self.control = control  # this node's own channel: requests of other nodes
        self._control_on = b""  # the control channel subscribed on this connection
        self._on_control = on_control
        self.linger = linger
        self.join_timeout = join_timeout
        self.ping_interval = ping_interval
        self.subscribed: set[str] = set()
        self._subscribing: set[str] = set()
        self._pending: dict[str, gevent.event.Event] = {}
        self._lingering: dict[str, float] = {}  # room -> when to unsubscribe (monotonic)
        self._wake = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self.connected = gevent.event.Event()  # set while the connection is up
        self._known_down = False  # a connection attempt failed since the last success
        self._greenlet: gevent.Greenlet[Any, Any] | None = None
        self.subscribes = 0
        self.unsubscribes = 0
        self.reconnects = 0

    def start(self) -> None:
        self._stopping.clear()
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._greenlet is not None:
            self._greenlet.join(5.0)
            self._greenlet = None

    def want(self, room: str) -> None:
        """Return once this node receives `room`'s channel (at once when it already does)."""
        self._lingering.pop(room, None)
        if room in self.subscribed:
            return
        if not self.connected.is_set():
            if self._known_down or not self.connected.wait(self.join_timeout):
                raise BackplaneUnavailable("Redis is unreachable")  # fail fast during an outage
            if room in self.subscribed:  # the subscriber, once up, took the local rooms
                return
        event = self._pending.get(room)
        if event is None:
            event = self._pending[room] = gevent.event.Event()
            self._wake.set()
        if not event.wait(self.join_timeout) or room not in self.subscribed:
            raise BackplaneUnavailable("Redis did not confirm the room's subscription")

    def resync(self) -> None:
        """Compare the subscriptions with the rooms wanted now (the wanted set changed)."""
        self._wake.set()

    def release(self, room: str) -> None:
        """No member of `room` is left here: unsubscribe after the linger."""
        if room in self.subscribed or room in self._subscribing:
            self._lingering[room] = time.monotonic() + self.linger
            self._wake.set()

    def _run(self) -> None:
        delay = 0.0
        lost_at: float | None = None
        while not self._stopping.is_set():
            conn = self._connect()
            try:
                conn.connect()
                if lost_at is not None:
                    self.reconnects += 1
                    log.warning("Redis subscriber is back after %.1f s", time.monotonic() - lost_at)
                    lost_at = None
                delay = 0.0
                self._listen(conn)
            except REDIS_FAILURES as exc:
                if self._stopping.is_set():
                    break
                self._known_down = True
                if self._on_lost is not None:
                    self._on_lost()
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("Redis subscriber lost (%s); reconnecting", error_text(exc))
                else:
                    log.debug("Redis still down: %s", error_text(exc))
            finally:
                self.connected.clear()
                self.subscribed.clear()
                self._subscribing.clear()
                for event in self._pending.values():
                    event.set()  # the joins waiting on it fail rather than wait out their timeout
                self._pending.clear()
                conn.disconnect()
            delay = min(self.max_backoff, max(0.05, delay * 2))
            self._stopping.wait(delay * random.uniform(0.5, 1.5))

    def _listen(self, conn: GeventRedisConnection) -> None:
        """Keep the subscriptions as the members want them, and hand on what comes."""
        sock: Any = conn._sock
        watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
        watcher.start(self._wake.set)  # readable: wake up (level-triggered; we drain)
        self._known_down = False
        self._control_on = b""
        self.connected.set()
        ping_sent: float | None = None
        last_heard = time.monotonic()
        try:
            self._wake.set()
            while not self._stopping.is_set():
                self._wake.wait(self._next_timeout(last_heard))
                self._wake.clear()
                self._sync(conn)
                while conn.can_read(timeout=0):
                    try:
                        self._on_reply(conn.read_response())
                    except redis.ResponseError as exc:  # a refused (S)SUBSCRIBE: the connection is fine
                        self._refused(exc)
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

    def _sync(self, conn: GeventRedisConnection) -> None:
        now = time.monotonic()
        local = self._rooms_wanted()
        for room, deadline in list(self._lingering.items()):
            if room in local or room in self._pending:
                del self._lingering[room]  # a member is back
            elif deadline <= now:
                del self._lingering[room]
        wanted = set(local) | set(self._lingering) | set(self._pending)
        new = wanted - self.subscribed - self._subscribing
        old = self.subscribed - wanted
        if self.control != self._control_on:  # on a cluster it may move to another master
            if self._control_on:
                conn.send_command("UNSUBSCRIBE", self._control_on)
            if self.control:
                conn.send_command("SUBSCRIBE", self.control)
            self._control_on = self.control
        if new:
            for channels in self._by_slot(new):
                conn.send_command(self._verbs[0], *channels)
            self._subscribing |= new
            self.subscribes += len(new)
        if old:
            for channels in self._by_slot(old):
                conn.send_command(self._verbs[1], *channels)
            self.subscribed -= old
            self.unsubscribes += len(old)
            for room in old:
                self._on_unsubscribed(room)

    def _channel(self, room: str) -> bytes:
        if self._sharded is None:
            return self._channel_prefix + room.encode()
        return self._channel_prefix + self._sharded.name(room).encode()

    def _room(self, channel: bytes) -> str:
        name = channel[len(self._channel_prefix) :].decode()
        return name if self._sharded is None else self._sharded.unnamed(name)

    def _by_slot(self, rooms: Iterable[str]) -> list[list[bytes]]:
        """The rooms' channels, one list per command: all in one, or one per slot (sharded)."""
        channels = [self._channel(room) for room in rooms]
        if self._sharded is None:
            return [channels]
        slots: dict[int, list[bytes]] = {}
        for channel in channels:
            slots.setdefault(key_slot(channel), []).append(channel)
        return list(slots.values())

    def _refused(self, error: redis.ResponseError) -> None:
        """A subscription refused: MOVED on a cluster (the slot has another master now)."""
        redirected = redirection(error)
        if self._sharded is None or redirected is None or redirected[0] != "MOVED":
            log.warning("Redis refused a subscription: %s", error_text(error))
            return
        _, slot, address = redirected
        for room in [room for room in self._subscribing if key_slot(self._channel(room)) == slot]:
            self._subscribing.discard(room)
            event = self._pending.pop(room, None)
            if event is not None:
                event.set()  # its want() fails now, and is tried on the new owner
        if address is not None:
            self._sharded.cluster.moved(slot, address)

    def _on_reply(self, reply: Any) -> None:
        kind = reply[0]
        if kind == b"message" and reply[1] == self._control_on:
            if self._on_control is not None:
                self._on_control(reply[2])
        elif kind == b"message" or kind == b"smessage":
            self._on_message(self._room(reply[1]), reply[2])
        elif kind == b"sunsubscribe":
            room = self._room(reply[1])
            if room in self.subscribed:  # not asked for: the master gave the slot away
                self.subscribed.discard(room)
                assert self._sharded is not None
                self._sharded.cluster.stale()
                self._wake.set()
        elif (kind == b"subscribe" and reply[1] != self._control_on) or kind == b"ssubscribe":
            room = self._room(reply[1])
            self._subscribing.discard(room)
            try:
                self._on_subscribed(room)
            finally:
                self.subscribed.add(room)
                event = self._pending.pop(room, None)
                if event is not None:  # a join waits: kept while it ends (or for the linger)
                    self._lingering[room] = time.monotonic() + self.linger
                    event.set()
