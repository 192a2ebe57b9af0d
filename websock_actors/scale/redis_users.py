"""A channel per user, `<key_prefix>:user:<identity>` (on a cluster behind a hash tag, and
sharded like the rooms' channels: scale/redis_keys.py), so that `send_to_user` and
`disconnect_user` reach a user's connections on every node.

A node listens on a user's channel while it has a connection of that user (and `linger`
seconds after), through a `Subscriber` of its own: the rooms' machinery (reconnects,
subscribe again, linger) with the user channels' prefix. A message is a 17-byte header
(kind, origin node) and either the frame, as it goes to the clients (`U`), or a close
(`X`: the code, a space, the reason): scale/redis_wire.py, shared with the Emitter. The
sender delivers on its own node first; Redis sends it its publish back, and the header
drops it unread.
"""

from __future__ import annotations

import logging

from ..typed.users import UserSink
from .redis_connect import MakeSubscriber, Subscribes
from .redis_io import Publishes
from .redis_keys import Keyspace
from .redis_wire import HEADER, USER_CLOSE, USER_FRAME

__all__ = ["RedisUsers"]

log = logging.getLogger("websock_actors")

class RedisUsers:
    """The `UserChannels` of a RedisBackplane (see the module's docstring)."""

    def __init__(
        self, subscriber: MakeSubscriber, publisher: Publishes, keys: Keyspace, node: str, rooms: Subscribes
    ) -> None:
        """`rooms`: the rooms' subscriber, whose linger and timeouts the user channels share."""
        self.sink: UserSink | None = None  # the App's Users, set on first use
        self._publisher = publisher
        self._node = node.encode()
        self._keys = keys
        self.wanted: set[str] = set()  # users with a connection here
        self.published = 0
        self.received = 0
        self.subscriber = subscriber(
            keys.user_prefix,
            on_message=self._on_message,
            on_subscribed=lambda key: None,
            on_unsubscribed=lambda key: None,
            rooms_wanted=lambda: self.wanted,
            linger=rooms.linger,
            join_timeout=rooms.join_timeout,
            ping_interval=rooms.ping_interval,
            max_backoff=rooms.max_backoff,
        )

    def start(self) -> None:
        self.subscriber.start()

    def stop(self) -> None:
        self.subscriber.stop()

    def want(self, key: str) -> None:
        self.wanted.add(key)
        self.subscriber.want(key)

    def release(self, key: str) -> None:
        self.wanted.discard(key)
        self.subscriber.release(key)

    def publish_frame(self, key: str, frame: bytes) -> None:
        """BackplaneUnavailable when Redis does not take it (delivered on this node only)."""
        self._publisher.publish(self._keys.user(key), USER_FRAME + self._node + frame)
        self.published += 1

    def publish_close(self, key: str, code: int, reason: str) -> None:
        data = b"%b%b%d %b" % (USER_CLOSE, self._node, code, reason.encode())
        self._publisher.publish(self._keys.user(key), data)
        self.published += 1

    def _on_message(self, key: str, data: bytes) -> None:
        if data[1:HEADER] == self._node or self.sink is None:
            return  # our own publish, delivered when it was sent
        self.received += 1
        kind, body = data[:1], data[HEADER:]
        try:
            if kind == USER_FRAME:
                self.sink.send_here(key, body)
            elif kind == USER_CLOSE:
                code, _, reason = body.partition(b" ")
                self.sink.disconnect_here(key, int(code), reason.decode())
        except Exception:
            log.exception("a message on the channel of user %r failed", key)
