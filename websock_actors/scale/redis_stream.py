"""Numbered broadcasts in Redis: `RedisStream`, the `RoomStream` of a RedisBackplane.

A room's numbered broadcasts live in two keys: `<key_prefix>:seq:<room>` (a hash: the last seq
and the epoch) and `<key_prefix>:history:<room>` (a stream of the kept broadcasts, entry id
`<seq>-0`). One script numbers a broadcast, keeps it and publishes it on the room's channel,
so every node receives a room's messages in seq order. `append` does not wait: it returns a
result that is set once the script ran, and the sender's reply waits for it (an
acknowledged broadcast is in the stream) without holding up the sender's next messages. A
room without history (never used, expired, or lost with a Redis restart) starts a new
epoch. The script goes by its SHA-1 (EVALSHA) once Redis has it.

The keys expire `retention` seconds after the room's last member anywhere left (a node
whose last member leaves sets the expiry when the room's presence is empty); while the
room has members they do not expire. At most `retained` rooms without members keep their
history: `<key_prefix>:retained` lists them by when they emptied, and the oldest are dropped.
The pub/sub message is `S<origin> <seq>:<epoch> <text>`; the subscriber hands it to `deliver`.
On a cluster the keys carry the room's hash tag and the cap applies per partition
(scale/redis_keys.py); the script publishes with SPUBLISH.
"""

from __future__ import annotations

import time
from typing import Any

import gevent.event

from ..errors import BackplaneUnavailable
from ..typed.streams import Kept, Pending, Position, StreamRead, StreamSink
from .redis_io import Commands, Publishes
from .redis_keys import Keyspace
from .redis_wire import APPEND, APPEND_SHA, NUMBERED, READ, VACATED, append_args

__all__ = ["NUMBERED", "RedisStream"]

_RUN = 4 + 11  # where the run_id is in APPEND's arguments (after its 4 KEYS)

class RedisStream:
    """See the module's docstring."""

    inline = False

    def __init__(
        self,
        pool: Commands,
        publisher: Publishes,
        keys: Keyspace,
        node: str,
        stats: Any,
        *,
        size: int,
        retention: float,
        retained: int,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._keys = keys
        self._node = node
        self._stats = stats  # the backplane's: published, publish_failures
        self.size = size
        self.retention = max(1, int(retention))
        self.retained = retained
        self._epochs = 0  # fresh epochs offered to the script
        self._loaded = False  # Redis has the append script: EVALSHA, not the whole text
        self.dropped = 0  # history keys dropped by this node's scripts: over the cap
        self.sink: StreamSink | None = None

    def open(self, sink: StreamSink) -> None:
        self.sink = sink


    def _fresh_epoch(self) -> str:
        self._epochs += 1
        return f"{self._node}{self._epochs:x}"

    def append(self, room: str, head: str, skip: str, origin: str) -> Pending:
        """Send the script (by its SHA once Redis knows it); the result is set when it ran."""
        keys, publisher = self._keys, self._publisher
        args = (
            *keys.stream(room),
            # The process this goes to: the script checks the epoch was begun there.
            *append_args(keys.prefix, keys.name(room), self._fresh_epoch(), head, self.size, skip, origin,
                         self.retention, keys.retained(self.retained), publisher.server_id, keys.publish,
                         publisher.masters),
        )  # fmt: skip
        try:
            if self._loaded:
                sent = self._publisher.submit("EVALSHA", APPEND_SHA, 4, *args)
            else:
                sent = self._publisher.submit("EVAL", APPEND, 4, *args)
        except BackplaneUnavailable:
            self._stats.publish_failures += 1
            raise
        kept: Pending = gevent.event.AsyncResult()
        sent.rawlink(lambda result: self._answered(result, kept, args))
        return kept

    def _answered(self, result: Any, kept: Pending, args: tuple[Any, ...]) -> None:
        """The script's reply: kept, or sent once more in full when Redis lost the script."""
        if result.successful():
            self._loaded = True
            self._stats.published += 1
            seq, dropped, epoch = result.value[:3]
            self.dropped += int(dropped) // 2  # two keys a room
            kept.set((seq, epoch))  # where it was kept: for a publisher that asks (the server API)
            return
        error = result.exception
        if "NOSCRIPT" in str(error) or "No matching script" in str(error):  # a restarted Redis
            self._loaded = False
            try:
                args = (*args[:_RUN], self._publisher.server_id, *args[_RUN + 1 :])  # a new process
                self._publisher.submit("EVAL", APPEND, 4, *args).rawlink(
                    lambda again: self._answered(again, kept, args)
                )
                return
            except BackplaneUnavailable as exc:
                error = exc
        self._stats.publish_failures += 1
        kept.set_exception(error)

    def read(self, room: str, after: int, count: int) -> StreamRead:
        """What the stream keeps after `after`, and where the room is (an epoch of another
        Redis process ends here: redis_wire.py READ)."""
        seq_key, history_key, _, _ = self._keys.stream(room)
        seq, epoch, stream = self._pool.execute(
            "EVAL", READ, 2, seq_key, history_key, self._fresh_epoch(), f"{after + 1}-0", max(1, count),
            self._publisher.masters,
        )  # fmt: skip
        now = Position(int(seq or 0), (epoch or b"").decode())
        return StreamRead([_kept(entry) for entry in stream], now)

    def position(self, room: str) -> Position:
        seq_key, history_key, _, _ = self._keys.stream(room)
        fresh, masters = self._fresh_epoch(), self._publisher.masters
        seq, epoch, _ = self._pool.execute("EVAL", READ, 2, seq_key, history_key, fresh, "0-0", 0, masters)
        return Position(int(seq or 0), (epoch or b"").decode())

    def occupied(self, room: str) -> None:
        """Kept while the room has members (the expiry is set again when it empties)."""
        meta, stream, retained, _ = self._keys.stream(room)
        name = self._keys.name(room)
        try:
            self._pool.run([("PERSIST", meta), ("PERSIST", stream), ("ZREM", retained, name)])
        except BackplaneUnavailable:
            pass  # the keys expire later: a lost history is reported, never silent

    def vacated(self, room: str) -> None:
        try:
            keys = self._keys
            dropped = self._pool.execute(
                "EVAL", VACATED, 4, *keys.stream(room), self.retention, keys.name(room), time.time(),
                keys.retained(self.retained), f"{keys.prefix}:",
            )  # fmt: skip
            self.dropped += int(dropped) // 2
        except BackplaneUnavailable:
            pass  # the keys keep no expiry until the next vacate: bounded by the cap

    def expire(self) -> None:
        """Redis expires the keys itself."""

    def on_message(self, room: str, data: bytes) -> None:
        """`S<origin> <seq>:<epoch> <text>` from the room's channel."""
        head = data.index(b" ")
        space = data.index(b" ", head + 1)
        seq, _, epoch = data[head + 1 : space].partition(b":")
        assert self.sink is not None
        self.sink.deliver(
            room, Position(int(seq), epoch.decode()), data[space + 1 :].decode(), data[1:head].decode()
        )


def _kept(entry: Any) -> Kept:
    entry_id, fields = entry
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    origin = values.get(b"o", b"").decode()
    return Kept(int(entry_id.split(b"-", 1)[0]), values[b"m"].decode(), values[b"x"].decode(), origin)
