"""Sessions kept for resumption: written when a connection opens, resumed after it drops.

A `SessionRecord` is what a resume restores: the rooms (with the member's presence, when it
joined, and the room's position then), `ctx.state`, the identity, and where the connection
lived (node and connection id, so that another node can take over its presence entries).
It is stored as JSON, in this process (`LocalSessions`) or in Redis (the backplane's), from
the moment the connection opens (so a session outlives a `kill -9` of its process) and
written again when its rooms change and when it closes, each time for the policy's
`window`. A resume takes the record (once) and stores it again under a new token. A
resumable close also opens the member's *grace* (presence kept, no `member_left`): a claim
that exactly one party wins: the resuming connection (which takes the membership over
silently) or whoever ends the grace (which reports the member as left).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["LocalSessions", "RoomMembership", "SessionRecord", "SessionStore"]


@dataclass
class RoomMembership:
    """One room of a session: what the member showed, when it joined, the room's position then."""

    presence: Any = None
    joined_at: float = 0.0
    seq: int = 0
    epoch: str = ""


@dataclass
class SessionRecord:
    """`sid`: the session's id for good (the token changes at each resume); `closed`: the
    connection closed (else it was open when last written: its process may have died);
    `resumed_at`: when it was resumed lately (resumes per minute are bounded)."""

    sid: str
    node: str = ""
    conn_id: int = 0
    rooms: dict[str, RoomMembership] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    identity: Any = None
    closed: bool = False
    resumed_at: list[float] = field(default_factory=list)

    def dumps(self) -> bytes:
        """JSON; raises TypeError or ValueError when the state or identity is not JSON-able."""
        rooms = {room: [m.presence, m.joined_at, m.seq, m.epoch] for room, m in self.rooms.items()}
        record = [
            self.sid, self.node, self.conn_id, rooms, self.state, self.identity, self.closed, self.resumed_at
        ]  # fmt: skip
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes) -> SessionRecord:
        sid, node, conn_id, rooms, state, identity, closed, resumed_at = json.loads(data)
        memberships = {room: RoomMembership(*m) for room, m in rooms.items()}
        return cls(sid, node, conn_id, memberships, state, identity, closed, resumed_at)


class SessionStore(Protocol):
    """Where sessions wait to be resumed (see the module's docstring)."""

    @property
    def shared(self) -> bool:
        """Other processes see these sessions (a drain can send clients elsewhere)."""
        ...

    def save(self, token: str, record: bytes, window: float, *, new: bool = False) -> bool:
        """Keep `record` for `window` seconds: `new`, a session just made (or moved to a new
        token); else only while the record is still there. False when it is not (taken by
        a resume, or expired): the session lives on elsewhere, or not at all."""
        ...

    def close(self, token: str, record: bytes, window: float, grace: float, *, new: bool = False) -> bool:
        """`save` the record of a closed connection and open the member's grace for `grace`
        seconds; False when the record was taken meanwhile (no grace then)."""
        ...

    def peek(self, token: str) -> bytes | None:
        """The record, left in place; None when unknown or expired."""
        ...

    def take(self, token: str) -> bytes | None:
        """The record, removed (one resume per record); None when unknown or expired."""
        ...

    def discard(self, token: str) -> None:
        """The session ended (a close from the client)."""
        ...

    def claim_grace(self, token: str) -> bool:
        """End the grace of `token`; True for the one caller that ended it."""
        ...

    def watch(self, on_taken: Callable[[str], None]) -> None:
        """`on_taken(token)`: another process resumed the session of an open connection here."""
        ...

    def taken(self, node: str, token: str) -> None:
        """Tell `node` that its open connection's session `token` was resumed elsewhere."""
        ...


class LocalSessions:
    """Sessions in this process's memory (the store of `LocalRooms`)."""

    shared = False

    def __init__(self) -> None:
        self.records: dict[str, tuple[bytes, float]] = {}  # token -> (record, expires, monotonic)
        self.graces: set[str] = set()
        self._next_sweep = 0.0

    def save(self, token: str, record: bytes, window: float, *, new: bool = False) -> bool:
        now = time.monotonic()
        if not new and self._live(token, now) is None:
            return False
        self.records[token] = (record, now + window)
        if now >= self._next_sweep:  # expired records go now and then, not one timer each
            self._next_sweep = now + 10.0
            for old in [t for t, (_, expires) in self.records.items() if expires <= now]:
                del self.records[old]
                self.graces.discard(old)
        return True

    def close(self, token: str, record: bytes, window: float, grace: float, *, new: bool = False) -> bool:
        if not self.save(token, record, window, new=new):
            return False
        self.graces.add(token)
        return True

    def _live(self, token: str, now: float) -> bytes | None:
        entry = self.records.get(token)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def peek(self, token: str) -> bytes | None:
        return self._live(token, time.monotonic())

    def take(self, token: str) -> bytes | None:
        record = self._live(token, time.monotonic())
        self.records.pop(token, None)
        return record

    def discard(self, token: str) -> None:
        self.records.pop(token, None)
        self.graces.discard(token)

    def watch(self, on_taken: Callable[[str], None]) -> None:
        """One process: a resume drops an open connection of its session itself."""

    def taken(self, node: str, token: str) -> None:
        """One process: nobody else to tell."""

    def claim_grace(self, token: str) -> bool:
        if token in self.graces:
            self.graces.discard(token)
            return True
        return False
