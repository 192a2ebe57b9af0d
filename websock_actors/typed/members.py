"""What happens when a member comes and goes: the app's hooks about connections, and the
rooms a closed connection leaves.

A connection opens (`on_connect`, which may refuse it), closes (`on_disconnect`, then it
leaves its rooms; with resumption, only once its grace ran out), vanishes with its process
(`on_member_lost`, run by a surviving process), or resumes after its grace (`on_resume`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..errors import BackplaneUnavailable, CloseCode
from .context import Context
from .services import HandlerServices

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["MemberHooks"]

log = logging.getLogger("websock_actors")


class MemberHooks:
    """The member hooks of one App, run as its connections open, close and resume."""

    def __init__(self, services: HandlerServices) -> None:
        self.services = services
        self.on_connect: Callable[[Context], bool | None] | None = None
        self.on_disconnect: Callable[[Context], None] | None = None
        self.on_member_lost: Callable[[str, Any], BaseModel | None] | None = None
        self.on_resume: Callable[[Context, set[str]], None] | None = None

    def context(self, conn: Connection) -> Context:
        return Context(conn, self.services)

    def opened(self, conn: Connection) -> None:
        """The session first (its token is the first message), then `on_connect`."""
        self.services.users.opened(conn)
        resumption = self.services.resumption
        if resumption is not None:
            resumption.opened(conn)
        if self.on_connect is not None and self.on_connect(self.context(conn)) is False:
            conn.close(CloseCode.POLICY_VIOLATION, "refused")
        elif resumption is not None:
            resumption.connected(conn)

    def closed(self, conn: Connection, code: int) -> None:
        resumption = self.services.resumption
        kept = resumption.closed(conn, code) if resumption is not None else False
        self.services.users.closed(conn)  # after: a session kept in grace keeps the user's channel
        if kept:
            return  # kept for a resume: the member leaves when its grace ends
        self.gone(conn, kept is False)  # None: resumed elsewhere, no word

    def gone(self, conn: Connection, report: bool) -> None:
        """`conn` leaves its rooms; `report`: run `on_disconnect` first (it tells the rooms)."""
        try:
            if report and self.on_disconnect is not None:
                self.on_disconnect(self.context(conn))
        except BackplaneUnavailable as exc:  # logged and counted by the backplane
            log.debug("%r: on_disconnect: %s", conn, exc)
        except Exception:
            log.exception("%r: on_disconnect failed", conn)
        finally:
            self.services.forget(conn)

    def rejoined(self, ctx: Context, rooms: set[str]) -> None:
        if self.on_resume is not None:
            self.on_resume(ctx, rooms)

    def lost(self, room: str, presence: Any) -> None:
        """A member gone without a connection to close here: the app's message to the room."""
        if self.on_member_lost is not None:
            message = self.on_member_lost(room, presence)
            if message is not None:
                self.services.send_to_room(room, message)
