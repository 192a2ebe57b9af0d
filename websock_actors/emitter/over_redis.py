"""The Emitter over Redis: straight into the backplane, in the nodes' own wire
(scale/redis_wire.py), under the Emitter's own random origin id (no node takes a publish for
its own echo).

A plain broadcast is one PUBLISH of the frame on the room's channel. A numbered one
(`numbered=True`: the app has a ResumePolicy) goes through the same script as the nodes'
broadcasts (with no run_id: the script asks Redis for it, redis_wire.py APPEND): it gets its
seq and epoch, is kept for replay, and reaches every node in seq order. `send_to_user`
publishes the frame (`U`) and `disconnect_user` the close (`X`) on the user's channel, which
every node with a connection of that user listens to. The URL may be `redis+sentinel://`
(scale/redis_urls.py): redis-py's Sentinel pool then finds the master; or `redis+cluster://`:
redis-py's cluster client then routes by slot, the keys carry the rooms' hash tags and the
publishes are sharded (scale/redis_keys.py). On a cluster the Emitter passes no masters'
run_ids to the script: when it is the first to write to a room whose slot just migrated, the
room begins a new epoch (its members are told `room_lost`) rather than trust a list that may
be stale; the nodes' own catch-up after the move normally takes the epoch over first.

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
from ..scale.redis_keys import Keyspace
from ..scale.redis_urls import CLUSTER_SCHEME, sync_client
from ..scale.redis_wire import APPEND, FRAME, IDEMPOTENT, USER_CLOSE, USER_FRAME, append_args
from .emitted import Emitted

__all__ = ["RedisTransport"]

# A publish with an idempotency key: the guard, then the PUBLISH (or SPUBLISH: ARGV[3]) (-1: a repeat).
_PUBLISH = IDEMPOTENT + "return redis.call(ARGV[3], ARGV[1], ARGV[2])"


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
        self._client = sync_client(url, timeout)  # also redis+sentinel:// and redis+cluster://
        self._keys = Keyspace(key_prefix, cluster=url.startswith(CLUSTER_SCHEME))
        self._append = self._client.register_script(IDEMPOTENT + APPEND)
        self._append_once = self._client.register_script(APPEND)
        self._publish_once = self._client.register_script(_PUBLISH)

    def close(self) -> None:
        self._client.close()

    def broadcast(self, room: str, text: str, has_room: bool, once: str | None) -> Emitted:
        if self.numbered:
            return self._call(self._numbered, room, text, has_room, once)
        frame = FRAME + self._origin + encode_frame(Opcode.TEXT, text.encode("utf-8"))  # encoded once
        return self._call(self._publish, self._keys.channel(room), frame, once, room)

    def send_to_user(self, key: str, text: str, once: str | None) -> Emitted:
        data = USER_FRAME + self._origin + encode_frame(Opcode.TEXT, text.encode("utf-8"))
        return self._call(self._publish, self._keys.user(key), data, once, key)

    def disconnect_user(self, key: str, code: int, reason: str, once: str | None) -> Emitted:
        data = b"%b%b%d %b" % (USER_CLOSE, self._origin, code, reason.encode("utf-8"))
        return self._call(self._publish, self._keys.user(key), data, once, key)

    def _call(self, method: Any, *args: Any) -> Emitted:
        try:
            result: Emitted = method(*args)
        except redis.RedisError as exc:
            raise BackplaneUnavailable(f"Redis at {mask_url(self.url)} is unreachable: {exc}") from exc
        return result

    def _guard(self, once: str | None, near: str) -> list[str]:
        """The idempotency key's Redis key, if any: in the slot of `near` on a cluster."""
        return [] if once is None else [self._keys.idempotency(once, near)]

    def _publish(self, channel: bytes, data: bytes, once: str | None, near: str) -> Emitted:
        verb = self._keys.publish
        if once is None:
            publish = self._client.spublish if self._keys.cluster else self._client.publish
            return Emitted(nodes=int(publish(channel, data)))
        guard = self._guard(once, near)
        nodes = int(self._publish_once(keys=guard, args=[channel, data, verb, self.idempotency_ttl]))
        return Emitted(nodes=0, duplicate=True) if nodes < 0 else Emitted(nodes=nodes)

    def _numbered(self, room: str, text: str, has_room: bool, once: str | None) -> Emitted:
        # The head is stamped like the nodes' (typed/history.py stamp_head): "room" added when
        # the message has none, then the script writes the seq and the epoch.
        stamp = ',"seq":' if has_room else f',"room":{json.dumps(room)},"seq":'
        head = text[:-1] + stamp
        # No skip key, no origin (the app's own broadcast with no sender), no run_id (INFO).
        epoch = f"{self.origin}{next(self._epochs):x}"
        names = self._keys
        args = append_args(
            self.key_prefix, names.name(room), epoch, head, self.history, "", "", self.retention,
            names.retained(self.retained), "", names.publish,
        )  # fmt: skip
        keys = list(names.stream(room))
        if once is not None:
            reply = self._append(keys=[*keys, *self._guard(once, room)], args=[*args, self.idempotency_ttl])
            if reply == -1:
                return Emitted(nodes=0, duplicate=True)
        else:
            reply = self._append_once(keys=keys, args=args)
        seq, _dropped, epoch, nodes = reply
        return Emitted(nodes=int(nodes), seq=int(seq), epoch=epoch.decode())
