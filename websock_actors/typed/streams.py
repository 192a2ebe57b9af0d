"""The parts numbered broadcasting is made of: positions, kept broadcasts, the stream.

`RoomStream` is where a room's broadcasts are numbered, kept and carried to every node: in
process (typed/history.py's `LocalStream`) or in Redis (scale/redis_stream.py). What it
delivers goes to a `StreamSink`, typed/numbered.py's `NumberedBroadcasts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Kept", "Pending", "Position", "Reattached", "RoomStream", "StreamRead", "StreamSink"]

# A broadcast on its way into a stream: a gevent AsyncResult, set once it is kept (or with
# BackplaneUnavailable); `get`, `ready`, `successful` and `rawlink` are what is used of it.
# Its value is (seq, epoch) as the stream has them: an int, and the epoch as str or bytes.
Pending = Any


@dataclass(frozen=True, slots=True)
class Position:
    """A room's place in its numbered stream: the last seq, and the epoch it belongs to."""

    seq: int = 0
    epoch: str = ""


@dataclass(frozen=True, slots=True)
class Kept:
    """A broadcast kept in a room's stream. `skip`: the sender's session id (with exclude_self):
    a replay to that session leaves it out; `origin`: `node:connection id` a live delivery
    leaves it out for, or ""."""

    seq: int
    text: str
    skip: str = ""
    origin: str = ""


@dataclass(slots=True)
class StreamRead:
    """Entries after a position, in seq order (at most the count asked), and the room's
    position when they were read."""

    entries: list[Kept]
    now: Position


@dataclass(slots=True)
class Reattached:
    """What a resume's replay did: messages queued, each room's position after the replay,
    and the rooms whose missed messages could not all be replayed."""

    replayed: int = 0
    positions: dict[str, Position] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)


class StreamSink(Protocol):
    """What a `RoomStream` tells of the rooms it delivers."""

    def follow(self, room: str) -> None:
        """Live messages of `room` arrive from now on (again): catch up first."""
        ...

    def unfollow(self, room: str) -> None:
        """No more live messages of `room` (no members here)."""
        ...

    def deliver(self, room: str, position: Position, text: str, origin: str) -> None: ...


class RoomStream(Protocol):
    """Where numbered broadcasts are numbered, kept and carried to every node."""

    @property
    def inline(self) -> bool:
        """`append` delivers before it returns (in process): no follow/unfollow calls."""
        ...

    @property
    def dropped(self) -> int:
        """Histories of rooms without members dropped by this process before their
        retention (more than `retained` of them)."""
        ...

    def open(self, sink: StreamSink) -> None: ...

    def append(self, room: str, head: str, skip: str, origin: str) -> Pending | None:
        """Number, keep and deliver one broadcast (`head`: stamp_head's): None once it
        is kept, or a `Pending` result set when it is (an acknowledgement waits for it)."""
        ...

    def read(self, room: str, after: int, count: int) -> StreamRead: ...

    def position(self, room: str) -> Position: ...

    def occupied(self, room: str) -> None:
        """`room` has a member here: its history stays."""
        ...

    def vacated(self, room: str) -> None:
        """`room`'s last member here left: its history is kept for the retention only."""
        ...

    def expire(self) -> None:
        """Drop the histories past their retention (called now and then, also when idle)."""
        ...
