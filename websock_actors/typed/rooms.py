"""Rooms: named groups of connections, presence, and the fan-out of one encoded frame to a room.

`Rooms` is the plain backend the typed layer talks to: membership, presence, and the fan-out
of bytes. `LocalRooms` keeps the rooms of one process in memory (the default). A backplane
that spans processes or hosts (the Redis one in scale/redis_backplane.py) implements the
same interface: membership of a connection stays in its process, while presence (what each
member chose to show, e.g. its name) and broadcasts reach every process with members.
Numbered broadcasting (seq, epoch, history, replay) is built on top, in typed/numbered.py,
over the `RoomStream` a backend opens.

`LocalRooms` is called directly from connection greenlets of one hub and no method of it
yields, so each runs as one step: a `joined` reply can never race the membership it
reports. A backplane's methods may wait on the network (they park the calling greenlet
only) and raise `BackplaneUnavailable` when it is down.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .history import LocalStream
from .sessions import LocalSessions, SessionStore
from .streams import RoomStream

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["LocalRooms", "LostMember", "MemberRef", "Rooms"]

# Called by a backplane for each member of a process that vanished (kill -9, a lost host)
# or whose resumable session's grace ended where its connection no longer is:
# (room, the member's presence); the app tells the room.
LostMember = Callable[[str, Any], None]


@dataclass(frozen=True, slots=True)
class MemberRef:
    """A connection by address: the node it lives on and its id there."""

    node: str
    conn_id: int


# Makes the frame of a message's text, once for every member (encode_broadcast: this module
# stays free of the server layer).
Encoder = Callable[[str], bytes]


class Rooms(Protocol):
    """Room membership, presence and fan-out, as the typed layer uses them."""

    @property
    def node(self) -> str:
        """This process's id among the backplane's nodes."""
        ...

    @property
    def sessions(self) -> SessionStore:
        """Where dropped sessions wait for their resume."""
        ...

    @property
    def deliveries(self) -> int:
        """Frames put into this process's mailboxes by broadcasts."""
        ...

    @property
    def broadcast_failures(self) -> int:
        """Deliveries refused by a member's full or closed mailbox."""
        ...

    def start(self, lost: LostMember | None = None, reset: Callable[[], None] | None = None) -> None:
        """In the server's hub, before the first connection (`lost`: see LostMember; `reset()`:
        the backend lost its data, and what lives there must be written again)."""
        ...

    def stop(self) -> None:
        """After the last connection closed."""
        ...

    def join(
        self,
        conn: Connection,
        room: str,
        presence: Any = None,
        *,
        since: float | None = None,
        replacing: MemberRef | None = None,
    ) -> bool:
        """Add `conn` to `room`, shown as `presence` (JSON-able); False when it was a member
        already. `since`: when it joined (presence is in join order); `replacing`: the
        member it takes the place of (a resumed session's old connection)."""
        ...

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove `conn` from `room`; False when it was not a member."""
        ...

    def forget(self, conn: Connection) -> set[str]:
        """A connection closed: take it out of every room; returns the rooms it was in."""
        ...

    def members(self, room: str) -> list[Connection]:
        """The members of `room` in this process, in the order they joined."""
        ...

    def presence(self, room: str) -> list[Any]:
        """The presence of every member of `room`, in every process, in the order they joined."""
        ...

    def rooms_of(self, conn: Connection) -> set[str]: ...

    def is_member(self, conn: Connection, room: str) -> bool: ...

    def broadcast(self, room: str, frame: bytes, skip: Collection[Connection] = ()) -> int:
        """Put one encoded frame into every member's mailbox but `skip`'s, on every node;
        returns the deliveries queued here."""
        ...

    def broadcast_here(self, room: str, frame: bytes, skip: Collection[Connection] = ()) -> int:
        """`broadcast` to this process's members only (numbered broadcasts come through the
        stream to every node)."""
        ...

    def open_stream(self, size: int, retention: float, retained: int) -> RoomStream:
        """The stream numbered broadcasts go through (before start): keeps the last `size` of
        each room, `retention` seconds after its last member left, for at most `retained`
        rooms without members."""
        ...


class LocalRooms:
    """The rooms of one process; a broadcast never blocks on a slow member."""

    __slots__ = ("broadcast_failures", "deliveries", "memberships", "node", "rooms", "sessions")

    def __init__(self) -> None:
        self.node = secrets.token_hex(8)
        self.sessions: SessionStore = LocalSessions()
        # room -> {member: its presence}, insertion-ordered
        self.rooms: dict[str, dict[Connection, Any]] = {}
        self.memberships: dict[Connection, set[str]] = {}
        self.broadcast_failures = 0
        self.deliveries = 0  # frames put into mailboxes by broadcasts

    def start(self, lost: LostMember | None = None, reset: Callable[[], None] | None = None) -> None:
        """Nothing to start: a process cannot lose its own members, or its memory, without ending."""

    def stop(self) -> None:
        """Every connection is closed by now: members left (in their grace) go with the server."""
        self.rooms.clear()
        self.memberships.clear()

    def join(
        self,
        conn: Connection,
        room: str,
        presence: Any = None,
        *,
        since: float | None = None,
        replacing: MemberRef | None = None,
    ) -> bool:
        members = self.rooms.setdefault(room, {})
        if conn in members:
            return False
        old = None
        if replacing is not None and replacing.node == self.node:
            old = next((c for c in members if c.id == replacing.conn_id), None)
        if old is not None:  # the new connection takes the old one's place: the order stays
            self.rooms[room] = {conn if c is old else c: shown for c, shown in members.items()}
            rooms = self.memberships.get(old)
            if rooms is not None:
                rooms.discard(room)
                if not rooms:
                    del self.memberships[old]
        else:
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

    def broadcast(self, room: str, frame: bytes, skip: Collection[Connection] = ()) -> int:
        return self.broadcast_here(room, frame, skip)

    def broadcast_here(self, room: str, frame: bytes, skip: Collection[Connection] = ()) -> int:
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

    def open_stream(self, size: int, retention: float, retained: int) -> RoomStream:
        return LocalStream(size, retention, retained)
