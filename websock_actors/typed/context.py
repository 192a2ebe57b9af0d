"""What a typed handler may do: reply, push, join and leave rooms, broadcast, close.

A `Context` is made per message; it knows the connection, the request's `id` (so a
reply carries it), and, inside a named actor, that actor's `actor_state`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..errors import CloseCode, ConnectionClosed
from ..protocol.http import Headers
from .messages import ErrorReply, MessageId, stamp_request_id, to_json

if TYPE_CHECKING:
    from ..server.connection import Connection
    from .services import HandlerServices

__all__ = ["Context"]


class Context:
    """The handler's view of its connection and of the rooms."""

    __slots__ = ("_actor_state", "_services", "conn", "pending", "replied", "request_id")

    def __init__(
        self, conn: Connection, services: HandlerServices, request_id: MessageId | None = None
    ) -> None:
        # Made per message: the app's rooms and error counts are reached through `services`,
        # made once per app.
        self.conn = conn
        self._services = services
        self.request_id = request_id
        self.replied = False
        self._actor_state: dict[str, Any] | None = None
        # Numbered broadcasts of this handler not kept yet: what it sends waits for them (the
        # dispatcher's handlers); None: a broadcast waits until it is kept (hooks, actors).
        self.pending: list[Any] | None = None

    @property
    def actor_state(self) -> dict[str, Any]:
        """Inside a named actor, that actor's state; elsewhere a dict of this message only."""
        state = self._actor_state
        if state is None:
            state = self._actor_state = {}
        return state

    @actor_state.setter
    def actor_state(self, state: dict[str, Any]) -> None:
        self._actor_state = state

    # -- about the connection ----------------------------------------------------------

    @property
    def id(self) -> int:
        """The connection's id (unique in this process)."""
        return self.conn.id

    @property
    def address(self) -> Any:
        return self.conn.address

    @property
    def headers(self) -> Headers:
        """The headers of the connection's upgrade request."""
        return self.conn.request.headers if self.conn.request is not None else Headers()

    @property
    def path(self) -> str:
        """The path of the connection's upgrade request, without its query string."""
        request = self.conn.request
        return request.bare_path if request is not None else "/"

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string of the upgrade request, parsed (`?token=a&room=b` ->
        `{"token": ["a"], "room": ["b"]}`, as `urllib.parse.parse_qs` gives it)."""
        request = self.conn.request
        return request.query if request is not None else {}

    @property
    def identity(self) -> Any:
        """What the app's `@app.authenticate` hook returned for this connection (None without one)."""
        request = self.conn.request
        return request.identity if request is not None else None

    @property
    def scheme(self) -> str:
        """"ws", or "wss" when a trusted proxy says the client connected with TLS."""
        request = self.conn.request
        return request.scheme if request is not None else "ws"

    @property
    def state(self) -> dict[str, Any]:
        """A dict for the application, one per connection."""
        return self.conn.state

    # -- talking -------------------------------------------------------------------------

    def reply(self, message: BaseModel) -> None:
        """Answer the request: the reply carries the request's `id`."""
        if self.request_id is not None:
            stamp_request_id(message, self.request_id)
        self.replied = True
        self.send(message)

    def send(self, message: BaseModel) -> None:
        """Push a message to this connection (dropped quietly once it is closed), after
        whatever waits for a broadcast of this connection to be kept."""
        text = to_json(message)
        dispatcher = self._services.dispatcher
        if dispatcher is not None and (self.pending or dispatcher.held):
            dispatcher.send_after(self, text)
            return
        try:
            self.conn.send(text)
        except ConnectionClosed:
            pass

    def error(
        self,
        code: str,
        detail: str = "",
        errors: list[dict[str, Any]] | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        """Answer with a typed error (the request's `id` included)."""
        self.replied = True
        self._services.count_error(code)
        reply = ErrorReply(
            id=self.request_id, code=code, detail=detail, errors=errors or [], retry_after_ms=retry_after_ms
        )
        self.send(reply)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        self.conn.close(code, reason)

    def send_to_user(self, identity: Any, message: BaseModel) -> int:
        """Send to every connection of `identity`, on every node (see `App.send_to_user`);
        returns the deliveries queued on this node."""
        return self._services.users.send(identity, message)

    # -- rooms -----------------------------------------------------------------------------

    def join(self, room: str, presence: Any = None) -> bool:
        """Join `room`, shown to `presence(room)` as `presence` (JSON-able, e.g. a name);
        False when already a member. Past the app's `max_rooms`: `too_many_rooms`. With a
        backplane: `BackplaneUnavailable` (not joined) when it is down."""
        return self._services.join(self.conn, room, presence)

    def leave(self, room: str) -> bool:
        """Leave `room`; False when not a member."""
        return self._services.leave(self.conn, room)

    @property
    def rooms(self) -> set[str]:
        self._services.check_rooms()
        return self._services.rooms.rooms_of(self.conn)

    def in_room(self, room: str) -> bool:
        self._services.check_rooms()
        return self._services.rooms.is_member(self.conn, room)

    def members(self, room: str) -> list[Connection]:
        """The members of `room` in this process (with a backplane, others live elsewhere)."""
        self._services.check_rooms()
        return self._services.rooms.members(room)

    def presence(self, room: str) -> list[Any]:
        """What every member of `room` showed when joining, in every process, in join order."""
        self._services.check_rooms()
        return self._services.rooms.presence(room)

    def broadcast(self, room: str, message: BaseModel, exclude_self: bool = False) -> int:
        """Send to every member of `room`: serialized and framed once, the same bytes for all.

        A member whose mailbox is full is closed (1013) or skipped, by the server's
        overflow policy; the broadcast never waits for it. With resumption on, the message
        carries the room's `seq` and `epoch` (and `room`) and is kept in the room's history.
        Returns the deliveries queued
        in this process. With a backplane, the same frame goes to the other processes with
        members; when it is down, `BackplaneUnavailable` is raised after the local delivery.
        """
        return self._services.send_to_room(room, message, self.conn if exclude_self else None, self.pending)
