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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["LocalRooms", "LostMember", "Rooms"]

# Called by a backplane for each member of a process that vanished (kill -9, a lost host):
# (room, the member's presence) -> the frame to send to the room, or None for nothing.
LostMember = Callable[[str, Any], "bytes | None"]


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


class LocalRooms:
    """The rooms of one process; a broadcast never blocks on a slow member."""

    __slots__ = ("broadcast_failures", "deliveries", "memberships", "rooms")

    def __init__(self) -> None:
        # room -> {member: its presence}, insertion-ordered
        self.rooms: dict[str, dict[Connection, Any]] = {}
        self.memberships: dict[Connection, set[str]] = {}
        self.broadcast_failures = 0
        self.deliveries = 0  # frames put into mailboxes by broadcasts

    def start(self, lost: LostMember | None = None) -> None:
        """Nothing to start: a process cannot lose its own members without ending."""

    def stop(self) -> None:
        pass

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
        delivered = 0
        for conn in list(self.rooms.get(room, ())):
            if conn is exclude:
                continue
            if conn.send_frame(frame):
                delivered += 1
            else:
                self.broadcast_failures += 1
        self.deliveries += delivered
        return delivered
