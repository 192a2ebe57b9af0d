"""Resumable sessions in Redis, so that a client can resume on any node or worker.

A session is `<key_prefix>:session:<token>` (its record, JSON, expiring after the policy's
window, written again whenever it changes) and, once its connection closed, an entry of
`<key_prefix>:graces`, a sorted set scored by the end of the member's grace. Taking a record is
one GETDEL (a session resumes once); rewriting it is a SET XX, which finds it gone when a
resume took it meanwhile; ending a grace is one ZREM, which answers 1 to exactly one
caller: the resuming node (which takes the presence over) or the node that reports the
member as left. A resume that takes the record of a connection still open on another node
(half-open: its client is gone) tells that node on its own channel, `<key_prefix>:node:<id>`,
and that node drops the connection without a word to its rooms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .redis_io import Commands

log = logging.getLogger("websock_actors")

__all__ = ["RedisSessions"]


class RedisSessions:
    """The `SessionStore` of a RedisBackplane."""

    shared = True

    def __init__(self, pool: Commands, key_prefix: str) -> None:
        self._pool = pool
        self._key_prefix = key_prefix
        self.graces_key = f"{key_prefix}:graces"
        self._on_taken: Callable[[str], None] | None = None

    def control_channel(self, node: str) -> bytes:
        return f"{self._key_prefix}:node:{node}".encode()

    def watch(self, on_taken: Callable[[str], None]) -> None:
        """`on_taken(token)`: another node resumed the session of an open connection here."""
        self._on_taken = on_taken

    def taken(self, node: str, token: str) -> None:
        """Tell `node` that its open connection's session `token` was resumed elsewhere."""
        self._pool.execute("PUBLISH", self.control_channel(node), b"taken " + token.encode())

    def on_control(self, data: bytes) -> None:
        what, _, token = data.partition(b" ")
        if what == b"taken" and self._on_taken is not None:
            try:
                self._on_taken(token.decode())
            except Exception:
                log.exception("dropping the connection of a session resumed elsewhere failed")

    def key(self, token: str) -> str:
        return f"{self._key_prefix}:session:{token}"

    def save(self, token: str, record: bytes, window: float, *, new: bool = False) -> bool:
        ttl = max(1, int(window * 1000))
        if new:
            self._pool.execute("SET", self.key(token), record, "PX", ttl)
            return True
        return bool(self._pool.execute("SET", self.key(token), record, "PX", ttl, "XX"))

    def close(self, token: str, record: bytes, window: float, grace: float, *, new: bool = False) -> bool:
        if not self.save(token, record, window, new=new):
            return False
        self._pool.execute("ZADD", self.graces_key, time.time() + grace, token)
        return True

    def peek(self, token: str) -> bytes | None:
        data: bytes | None = self._pool.execute("GET", self.key(token))
        return data

    def take(self, token: str) -> bytes | None:
        data: bytes | None = self._pool.execute("GETDEL", self.key(token))
        return data

    def discard(self, token: str) -> None:
        self._pool.run([("DEL", self.key(token)), ("ZREM", self.graces_key, token)])

    def claim_grace(self, token: str) -> bool:
        return bool(self._pool.execute("ZREM", self.graces_key, token))
