"""Dormant actors: an idle connection keeps its read watcher, not a greenlet.

A parked greenlet keeps the C stack it used when it switched out, and CPython keeps a page of
its frames resident: most of what an idle connection costs. So a connection actor with nothing
to do ends its greenlet (`go_dormant`): its read watcher stays armed, with the inline reader's
callback or `Connection._revive`, and bytes, a close or an abort start a new greenlet
(`_revive`) that takes up where the last one parked. Mail is written from the hub when the
socket takes it at once (`send_from_hub`), else it starts a greenlet too. The contract is the
same as a parked actor's: one greenlet at a time owns the socket, messages keep their order,
the mailbox stays bounded. The new greenlet runs in the last one's context, so contextvars
set in a hook stay set; greenlet-local storage (`gevent.local`) does not carry over.

When: the greenlet that ran the opening handshake ends at its first park. Later, an actor keeps
its greenlet between wake-ups, so a busy connection never pays for a new one per message;
`IdleSweep` (one timer per server, in the hub) ends the greenlet of an actor that read nothing
and got no mail for a whole `SWEEP_INTERVAL`: at most one new greenlet per interval per
connection.

Functions of the connection, like inline.py's: this job in a module of its own, without a
level of calls on the way of a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from gevent import getcurrent
from gevent.hub import get_hub

from .inline import flush_inline
from .transport import HANDOFF, READABLE, SLEEP, WAIT_READ

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["SWEEP_INTERVAL", "IdleSweep", "go_dormant", "look_at", "send_from_hub"]

# Seconds between two looks of the sweep: an actor quiet for one to two of them goes dormant.
SWEEP_INTERVAL: Final = 1.0


def go_dormant(conn: Connection, reader: Callable[[Connection], None] | None) -> None:
    """In the actor, which then ends its greenlet: the read watcher stays armed (with `reader`,
    the inline reader's callback, or `_revive`); mail goes to `Connection._mail_dormant`."""
    conn._context = getcurrent().gr_context  # the next greenlet's: contextvars carry over
    conn._greenlet = conn._owner = None
    watcher = conn._read_watcher
    if reader is None:
        watcher.start(conn._revive, READABLE)
    else:
        watcher.start(reader, conn)
    conn._wait_state = WAIT_READ


def send_from_hub(conn: Connection) -> bool:
    """Mail for a dormant actor, in the hub: encode it and try one non-blocking send, so that
    a push to an idle connection starts no greenlet. False when the actor must see to it (a
    close, an abort); the part of a write the socket did not take, or a failure, is handed to
    a new greenlet (HANDOFF). Only the hub runs meanwhile, so it owns the socket as the
    inline reader does."""
    if conn._closing or conn._abort_reason is not None or conn._write_pending:
        return False
    try:
        # None when it all went (or nothing was queued), else the rest of a half-sent frame
        # or the socket's failure: the actor's to take up
        conn._handoff = flush_inline(conn)
    except Exception as exc:  # a bug: the actor fails the connection with it
        conn._handoff = exc
    if conn._handoff is not None:
        conn._revive(HANDOFF)
    return True


def look_at(conn: Connection) -> None:
    """The sweep's look, in the hub: an actor parked on reading that read nothing and got no
    mail (`_do_wake` resets the mark) since the last look goes dormant."""
    count = conn.recv_count
    if (
        conn._idle_mark == count
        and conn._greenlet is not None
        and conn._wait_state == WAIT_READ
        and conn._open
        and not conn._closing
        and conn._close_deadline is None
        and conn._abort_reason is None
        and not conn._wake_scheduled
        and not conn._outbox
        and not conn._close_holds
        and conn._handoff is None
    ):
        # Parked in its message loop's wait (no deadline, so neither a handshake's nor a
        # close's): it ends its greenlet and switches back here.
        conn._greenlet.switch(SLEEP)
    conn._idle_mark = count


class IdleSweep:
    """A repeating timer of the hub that looks at every open connection once per interval."""

    __slots__ = ("_connections", "_interval", "_timer")

    def __init__(
        self, connections: Callable[[], Iterable[Connection]], interval: float = SWEEP_INTERVAL
    ) -> None:
        self._connections = connections
        self._interval = interval
        self._timer: Any = None

    def start(self) -> None:
        timer = self._timer = get_hub().loop.timer(self._interval, self._interval)
        timer.start(self.sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def sweep(self) -> None:
        for conn in list(self._connections()):
            look_at(conn)
