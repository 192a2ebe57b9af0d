"""The limits and policies a server gives each of its connections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..protocol.handshake import HandshakePolicy
from .metrics import ServerStats

__all__ = ["ConnectionOptions", "OverflowPolicy"]

# What a connection whose outgoing mailbox is full does with one more message from another
# greenlet: close that peer (1013), or drop the message and count it.
OverflowPolicy = Literal["close", "drop"]


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Per-connection limits and policies, shared by all connections of one server."""

    handshake: HandshakePolicy = field(default_factory=HandshakePolicy)
    handshake_timeout: float = 10.0
    close_timeout: float = 10.0
    max_queue_bytes: int = 4 * 1024 * 1024
    overflow: OverflowPolicy = "close"
    read_size: int = 65536
    stats: ServerStats = field(default_factory=ServerStats)  # the server's counters, shared
    # An idle actor gives up its greenlet (dormancy.py): not when threads are greenlets
    # (monkey-patched), where a handler's threading.local must outlive its idle periods.
    dormant_when_idle: bool = True
