"""Rooms: named groups of connections, presence, and the fan-out of one encoded frame to a room.

`Rooms` is the interface the typed layer talks to; `LocalRooms` keeps the rooms of one
process in memory (the default). A backplane that spans processes or hosts (the Redis one
in scale/redis_backplane.py) implements the same interface: membership of a connection stays
in its process, while presence (what each member chose to show, e.g. its name) and
broadcasts reach every process with members.

`LocalRooms` is called directly from connection greenlets of one hub and no method of it
yields, so each runs as one step: a `joined` reply can never race the membership it
reports. A backplane's methods may wait on the network (they park the calling greenlet
only) and raise `BackplaneUnavailable` when it is down.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol

from .history import RoomHistory
from .sessions import LocalSessions, RoomMembership, SessionStore

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["Attached", "LocalRooms", "LostMember", "Rooms"]

# Called by a backplane for each member of a process that vanished (kill -9, a lost host)
# or whose resumable session's grace ended where its connection no longer is:
# (room, the member's presence) -> the JSON text to broadcast to the room, or None.
LostMember = Callable[[str, Any], "str | None"]

# What `attach` did: messages replayed, each room's position (seq, epoch) now, the rooms
# whose missed messages could not all be replayed (another epoch, or trimmed history).
Attached = tuple[int, dict[str, tuple[int, str]], set[str]]

# Makes the frame of a message's text, once for every member (encode_broadcast: this module
# stays free of the server layer).
Encoder = Callable[[str], bytes]


class Rooms(Protocol):
    """Room membership, presence and fan-out, as the typed layer uses them."""

    @property
    def broadcast_failures(self) -> int:
        """Deliveries refused by a member's full or closed mailbox."""
        ...

    def start(self, lost: LostMember | None = None) -> None:
        """In the server's hub, before the first connection (`lost`: see LostMember)."""
        ...

    def stop(self) -> None:
        """After the last connection closed."""
        ...

    def join(self, conn: Connection, room: str, presence: Any = None) -> bool:
        """Add `conn` to `room`, shown as `presence` (JSON-able); False when it was a member already."""
        ...

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove `conn` from `room`; False when it was not a member."""
        ...

    def members(self, room: str) -> list[Connection]:
        """The members of `room` in this process, in the order they joined."""
        ...

    def presence(self, room: str) -> list[Any]:
        """The presence of every member of `room`, in every process, in the order they joined."""
        ...

    def rooms_of(self, conn: Connection) -> set[str]: ...

    def is_member(self, conn: Connection, room: str) -> bool: ...

    def forget(self, conn: Connection) -> set[str]:
        """A connection closed: take it out of every room; returns the rooms it was in."""
        ...

    def broadcast(self, room: str, frame: bytes, exclude: Connection | None = None) -> int:
        """Put one encoded frame into every member's mailbox; returns the deliveries queued here."""
        ...

    # -- resumption (typed/resume.py): numbered broadcasts, their history, sessions --------

    @property
    def node(self) -> str:
        """This process's id among the backplane's nodes."""
        ...

    @property
    def sessions(self) -> SessionStore: ...

    def keep_history(self, size: int, ttl: float, encode: Encoder) -> None:
        """Number broadcasts from now on and keep the last `size` of each room (before start);
        `encode` frames a stamped text once for every member (server/broadcast.py's)."""
        ...

    def publish(self, room: str, prefix: str, exclude: Connection | None = None, excluded: str = "") -> int:
        """A numbered broadcast: `prefix` (history.stamp_prefix) gets the room's next seq and
        its epoch, goes into the history (with the session key `excluded` skips on replay),
        and to every member, in seq order on every node. Returns the deliveries queued here."""
        ...

    def position(self, room: str) -> tuple[int, str]:
        """The room's last seq and its epoch."""
        ...

    def join_position(self, conn: Connection, room: str) -> tuple[int, str]:
        """Right after `join(conn, room)`: the room's (seq, epoch) the member started at."""
        ...

    def attach(
        self,
        conn: Connection,
        rooms: dict[str, RoomMembership],
        after: dict[str, tuple[int, str]],
        key: str,
        previous: tuple[str, int] | None,
        old: Connection | None = None,
    ) -> Attached:
        """Make `conn` a member of `rooms` again, with what it missed after `after[room]`
        (seq, epoch) queued first, then live messages, with no gap and no duplicate.
        `previous` (node, connection id): the presence entries it takes over; `old`: that
        connection, when it is still a (closed) member here: it leaves without a word."""
        ...


