"""The supervisor: one actor per application that owns the lifecycle of its named actors.

It starts and watches them and restarts a crashed one one-for-one, at most `max_restarts`
times within `within` seconds; beyond that the actor stays down and its queued messages go
to the dead-letter callback it was registered with. It stops its actors last, after the
server closed the connections. A crash is reported from the crashed actor's greenlet as a
message, so every decision is taken in the supervisor's own greenlet, one at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gevent.hub import get_hub

from ..errors import ActorStopped, ConfigurationError, MailboxFull
from .actor import Actor, ActorRef

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
    """Starts named actors, restarts a crashed one by policy, stops them all last.

    Start it as an actor (`Supervisor.start(policy)`), then `supervise` children from any
    greenlet of its hub.
    """

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.children: dict[str, _Child] = {}
        self.restarts = 0
        self.restarts_by_actor: dict[str, int] = {}

    def supervise(
        self, name: str, factory: Callable[[], Actor], dead_letter: Callable[[Any], None]
    ) -> ActorRef[Any]:
        """Start a named child actor and watch it."""
        if name in self.children:
            raise ConfigurationError(f"an actor named {name!r} already exists")
        ref: ActorRef[Any] = ActorRef(factory, name=name)
        ref.on_crash = self._report_crash
        self.children[name] = _Child(ref, dead_letter, [])
        ref.spawn()
        return ref

    def child(self, name: str) -> ActorRef[Any]:
        return self.children[name].ref

    def _report_crash(self, ref: ActorRef[Any], error: BaseException) -> None:
        """Called in the crashed child's greenlet: hand the decision to the supervisor's."""
        own = self.actor_ref
        if own.is_alive:
            try:
                own.tell(_ChildCrashed(ref, error))
                return
            except (ActorStopped, MailboxFull):
                pass
        self._give_up(ref, "the supervisor cannot take the report")

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
            name = ref.name or ""
            self.restarts_by_actor[name] = self.restarts_by_actor.get(name, 0) + 1
            log.warning("actor %r crashed (%r): restarting", ref.name, error)
            ref.spawn()
        else:
            self._give_up(
                ref, f"crashed {len(child.crashes)} times within {self.policy.within:g}s: {error!r}"
            )

    def _give_up(self, ref: ActorRef[Any], why: str) -> None:
        log.error("actor %r stays down: %s", ref.name, why)
        child = self.children.get(ref.name or "")
        for letter in ref.give_up(ActorStopped(f"actor {ref.name!r} is down")):
            if child is not None:
                child.dead_letter(letter)

    def on_stop(self) -> None:
        """Handler actors stop last, after the connections."""
        for child in self.children.values():
            child.ref.stop(timeout=5.0)
