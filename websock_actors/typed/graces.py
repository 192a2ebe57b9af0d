"""Graces: the sessions of closed connections, waiting for their resume.

A resumable close keeps the session for `grace` seconds: a timer each. When it runs out, the
node that claims the grace in the session store reports the member as gone (the others
forget it quietly). If the store loses its sessions (a Redis restart), the graces still
running are written again for what is left of them.

`by_user` indexes the graces by user (`user_address` of the record's identity), so that
`disconnect_user` ends a user's sessions in grace too (`end_user`), in O(its sessions); the
user's channel stays wanted while it has some (`Users`, told by `user_done`).
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
from .users import user_address

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
        self.by_user: dict[str, set[str]] = {}  # user address -> tokens of its graces here
        self.user_done: Callable[[str], None] | None = None  # a user's last grace here ended
        self.ended = 0  # members reported as left when their grace ran out

    def start(self, token: str, conn: Connection, record: SessionRecord, grace: float) -> None:
        timer = gevent.spawn_later(grace, self._over, token)
        self.running[token] = Grace(conn, timer, record, time.time() + grace)
        user = user_address(record.identity)
        if user is not None:
            self.by_user.setdefault(user, set()).add(token)

    def take(self, token: str) -> Grace | None:
        """A resume takes the session: its grace ends here, without a word to the rooms."""
        grace = self.running.pop(token, None)
        if grace is not None:
            grace.timer.kill(block=False)
            self._unindex(token, grace)
        return grace

    def _unindex(self, token: str, grace: Grace) -> None:
        user = user_address(grace.record.identity)
        tokens = self.by_user.get(user) if user is not None else None
        if user is None or tokens is None:
            return
        tokens.discard(token)
        if not tokens:
            del self.by_user[user]
            if self.user_done is not None:
                self.user_done(user)

    def end_user(self, user: str) -> int:
        """The sessions of `user` in their grace here end now (`disconnect_user`): taken out
        of the store, so that a resume of them is refused, and their members leave the
        rooms (reported by whoever claims the grace). Returns how many."""
        ended = 0
        for token in list(self.by_user.get(user, ())):
            grace = self.take(token)
            if grace is None:
                continue
            mine = True  # Redis away: nobody else can report it
            try:
                self._sessions().take(token)
                mine = self._sessions().claim_grace(token)
            except BackplaneUnavailable as exc:
                log.warning("session %s of user %r not ended in the store: %s", grace.record.sid, user, exc)
            self._member_gone(grace.conn, mine)
            ended += 1
        return ended

    def stop(self) -> None:
        """The server stops: graces still running end with it (other nodes end them with Redis)."""
        for grace in self.running.values():
            grace.timer.kill(block=False)
        self.running.clear()
        self.by_user.clear()

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
        self._unindex(token, grace)
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
