"""`Emitted`, what one push did, and `Transport`, what the Emitter asks of Redis or HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Emitted", "Transport"]


@dataclass(frozen=True)
class Emitted:
    """What a push did; a field the transport cannot know is None.

    `nodes`: over Redis, how many nodes received the PUBLISH (those with members in the
    room, or with a connection of the user, or lingering); over HTTP None.
    `deliveries`: over HTTP, the connections the answering node delivered to (the other
    nodes deliver too, through its backplane); over Redis None (it happens on the nodes).
    `closed`: `disconnect_user` over HTTP, the connections the answering node closed.
    `seq`/`epoch`: a broadcast's place in a numbered room. `duplicate`: the idempotency key
    was seen already, nothing was published.
    """

    nodes: int | None = None
    seq: int | None = None
    epoch: str | None = None
    duplicate: bool = False
    deliveries: int | None = None
    closed: int | None = None


class Transport(Protocol):
    """One way to the servers. `text` is the message's JSON (checked and encoded once), `key`
    a user's address (typed/messages.py user_key), `once` an idempotency key or None."""

    def broadcast(self, room: str, text: str, has_room: bool, once: str | None) -> Emitted: ...

    def send_to_user(self, key: str, text: str, once: str | None) -> Emitted: ...

    def disconnect_user(self, key: str, code: int, reason: str, once: str | None) -> Emitted: ...

    def close(self) -> None: ...
