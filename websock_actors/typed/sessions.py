"""Sessions kept for resumption: what a dropped connection leaves behind, for a while.

A `SessionRecord` is what a resume restores: the rooms (with the member's presence, when it
joined, and the room's position then), `ctx.state`, the identity, and where the connection
lived (node and connection id, so that another node can take over its presence entries).
It is stored as JSON, in this process (`LocalSessions`) or in Redis (the backplane's), for
the policy's `window`; the member's *grace* (presence kept, no `member_left`) is a separate
claim that exactly one party wins: the resuming connection (which takes the membership over
silently) or whoever ends the grace (which reports the member as left).
"""

from __future__ import annotations

import json
import time
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
    token: str
    node: str = ""
    conn_id: int = 0
    rooms: dict[str, RoomMembership] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    identity: Any = None

    def dumps(self) -> bytes:
        """JSON; raises TypeError or ValueError when the state or identity is not JSON-able."""
        rooms = {room: [m.presence, m.joined_at, m.seq, m.epoch] for room, m in self.rooms.items()}
        record = [self.token, self.node, self.conn_id, rooms, self.state, self.identity]
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes) -> SessionRecord:
        token, node, conn_id, rooms, state, identity = json.loads(data)
        return cls(
            token, node, conn_id, {room: RoomMembership(*m) for room, m in rooms.items()}, state, identity
        )


class SessionStore(Protocol):
    """Where dropped sessions wait to be resumed (see the module's docstring)."""

    @property
    def shared(self) -> bool:
        """Other processes see these sessions (a drain can send clients elsewhere)."""
        ...

    def save(self, token: str, record: bytes, window: float, grace: float) -> None:
        """Keep `record` for `window` seconds, and open the member's grace for `grace` seconds."""
        ...

    def take(self, token: str) -> bytes | None:
        """The record, removed (one resume per drop); None when unknown or expired."""
        ...

    def claim_grace(self, token: str) -> bool:
        """End the grace of `token`; True for the one caller that ended it."""
        ...


class LocalSessions:
    """Sessions in this process's memory (the store of `LocalRooms`)."""

    shared = False

    def __init__(self) -> None:
        self.records: dict[str, tuple[bytes, float]] = {}  # token -> (record, expires, monotonic)
        self.graces: set[str] = set()
        self._next_sweep = 0.0

    def save(self, token: str, record: bytes, window: float, grace: float) -> None:
        now = time.monotonic()
        self.records[token] = (record, now + window)
        self.graces.add(token)
        if now >= self._next_sweep:  # expired records go now and then, not one timer each
            self._next_sweep = now + 10.0
            for old in [t for t, (_, expires) in self.records.items() if expires <= now]:
                del self.records[old]
                self.graces.discard(old)

    def take(self, token: str) -> bytes | None:
        entry = self.records.pop(token, None)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def claim_grace(self, token: str) -> bool:
        if token in self.graces:
            self.graces.discard(token)
            return True
        return False
