"""Rooms: named groups of connections, and the fan-out of one encoded frame to a room.

`Rooms` is the interface the typed layer talks to; `LocalRooms` keeps the rooms of one
process in memory (the default). A backplane that spans processes or hosts implements the
same interface: membership stays local (a connection lives in one process), a broadcast
goes to every process with members.

Called directly from connection greenlets of one hub: no method yields, so each runs as
one step and needs no lock, and a `joined` reply can never race the membership it reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["LocalRooms", "Rooms"]


class Rooms(Protocol):
    """Room membership and fan-out, as the typed layer uses them."""

    broadcast_failures: int  # deliveries refused by a member's full or closed mailbox

    def join(self, conn: Connection, room: str) -> bool:
        """Add `conn` to `room`; False when it was a member already."""
        ...

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove `conn` from `room`; False when it was not a member."""
        ...

    def members(self, room: str) -> list[Connection]:
        """The members of `room` (in this process), in the order they joined."""
        ...

    def rooms_of(self, conn: Connection) -> set[str]:
        ...

    def is_member(self, conn: Connection, room: str) -> bool:
        ...

    def forget(self, conn: Connection) -> set[str]:
        """A connection closed: take it out of every room; returns the rooms it was in."""
        ...

    def broadcast(self, room: str, frame: bytes, exclude: Connection | None = None) -> int:
        """Put one encoded frame into every member's mailbox; returns the deliveries queued."""
        ...


class LocalRooms:
    """The rooms of one process; a broadcast never blocks on a slow member."""

    __slots__ = ("broadcast_failures", "memberships", "rooms")

    def __init__(self) -> None:
        self.rooms: dict[str, dict[Connection, None]] = {}  # insertion-ordered member sets
        self.memberships: dict[Connection, set[str]] = {}
        self.broadcast_failures = 0

    def join(self, conn: Connection, room: str) -> bool:
        members = self.rooms.setdefault(room, {})
        if conn in members:
            return False
        members[conn] = None
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
        return delivered
