"""Users as addresses: every connection of one identity, on this node and (with a
backplane) on every node.

An identity is what `@app.authenticate` returned (`ctx.identity`): a str, or an int (which
addresses as its decimal text). Connections of other identities (None, a dict) cannot be
addressed. The index identity -> connections is kept as connections open and close (one
dict operation each); with a backplane that offers `user_channels` (the Redis one does),
the node also listens on the user's channel while it has a connection of that user, and
`send_to_user`/`disconnect_user` publish there for the other nodes. With resumption, it
listens while the user has sessions in grace here too (typed/graces.py), which
`disconnect_user` ends as well: on every node, a resume of them is refused.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from ..errors import BackplaneUnavailable
from ..protocol.connection import close_payload
from ..server.broadcast import encode_broadcast
from .messages import to_json, user_address, user_key

if TYPE_CHECKING:
    from ..server.connection import Connection
    from .services import HandlerServices

__all__ = ["UserAddressing", "UserChannels", "UserSink", "Users", "user_address", "user_key"]

log = logging.getLogger("websock_actors")

DISCONNECT_CODE = 4000


class UserSink(Protocol):
    """What a backplane hands the messages of the user channels to (the App's `Users`)."""

    def send_here(self, key: str, frame: bytes) -> int: ...

    def disconnect_here(self, key: str, code: int, reason: str) -> int: ...


class UserChannels(Protocol):
    """A backplane's channel per user (scale/redis_users.py): listened to while the user has
    a connection here; what is published there reaches the other nodes' `sink`."""

    sink: UserSink | None

    def want(self, key: str) -> None:
        """Return once this node receives the user's channel (BackplaneUnavailable: it does not)."""
        ...

    def release(self, key: str) -> None: ...

    def publish_frame(self, key: str, frame: bytes) -> None: ...

    def publish_close(self, key: str, code: int, reason: str) -> None: ...


class Users:
    """The connections of each identity on this node (see the module's docstring)."""

    def __init__(self, services: HandlerServices) -> None:
        self.services = services
        self.index: dict[str, set[Connection]] = {}

    def channels(self) -> UserChannels | None:
        """The backplane's user channels (None in process); their messages come to us."""
        channels: UserChannels | None = getattr(self.services.rooms, "user_channels", None)
        if channels is not None and channels.sink is None:
            channels.sink = self
        return channels

    def opened(self, conn: Connection) -> None:
        request = conn.request
        key = user_address(request.identity if request is not None else None)
        if key is None:
            return
        conns = self.index.get(key)
        if conns is None:
            conns = self.index[key] = set()
            channels = self.channels()
            if channels is not None:
                try:
                    channels.want(key)
                except BackplaneUnavailable as exc:  # reachable here only, until it connects again
                    log.warning("%r: the channel of user %r is not subscribed: %s", conn, key, exc)
        conns.add(conn)

    def closed(self, conn: Connection) -> None:
        request = conn.request
        key = user_address(request.identity if request is not None else None)
        if key is None:
            return
        conns = self.index.get(key)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        if not conns:
            del self.index[key]
            resumption = self.services.resumption
            if resumption is None or key not in resumption.graces.by_user:  # else: when they end
                self._release(key)

    def graces_over(self, key: str) -> None:
        """The user's last session in grace here ended (Graces.user_done)."""
        if key not in self.index:
            self._release(key)

    def _release(self, key: str) -> None:
        channels = self.channels()
        if channels is not None:
            channels.release(key)

    def send_here(self, key: str, frame: bytes) -> int:
        delivered = 0
        for conn in list(self.index.get(key, ())):
            if conn.send_frame(frame):
                delivered += 1
        return delivered

    def disconnect_here(self, key: str, code: int, reason: str) -> int:
        """Close the user's connections here; with resumption, their sessions end first, and
        those in grace here end too."""
        conns = list(self.index.get(key, ()))
        resumption = self.services.resumption
        for conn in conns:
            if resumption is not None:
                resumption.end(conn)
            conn.close(code, reason)
        if resumption is not None and key in resumption.graces.by_user:
            resumption.graces.end_user(key)  # its sessions whose connections are gone already
        return len(conns)

    def send(self, identity: Any, message: BaseModel) -> int:
        key = user_key(identity)
        if not isinstance(message, BaseModel):
            raise TypeError(f"a message is a pydantic model, not {type(message).__name__}")
        frame = encode_broadcast(to_json(message))
        delivered = self.send_here(key, frame)
        channels = self.channels()
        if channels is not None:
            channels.publish_frame(key, frame)
        return delivered

    def disconnect(self, identity: Any, code: int, reason: str) -> int:
        key = user_key(identity)
        close_payload(code, reason)  # a bad code or a long reason: ValueError, before anything
        closed = self.disconnect_here(key, code, reason)
        channels = self.channels()
        if channels is not None:
            channels.publish_close(key, code, reason)
        return closed


class UserAddressing:
    """The App's methods that address users (a base class of App: one job per file)."""

    services: HandlerServices

    def send_to_user(self, identity: Any, message: BaseModel) -> int:
        """Send a model to every connection of `identity` (`ctx.identity`), on every node:
        framed once. Returns the deliveries queued on this node (other nodes' are not known:
        0 does not mean nobody got it). TypeError for an identity that is not a str or int."""
        return self.services.users.send(identity, message)

    def disconnect_user(self, identity: Any, code: int = DISCONNECT_CODE, reason: str = "") -> int:
        """Close every connection of `identity` with `code`, on every node; with resumption,
        their sessions cannot be resumed. Returns the connections closed on this node."""
        return self.services.users.disconnect(identity, code, reason)