class LocalRooms:
    """The rooms of one process; a broadcast never blocks on a slow member."""

    __slots__ = (
        "_encode",
        "broadcast_failures",
        "deliveries",
        "history",
        "memberships",
        "node",
        "rooms",
        "sessions",
    )

    def __init__(self) -> None:
        self.node = secrets.token_hex(8)
        self.sessions: SessionStore = LocalSessions()
        self.history: RoomHistory | None = None
        self._encode: Encoder = _not_numbered
        # room -> {member: its presence}, insertion-ordered
        self.rooms: dict[str, dict[Connection, Any]] = {}
        self.memberships: dict[Connection, set[str]] = {}
        self.broadcast_failures = 0
        self.deliveries = 0  # frames put into mailboxes by broadcasts

    def start(self, lost: LostMember | None = None) -> None:
        """Nothing to start: a process cannot lose its own members without ending."""

    def stop(self) -> None:
        """Every connection is closed by now: members left (in their grace) go with the server."""
        self.rooms.clear()
        self.memberships.clear()

    def join(self, conn: Connection, room: str, presence: Any = None) -> bool:
        members = self.rooms.setdefault(room, {})
        if conn in members:
            return False
        members[conn] = presence
        self.memberships.setdefault(conn, set()).add(room)
        return True

    def leave(self, conn: Connection, room: str) -> bool:
        members = self.rooms.get(room)
        if members is None or conn not in members:
            return False
        del members[conn]
        if not members:
            del self.rooms[room]
        rooms = self.memberships.get(conn)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.memberships[conn]
        return True

    def members(self, room: str) -> list[Connection]:
        return list(self.rooms.get(room, ()))

    def presence(self, room: str) -> list[Any]:
        return list(self.rooms.get(room, {}).values())

    def rooms_of(self, conn: Connection) -> set[str]:
        return set(self.memberships.get(conn, ()))

    def is_member(self, conn: Connection, room: str) -> bool:
        return room in self.memberships.get(conn, ())

    def forget(self, conn: Connection) -> set[str]:
        rooms = self.memberships.pop(conn, set())
        for room in rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.pop(conn, None)
                if not members:
                    del self.rooms[room]
        return rooms

    def broadcast(self, room: str, frame: bytes, exclude: Connection | None = None) -> int:
        return self.broadcast_skipping(room, frame, () if exclude is None else (exclude,))

    def broadcast_skipping(self, room: str, frame: bytes, skip: Collection[Connection]) -> int:
        """`broadcast` past several members (a backplane's late echoes to new members)."""
        delivered = 0
        for conn in list(self.rooms.get(room, ())):
            if conn in skip:
                continue
            if conn.send_frame(frame):
                delivered += 1
            else:
                self.broadcast_failures += 1
        self.deliveries += delivered
        return delivered

    # -- resumption ------------------------------------------------------------------------

    def keep_history(self, size: int, ttl: float, encode: Encoder) -> None:
        self.history = RoomHistory(size, ttl)
        self._encode = encode

    def publish(self, room: str, prefix: str, exclude: Connection | None = None, excluded: str = "") -> int:
        history = self.history
        assert history is not None, "keep_history() first"
        text = history.append(room, prefix, excluded)
        history.sweep(self.rooms)
        return self.broadcast(room, self._encode(text), exclude)

    def position(self, room: str) -> tuple[int, str]:
        assert self.history is not None
        return self.history.position(room)

    def join_position(self, conn: Connection, room: str) -> tuple[int, str]:
        return self.position(room)  # join and this call are one step: nothing came between

    def attach(
        self,
        conn: Connection,
        rooms: dict[str, RoomMembership],
        after: dict[str, tuple[int, str]],
        key: str,
        previous: tuple[str, int] | None,
        old: Connection | None = None,
    ) -> Attached:
        """Never yields: what is replayed and the membership are one step. The new
        connection takes `old`'s place in each room (the presence order stays)."""
        if old is not None:
            self._replace(old, conn)
        history = self.history
        assert history is not None
        backlog: list[bytes] = []
        positions: dict[str, tuple[int, str]] = {}
        lost: set[str] = set()
        for room, membership in rooms.items():
            seq, epoch = after.get(room, (membership.seq, membership.epoch))
            entries, now_seq, now_epoch = history.since(room, seq, epoch)
            if entries is None:
                lost.add(room)
            else:
                backlog.extend(self._encode(text) for _, text, skip in entries if skip != key)
            positions[room] = history.position(room) if not now_epoch else (now_seq, now_epoch)
            self.join(conn, room, membership.presence)
        conn.send_backlog(backlog)
        return len(backlog), positions, lost

    def _replace(self, old: Connection, new: Connection) -> None:
        for room in self.memberships.pop(old, set()):
            members = self.rooms[room]
            self.rooms[room] = {new if c is old else c: shown for c, shown in members.items()}
            self.memberships.setdefault(new, set()).add(room)


def _not_numbered(text: str) -> bytes:
    raise RuntimeError("LocalRooms.keep_history() was not called: broadcasts are not numbered")
