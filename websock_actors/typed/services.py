"""What the Contexts of one App share: its rooms, its broadcasts, its users, its error counts.

A `Context` is made per message; the `HandlerServices` it reaches through is made once per
App. It is the one place a room broadcast is sent from (numbered with resumption on, plain
otherwise), and where joins are capped at the app's `max_rooms` and its `join_rate`.
`publish` is the broadcast of a sender outside the handlers (`App.broadcast`, the server
API): it waits until a numbered broadcast is kept and says where (`Published`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from pydantic import BaseModel

from ..errors import BackplaneUnavailable, CloseCode, ConfigurationError, MessageError
from ..server.broadcast import encode_broadcast
from .messages import to_json
from .ratelimit import RateLimit, RateLimited, retry_after_ms
from .rooms import Rooms
from .users import Users

if TYPE_CHECKING:
    from ..server.connection import Connection
    from .dispatch import Dispatcher
    from .resumption import Resumption

__all__ = ["KEEP_TIMEOUT", "HandlerServices", "Published", "wait_kept"]

# Seconds a broadcast may take to be kept before its sender is told it was not.
KEEP_TIMEOUT = 5.0


def wait_kept(pending: Any) -> Any:
    """Wait until a numbered broadcast is kept: where (the `Pending`'s value, streams.py);
    BackplaneUnavailable when it was not."""
    try:
        return pending.get(timeout=KEEP_TIMEOUT)
    except gevent.Timeout:
        raise BackplaneUnavailable("Redis did not keep the broadcast in time") from None


@dataclass(frozen=True, slots=True)
class Published:
    """What a broadcast did: the deliveries queued on this node, and in a numbered room
    (resumption on) its `seq` and `epoch` there; None for a plain room."""

    deliveries: int
    seq: int | None = None
    epoch: str | None = None


class HandlerServices:
    """The rooms, broadcasts, held replies and error counts of one App, for its Contexts."""

    def __init__(self, rooms: Rooms, max_rooms: int, join_rate: RateLimit | None = None) -> None:
        self.rooms = rooms
        self.max_rooms = max_rooms
        self.join_rate = join_rate  # per client (typed/ratelimit.py); None: no limit
        self.rooms_refused = 0  # joins past max_rooms
        self.error_replies: dict[str, int] = {}  # by code, counted by Context.error
        self.resumption: Resumption | None = None
        self.dispatcher: Dispatcher | None = None  # set by the App, which makes both
        self.rooms_refusal: str | None = None  # set: rooms are not to be used (see App.refuse_rooms)
        self.users = Users(self)  # identity -> its connections here (typed/users.py)

    def count_error(self, code: str) -> None:
        counts = self.error_replies
        counts[code] = counts.get(code, 0) + 1

    def check_rooms(self) -> None:
        """Raise ConfigurationError when this app's rooms may not be used."""
        if self.rooms_refusal is not None:
            raise ConfigurationError(self.rooms_refusal)

    def join(self, conn: Connection, room: str, presence: Any) -> bool:
        """`conn` joins `room`, within `max_rooms` (`too_many_rooms` past it) and its client's
        `join_rate` (`rate_limited` past it, even for a room it is in: checked first)."""
        self.check_rooms()
        if self.join_rate is not None and self.dispatcher is not None:
            self._take_join(conn)
        rooms = self.rooms
        if len(rooms.rooms_of(conn)) >= self.max_rooms and not rooms.is_member(conn, room):
            self.rooms_refused += 1
            raise MessageError("too_many_rooms", f"a connection may be in {self.max_rooms} rooms at most")
        joined = rooms.join(conn, room, presence)
        resumption = self.resumption
        if joined and resumption is not None and resumption.numbered is not None:
            resumption.joined(conn, room, presence, resumption.numbered.joined(room))
        return joined

    def _take_join(self, conn: Connection) -> None:
        """A join token of `conn`'s client, or RateLimited (and the close with 1008 after
        the join rate's `close_after` refusals in a row)."""
        assert self.dispatcher is not None
        limits = self.dispatcher.limits_of(conn)
        bucket = limits.take_join()
        if bucket is None:
            return
        close_after = bucket.limit.close_after
        if close_after is not None and limits.rejected >= close_after:
            conn.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        raise RateLimited("too many joins; slow down", retry_after_ms(bucket))

    def leave(self, conn: Connection, room: str) -> bool:
        self.check_rooms()
        resumption = self.resumption
        if resumption is not None:
            resumption.left(conn, room)
        left = self.rooms.leave(conn, room)
        if left and resumption is not None and resumption.numbered is not None:
            resumption.numbered.left({room})
        return left

    def forget(self, conn: Connection) -> None:
        """`conn` is gone: it leaves every room (numbered rooms let go of what they kept)."""
        rooms = self.rooms.forget(conn)
        resumption = self.resumption
        if resumption is not None and resumption.numbered is not None:
            resumption.numbered.left(rooms)

    def send_to_room(
        self,
        room: str,
        message: BaseModel,
        skip: Connection | None = None,
        pending: list[Any] | None = None,
    ) -> int:
        """Numbered (resumption on: seq, epoch, kept for replays) or plain; `skip` (the
        sender, with `exclude_self`) does not get it. Returns the deliveries queued here. A
        numbered one is acknowledged only once kept: with `pending` (a handler's list) its
        replies wait for it, without it this call waits (BackplaneUnavailable when not kept)."""
        self.check_rooms()
        resumption = self.resumption
        if resumption is not None and resumption.numbered is not None:
            delivered, kept = resumption.numbered.broadcast(room, message, skip)
            if kept is not None:
                if pending is not None:
                    pending.append(kept)
                else:
                    wait_kept(kept)
            return delivered
        frame = encode_broadcast(to_json(message))
        return self.rooms.broadcast(room, frame, () if skip is None else (skip,))

    def publish(self, room: str, message: BaseModel) -> Published:
        """Send a model to `room` from outside the handlers: returns once a numbered one is
        kept (BackplaneUnavailable when it is not), with its seq and epoch. The handlers'
        `send_to_room` does none of this: their broadcasts do not wait."""
        self.check_rooms()
        resumption = self.resumption
        numbered = resumption.numbered if resumption is not None else None
        if numbered is None:
            return Published(self.send_to_room(room, message))
        delivered, kept = numbered.broadcast(room, message)
        if kept is None:  # kept in process already: the room's position is this broadcast's
            at = numbered.stream.position(room)
            return Published(delivered, at.seq, at.epoch)
        seq, epoch = wait_kept(kept)
        return Published(delivered, int(seq), epoch.decode() if isinstance(epoch, bytes) else str(epoch))
