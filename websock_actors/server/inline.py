"""Messages handed to the application, by the actor or inline, in the hub.

`deliver` gives a read's messages to the application's `handle_message` and queues the pongs
owed. The actor calls it from its loop; for an app whose handler never blocks
(`Application.inline`) the hub calls it too, from `on_readable`, the read watcher's callback
while the actor is parked: read, decode, deliver and write with no switch into the actor and
back. What the hub may not do (wait for the socket, close, fail) is handed off to the actor.
`read_and_deliver` is that work, shared with the runner of runner.py, which does it in a
greenlet that may wait.

Functions of the connection rather than methods, so that this job has a module of its own
without a level of calls per message (a mixin would have to declare Connection's attributes).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from gevent.exceptions import BlockingSwitchOutError

from ..errors import CloseCode
from ..protocol.connection import BinaryMessage, Event, PingReceived, ProtocolFailure, TextMessage
from .transport import HANDOFF, NOT_WAITING, WAIT_READ, TransportGone

if TYPE_CHECKING:
    from .connection import Connection

__all__ = [
    "STAY", "Handoff", "deliver", "deliver_message", "flush_inline", "on_readable", "read_and_deliver",
    "take_handoff",
]  # fmt: skip

log = logging.getLogger("websock_actors")

# What the inline reader leaves to the actor, in `Connection._handoff`, for `take_handoff`:
#   list[Event]  the rest of a read, which the actor delivers in order: from its first
#                control frame on, or after replies that passed the mailbox's bound;
#   memoryview   the part of a write the socket did not take, which the actor finishes;
#   Exception    what failed in the hub, which the actor raises (a TransportGone, a bug);
#   None         nothing: the actor's own loop finds the end of the stream, an abort or a close.
Handoff = list[Event] | memoryview | Exception | None

# What `read_and_deliver` returns when the actor stays parked: nothing to hand off.
STAY: Final = object()


def on_readable(conn: Connection) -> None:
    """The read watcher's callback while the actor is parked inline: read, decode and deliver
    in the hub (see `read_and_deliver`), handing off to the actor what the hub may not do."""
    what = read_and_deliver(conn, conn._hub)
    if what is not STAY:
        _hand_off(conn, what)  # type: ignore[arg-type]


def read_and_deliver(conn: Connection, owner: object) -> Handoff | object:
    """Read, decode and deliver on the parked actor's behalf, as `owner` (the hub, or the
    shared runner's greenlet): STAY when that was all there was, else what the actor must take
    up (see Handoff).

    Data messages are delivered here. The rest of the read from the first event of another
    kind (a ping, a close, a protocol error), the end of the stream, an abort or close
    requested, replies past the mailbox's bound (the rest of the read then waits), a write
    the socket does not take whole, or an error is handed off to the actor, which takes it
    up where its own loop would.
    """
    protocol = conn._protocol
    assert protocol is not None
    options = conn.options
    wanted = protocol.bytes_wanted
    size = options.read_size
    received = conn._recv_nowait(wanted if wanted > size else size)
    if received is None:
        return STAY  # nothing after all; the watcher stays
    if not received:
        return None  # the end of the stream: the actor's own read finds it
    options.stats.bytes_received += len(received)
    conn._wait_state = NOT_WAITING  # the actor's own sends below need not wake it
    conn._owner = owner
    stay = True  # all there was is done: the actor stays parked
    handoff: Handoff = None
    try:
        conn._close_holds += 1  # a drain's close waits for these messages' replies
        text = protocol.single_text(received)  # the common read: one short text, no events
        if text is not None:
            conn.recv_count += 1
            deliver_message(conn, text)
        else:
            events = protocol.receive_data(received)
            if deliver(conn, events, options.max_queue_bytes):
                conn.recv_count += 1
            events = []  # no reference to the last message while parked
        conn.release_close()
        if conn._handoff is not None:
            # A control frame, or replies past the mailbox's bound: the actor takes the rest
            # of the read (writing what is queued first, waiting for the socket if need be).
            stay = False
            handoff, conn._handoff = conn._handoff, None
        elif conn._abort_reason is not None or conn._closing:
            stay = False
        elif conn._outbox:
            rest = flush_inline(conn)
            if rest is not None:
                stay = False
                handoff = rest
    except Exception as exc:  # the actor fails the connection with it
        stay = False
        handoff = exc
    finally:
        conn._owner = conn._greenlet
        conn._wait_state = WAIT_READ
    return STAY if stay else handoff


def flush_inline(conn: Connection) -> memoryview | TransportGone | None:
    """What the mailbox holds, written with one non-blocking send on the parked actor's behalf
    (from the hub or the runner): None when it all went (or nothing was queued), else what
    the actor must still write, or the socket's failure."""
    data = conn._take_outbox()
    if not data:
        return None
    conn.options.stats.bytes_sent += len(data)
    try:
        sent = conn._send_some(data)
    except TransportGone as gone:
        return gone
    if sent == len(data):
        return None
    conn._write_pending = True
    return memoryview(data)[sent:]


def _hand_off(conn: Connection, what: Handoff) -> None:
    """Switch into the parked actor with what the inline callback leaves to it (a new
    greenlet for a dormant one)."""
    conn._handoff = what
    actor = conn._greenlet
    if actor is None:
        conn._revive(HANDOFF)
    else:
        actor.switch(HANDOFF)


def take_handoff(conn: Connection) -> list[Event] | None:
    """In the actor, after a HANDOFF: events to deliver, or None; a blocked write is finished
    first, an error raised."""
    what, conn._handoff = conn._handoff, None
    if isinstance(what, memoryview):
        conn._write_rest(what, conn._close_deadline)
        return None
    if isinstance(what, Exception):
        raise what
    return what


def deliver(conn: Connection, events: list[Event], bound: int = 0) -> bool:
    """Hand the messages to the application, queue pongs; True if there were events.

    With a `bound` (inline, or in the shared runner: neither may do what the actor does for
    a control frame, nor wait for the socket), delivery stops at the first event that is not
    a data message, or once the mailbox holds more than `bound` bytes; the events not
    delivered are left in `_handoff` for the actor, in order."""
    if not events:
        return False
    pending = iter(events)
    for event in pending:
        kind = type(event)
        if kind is TextMessage or kind is BinaryMessage:
            deliver_message(conn, event.data)  # type: ignore[union-attr]
            if bound and conn._queued > bound:
                rest = list(pending)
                if rest:
                    conn._handoff = rest
                break
        elif bound:
            conn._handoff = [event, *pending]
            break
        elif kind is PingReceived:
            # The pong goes out in order with replies to messages around it.
            assert conn._protocol is not None
            conn._outbox.extend(conn._protocol.data_to_send())
        elif kind is ProtocolFailure:
            log.debug("%r: protocol error: %s", conn, event.reason)  # type: ignore[union-attr]
    return True


def deliver_message(conn: Connection, message: str | bytes) -> None:
    """One text (`str`) or binary message to the application's handler, unless a close was
    asked for; a handler that fails (or blocks in the hub) aborts the connection with 1011."""
    if conn._closing:
        return
    stats = conn.options.stats
    if type(message) is str:
        stats.messages_text += 1
    else:
        stats.messages_binary += 1
    try:
        conn.app.handle_message(conn, message)
    except BlockingSwitchOutError:
        log.error("%r: an inline message handler blocked; declare the app inline=False", conn)
        conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
    except Exception:
        log.exception("%r: message handler failed", conn)
        conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
