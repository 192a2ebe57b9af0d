"""Push into the rooms from any Python process: `Emitter`, a synchronous publisher over Redis.

    emitter = Emitter("redis://127.0.0.1:6379/0")                 # plain rooms
    emitter = Emitter("redis://127.0.0.1:6379/0", numbered=True)  # the app has a ResumePolicy
    emitter.broadcast("lobby", {"type": "notice", "text": "deploy at 5"})

It imports neither gevent nor the server (a Flask or Django view, a Celery task, a cron
script, asyncio code through a thread), and one Emitter is shared by threads: redis-py's
client and its connection pool are thread-safe.

Whether a room is numbered is the app's setting, not the room's, so the Emitter is told:
`numbered=True` when the app has resumption on (with its `history`, `history_ttl` and
`retained_rooms`, the ResumePolicy's, which the script needs for the room's keys). Every
broadcast then goes through the same script as the nodes' own (scale/redis_wire.py): it
gets its seq and epoch, is kept for replay, and reaches every node in seq order. Otherwise
it is one PUBLISH of the frame, in the backplane's format, under this Emitter's own random
origin id (no node takes it for its own echo).

`idempotency_key`: the same key within `idempotency_ttl` seconds is published once (SET NX
EX in the same script call as the publish). Redis down: `BackplaneUnavailable` within
about `timeout` seconds, never a hang.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import BackplaneUnavailable
from .protocol.frames import Opcode, encode_frame
from .protocol.redact import mask_url
from .scale.redis_wire import APPEND, FRAME, IDEMPOTENT, stream_keys

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Emitted", "Emitter"]

# A plain broadcast with an idempotency key: the guard, then the PUBLISH (-1: a repeat).
_PUBLISH = IDEMPOTENT + "return redis.call('PUBLISH', ARGV[1], ARGV[2])"


@dataclass(frozen=True)
class Emitted:
    """What a broadcast did. Deliveries are unknown (they happen on the nodes); `nodes`:
    how many nodes received the PUBLISH (those with members in the room, or lingering);
    `seq`/`epoch`: the broadcast's place in a numbered room; `duplicate`: the idempotency
    key was seen already, nothing was published."""

    nodes: int
    seq: int | None = None
    epoch: str | None = None
    duplicate: bool = False


class Emitter:
    """See the module's docstring."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "wsa",
        timeout: float = 2.0,
        numbered: bool = False,
        history: int = 1000,
        history_ttl: float = 300.0,
        retained_rooms: int = 5_000,
        idempotency_ttl: int = 300,
    ) -> None:
        """`key_prefix`: the RedisBackplane's `prefix`; `numbered` and the history settings:
        the app's ResumePolicy (`history`, `history_ttl`, `retained_rooms`)."""
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"an Emitter needs a redis:// URL, not {mask_url(url)!r}")
        self.url = url
        self.timeout = timeout
        self.key_prefix = key_prefix
        self.numbered = numbered
        self.history = history
        self.retention = max(1, int(history_ttl))
        self.retained = retained_rooms
        self.idempotency_ttl = idempotency_ttl
        self.origin = secrets.token_hex(8)  # 16 hex digits, like a node id: never a node's
        self._header = FRAME + self.origin.encode()
        self._epochs = itertools.count(1)  # fresh epochs offered to the script (thread-safe)
        # No retries: a failed command raises at once, so the caller's wait is bounded by `timeout`.
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self._append = self._client.register_script(IDEMPOTENT + APPEND)
        self._append_once = self._client.register_script(APPEND)
        self._publish_once = self._client.register_script(_PUBLISH)

    def __repr__(self) -> str:
        return f"<Emitter {mask_url(self.url)} prefix={self.key_prefix!r} numbered={self.numbered}>"

    def close(self) -> None:
        """Close the pooled connections (also done when the Emitter is collected)."""
        self._client.close()

    def broadcast(
        self, room: str, message: BaseModel | dict[str, Any], *, idempotency_key: str | None = None
    ) -> Emitted:
        """Send `message` (a pydantic model, or a dict with a "type") to every member of
        `room` on every node. Raises BackplaneUnavailable when Redis cannot be reached."""
        text, has_room = _to_json(message)
        guard = [f"{self.key_prefix}:idempotency:{idempotency_key}"] if idempotency_key is not None else []
        try:
            if self.numbered:
                return self._numbered(room, text, has_room, guard)
            return self._plain(room, text, guard)
        except redis.RedisError as exc:
            raise BackplaneUnavailable(f"Redis at {mask_url(self.url)} is unreachable: {exc}") from exc

    def _plain(self, room: str, text: str, guard: list[str]) -> Emitted:
        channel = f"{self.key_prefix}:room:{room}"
        frame = self._header + encode_frame(Opcode.TEXT, text.encode("utf-8"))  # encoded once
        if not guard:
            return Emitted(nodes=int(self._client.publish(channel, frame)))
        nodes = int(self._publish_once(keys=guard, args=[channel, frame, self.idempotency_ttl]))
        return Emitted(nodes=0, duplicate=True) if nodes < 0 else Emitted(nodes=nodes)

    def _numbered(self, room: str, text: str, has_room: bool, guard: list[str]) -> Emitted:
        # The head is stamped like the nodes' (typed/history.py stamp_head): "room" added when
        # the message has none, then the script writes the seq and the epoch.
        stamp = ',"seq":' if has_room else f',"room":{json.dumps(room)},"seq":'
        head = text[:-1] + stamp
        args: list[Any] = [
            f"{self.origin}{next(self._epochs):x}", head, self.history, "", "",
            f"{self.key_prefix}:room:{room}", room, self.retention, self.retained, time.time(),
            f"{self.key_prefix}:",
        ]  # fmt: skip  # no skip key, no origin: like the app's own broadcast with no sender
        keys = list(stream_keys(self.key_prefix, room))
        if guard:
            reply = self._append(keys=[*keys, *guard], args=[*args, self.idempotency_ttl])
            if reply == -1:
                return Emitted(nodes=0, duplicate=True)
        else:
            reply = self._append_once(keys=keys, args=args)
        seq, _dropped, epoch, nodes = reply
        return Emitted(nodes=int(nodes), seq=int(seq), epoch=epoch.decode())


def _to_json(message: Any) -> tuple[str, bool]:
    """The message's JSON text as the server sends it (a model without `id` when that is
    None), and whether it has a "room" of its own."""
    if isinstance(message, dict):
        if not isinstance(message.get("type"), str):
            raise ValueError('a message given as a dict needs a "type" (a string)')
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False), "room" in message
    serializer = getattr(message, "__pydantic_serializer__", None)
    if serializer is None:
        raise TypeError(f"a message is a pydantic model or a dict, not {type(message).__name__}")
    exclude = {"id"} if getattr(message, "id", 0) is None else None
    text: str = serializer.to_json(message, exclude=exclude).decode()
    return text, "room" in type(message).__pydantic_fields__
