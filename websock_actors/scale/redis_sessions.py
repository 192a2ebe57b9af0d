"""Resumable sessions in Redis, so that a client can resume on any node or worker.

A dropped session is `<prefix>:session:<token>` (its record, JSON, expiring after the
policy's window) and an entry of `<prefix>:graces`, a sorted set scored by the end of the
member's grace. Taking a record is one GETDEL (a session resumes once); ending a grace is
one ZREM, which answers 1 to exactly one caller: the resuming node (which takes the presence
over) or the node that reports the member as left.
"""

from __future__ import annotations

import time

from .redis_io import CommandPool

__all__ = ["RedisSessions"]


class RedisSessions:
    """The `SessionStore` of a RedisBackplane."""

    shared = True

    def __init__(self, pool: CommandPool, prefix: str) -> None:
        self._pool = pool
        self._prefix = prefix
        self.graces_key = f"{prefix}:graces"

    def key(self, token: str) -> str:
        return f"{self._prefix}:session:{token}"

    def save(self, token: str, record: bytes, window: float, grace: float) -> None:
        self._pool.run(
            [
                ("SET", self.key(token), record, "PX", max(1, int(window * 1000))),
                ("ZADD", self.graces_key, time.time() + grace, token),
            ]
        )

    def take(self, token: str) -> bytes | None:
        data: bytes | None = self._pool.execute("GETDEL", self.key(token))
        return data

    def claim_grace(self, token: str) -> bool:
        return bool(self._pool.execute("ZREM", self.graces_key, token))
