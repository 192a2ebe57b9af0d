"""The Emitter over Redis: straight into the backplane, in the nodes' own wire
(scale/redis_wire.py), under the Emitter's own random origin id (no node takes a publish for
its own echo).

A plain broadcast is one PUBLISH of the frame on the room's channel. A numbered one
(`numbered=True`: the app has a ResumePolicy) goes through the same script as the nodes'
broadcasts (with no run_id: the script asks Redis for it, redis_wire.py APPEND): it gets its
seq and epoch, is kept for replay, and reaches every node in seq order. `send_to_user`
publishes the frame (`U`) and `disconnect_user` the close (`X`) on the user's channel, which
every node with a connection of that user listens to. The URL may be `redis+sentinel://`
(scale/redis_urls.py): redis-py's Sentinel pool then finds the master.

An idempotency key is `SET NX EX` in the same script call as the publish. redis-py's client
and its pool are thread-safe; no retries, so a failure raises within about `timeout`.
"""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

import redis

from ..errors import BackplaneUnavailable
from ..protocol.frames import Opcode, encode_frame
from ..protocol.redact import mask_url
from ..scale.redis_urls import sync_client
from ..scale.redis_wire import (
    APPEND,
    FRAME,
    IDEMPOTENT,
    USER_CLOSE,
    USER_FRAME,
    append_args,
    idempotency_key,
    room_channel,
    stream_keys,
    user_channel,
)
from .emitted import Emitted

__all__ = ["RedisTransport"]

# A PUBLISH with an idempotency key: the guard, then the PUBLISH (-1: a repeat).
_PUBLISH = IDEMPOTENT + "return redis.call('PUBLISH', ARGV[1], ARGV[2])"


class RedisTransport:
    """See the module's docstring; the options are the Emitter's."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        timeout: float,
        numbered: bool,
        history: int,
        history_ttl: float,
        retained_rooms: int,
        idempotency_ttl: int,
    ) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self.numbered = numbered
        self.history = history
        self.retention = max(1, int(history_ttl))
        self.retained = retained_rooms
        self.idempotency_ttl = idempotency_ttl
        self.origin = secrets.token_hex(8)  # 16 hex digits, like a node id: never a node's
        self._origin = self.origin.encode()
        self._epochs = itertools.count(1)  # fresh epochs offered to the script (thread-safe)
        self._client = sync_client(url, timeout)  # also redis+sentinel://
        self._append = self._client.register_script(IDEMPOTENT + APPEND)
        self._append_once = self._client.register_script(APPEND)
        self._publish_once = self._client.register_script(_PUBLISH)

    def close(self) -> None:
        self._client.close()

    def broadcast(self, room: str, text: str, has_room: bool, once: str | None) -> Emitted:
        if self.numbered:
            return self._call(self._numbered, room, text, has_room, once)
        frame = FRAME + self._origin + encode_frame(Opcode.TEXT, text.encode("utf-8"))  # encoded once
        return self._call(self._publish, room_channel(self.key_prefix, room), frame, once)

    def send_to_user(self, key: str, text: str, once: str | None) -> Emitted:
        data = USER_FRAME + self._origin + encode_frame(Opcode.TEXT, text.encode("utf-8"))
        return self._call(self._publish, user_channel(self.key_prefix, key), data, once)

    def disconnect_user(self, key: str, code: int, reason: str, once: str | None) -> Emitted:
        data = b"%b%b%d %b" % (USER_CLOSE, self._origin, code, reason.encode("utf-8"))
        return self._call(self._publish, user_channel(self.key_prefix, key), data, once)

    def _call(self, method: Any, *args: Any) -> Emitted:
        try:
            result: Emitted = method(*args)
        except redis.RedisError as exc:
            raise BackplaneUnavailable(f"Redis at {mask_url(self.url)} is unreachable: {exc}") from exc
        return result

    def _guard(self, once: str | None) -> list[str]:
        return [] if once is None else [idempotency_key(self.key_prefix, once)]

    def _publish(self, channel: str, data: bytes, once: str | None) -> Emitted:
        if once is None:
            return Emitted(nodes=int(self._client.publish(channel, data)))
        nodes = int(self._publish_once(keys=self._guard(once), args=[channel, data, self.idempotency_ttl]))
        return Emitted(nodes=0, duplicate=True) if nodes < 0 else Emitted(nodes=nodes)

    def _numbered(self, room: str, text: str, has_room: bool, once: str | None) -> Emitted:
        # The head is stamped like the nodes' (typed/history.py stamp_head): "room" added when
        # the message has none, then the script writes the seq and the epoch.
        stamp = ',"seq":' if has_room else f',"room":{json.dumps(room)},"seq":'
        head = text[:-1] + stamp
        # No skip key, no origin (the app's own broadcast with no sender), no run_id (INFO).
        epoch = f"{self.origin}{next(self._epochs):x}"
        args = append_args(
            self.key_prefix, room, epoch, head, self.history, "", "", self.retention, self.retained, ""
        )
        keys = list(stream_keys(self.key_prefix, room))
        if once is not None:
            reply = self._append(keys=[*keys, *self._guard(once)], args=[*args, self.idempotency_ttl])
            if reply == -1:
                return Emitted(nodes=0, duplicate=True)
        else:
            reply = self._append_once(keys=keys, args=args)
        seq, _dropped, epoch, nodes = reply
        return Emitted(nodes=int(nodes), seq=int(seq), epoch=epoch.decode())
