"""The supervisor: one actor per server that owns lifecycle and rooms.

It starts and watches named handler actors and restarts a crashed one one-for-one, at
most `max_restarts` times within `within` seconds; beyond that the actor stays down and
its queued messages go to the dead-letter callback it was registered with. It keeps the
room registry (cleaned up when a connection closes) and fans broadcasts out. It stops
its handler actors last, after the server closed the connections.

Room and registry methods are called directly from connection greenlets of the same hub:
none of them yields, so each runs as one step and needs no lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gevent.hub import get_hub

from .actor import Actor, ActorRef
from .errors import ActorStopped, ConfigurationError

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["RestartPolicy", "Supervisor"]

log = logging.getLogger("websock_actors")


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restart a crashed actor at most `max_restarts` times within `within` seconds."""

    max_restarts: int = 3
    within: float = 10.0


@dataclass(slots=True)
class _Child:
    ref: ActorRef[Any]
    dead_letter: Callable[[Any], None]
    crashes: list[float]


class _ChildCrashed:
    __slots__ = ("error", "ref")

    def __init__(self, ref: ActorRef[Any], error: BaseException) -> None:
        self.ref = ref
        self.error = error


class Supervisor(Actor):
    """Lifecycle of handler actors (restart by policy), rooms, and broadcast fan-out."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.children: dict[str, _Child] = {}
        self.rooms: dict[str, dict[Connection, None]] = {}  # insertion-ordered member sets
        self.memberships: dict[Connection, set[str]] = {}
        self.restarts = 0
        self.broadcast_failures = 0  # deliveries refused by a member's full or closed mailbox
        self.ref: ActorRef[Supervisor] | None = None

    # -- handler actors -------------------------------------------------------------

    def supervise(
        self, name: str, factory: Callable[[], Actor], dead_letter: Callable[[Any], None]
    ) -> ActorRef[Any]:
        """Start a named child actor and watch it."""
        if name in self.children:
            raise ConfigurationError(f"an actor named {name!r} already exists")
        ref: ActorRef[Any] = ActorRef(factory, name=name)
        ref.on_crash = self._report_crash
        self.children[name] = _Child(ref, dead_letter, [])
        ref._run_new_instance()
        return ref

    def child(self, name: str) -> ActorRef[Any]:
        return self.children[name].ref

    def _report_crash(self, ref: ActorRef[Any], error: BaseException) -> None:
        """Called in the crashed child's greenlet: hand the decision to the supervisor's."""
        if self.ref is not None and self.ref.is_alive:
            try:
                self.ref.tell(_ChildCrashed(ref, error))
                return
            except (ActorStopped, Exception):
                pass
        self._give_up(ref, "the supervisor is stopped")

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _ChildCrashed):
            self._decide(message.ref, message.error)
        return None

    def _decide(self, ref: ActorRef[Any], error: BaseException) -> None:
        child = self.children.get(ref.name or "")
        if child is None:
            return
        now = get_hub().loop.now()
        child.crashes = [t for t in child.crashes if now - t < self.policy.within]
        child.crashes.append(now)
        if len(child.crashes) <= self.policy.max_restarts:
            self.restarts += 1
            log.warning("actor %r crashed (%r): restarting", ref.name, error)
            ref._run_new_instance()
        else:
            self._give_up(
                ref, f"crashed {len(child.crashes)} times within {self.policy.within:g}s: {error!r}"
            )

    def _give_up(self, ref: ActorRef[Any], why: str) -> None:
        log.error("actor %r stays down: %s", ref.name, why)
        ref._down = True
        child = self.children.get(ref.name or "")
        for letter in ref.fail_pending(ActorStopped(f"actor {ref.name!r} is down")):
            if child is not None:
                child.dead_letter(letter)

    def on_stop(self) -> None:
        """Handler actors stop last, after the connections."""
        for child in self.children.values():
            child.ref.stop(timeout=5.0)

    # -- rooms ----------------------------------------------------------------------

    def join(self, conn: Connection, room: str) -> bool:
        """Add `conn` to `room`; False when it was a member already."""
        members = self.rooms.setdefault(room, {})
        if conn in members:
            return False
        members[conn] = None
        self.memberships.setdefault(conn, set()).add(room)
        return True

    def leave(self, conn: Connection, room: str) -> bool:
        """Remove `conn` from `room`; False when it was not a member."""
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

    def forget(self, conn: Connection) -> set[str]:
        """A connection closed: take it out of every room; returns the rooms it was in."""
        rooms = self.memberships.pop(conn, set())
        for room in rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.pop(conn, None)
                if not members:
                    del self.rooms[room]
        return rooms

    def broadcast(self, room: str, frame: bytes, exclude: Connection | None = None) -> int:
        """Put one encoded frame into every member's mailbox; never blocks on a slow member."""
        delivered = 0
        for conn in list(self.rooms.get(room, ())):
            if conn is exclude:
                continue
            if conn.send_frame(frame):
                delivered += 1
            else:
                self.broadcast_failures += 1
        return delivered
