"""Graces: the sessions of closed connections, waiting for their resume.

A resumable close keeps the session for `grace` seconds: a timer each. When it runs out, the
node that claims the grace in the session store reports the member as gone (the others
forget it quietly). If the store loses its sessions (a Redis restart), the graces still
running are written again for what is left of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent

from ..errors import BackplaneUnavailable
from .sessions import SessionRecord, SessionStore

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["Grace", "Graces", "encoded"]

log = logging.getLogger("websock_actors")

# What the App does when a member is gone: leave its rooms, reported (on_disconnect) or not.
MemberGone = Callable[["Connection", bool], None]


@dataclass
class Grace:
    """A closed connection's session waiting for its resume: the timer that ends the grace,
    the record (written again if the store loses it), and when the grace ends."""

    conn: Connection
    timer: gevent.Greenlet[Any, Any]
    record: SessionRecord
    ends: float


class Graces:
    """The graces running in this process, by session token."""

    def __init__(self, sessions: Callable[[], SessionStore], window: float, member_gone: MemberGone) -> None:
        self._sessions = sessions  # the app's session store, read when needed
        self._window = window
        self._member_gone = member_gone
        self.running: dict[str, Grace] = {}
        self.ended = 0  # members reported as left when their grace ran out

    def start(self, token: str, conn: Connection, record: SessionRecord, grace: float) -> None:
        timer = gevent.spawn_later(grace, self._over, token)
        self.running[token] = Grace(conn, timer, record, time.time() + grace)

    def take(self, token: str) -> Grace | None:
        """A resume takes the session: its grace ends here, without a word to the rooms."""
        grace = self.running.pop(token, None)
        if grace is not None:
            grace.timer.kill(block=False)
        return grace

    def stop(self) -> None:
        """The server stops: graces still running end with it (other nodes end them with Redis)."""
        for grace in self.running.values():
            grace.timer.kill(block=False)
        self.running.clear()

    def restore(self) -> None:
        """The store lost the sessions in their grace: keep them again, for what is left of it."""
        now = time.time()
        for token, grace in list(self.running.items()):
            data = encoded(grace.record)
            if data is None:
                continue
            try:
                self._sessions().close(token, data, self._window, max(0.1, grace.ends - now), new=True)
            except BackplaneUnavailable as exc:
                log.debug("grace of session %s not restored: %s", grace.record.sid, exc)

    def _over(self, token: str) -> None:
        grace = self.running.pop(token, None)
        if grace is None:
            return
        conn = grace.conn
        while True:
            try:
                mine = self._sessions().claim_grace(token)
                break
            except BackplaneUnavailable as exc:  # the claim decides who reports: try again
                log.debug("grace of %r: %s", conn, exc)
                gevent.sleep(1.0)
        if mine:
            self.ended += 1
        self._member_gone(conn, mine)


def encoded(record: SessionRecord) -> bytes | None:
    """The record as stored; None (and a warning) when its state or identity is not JSON-able."""
    try:
        return record.dumps()
    except (TypeError, ValueError) as exc:
        log.warning("session %s not kept: its state is not JSON-able (%s)", record.sid, exc)
        return None
