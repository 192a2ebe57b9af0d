"""The connection actor: one greenlet that alone owns one socket and one protocol object.

Other greenlets never touch the socket: `send`, `send_frame`, `ping`, `close` and `abort`
put an item into the actor's mailbox (a plain list, bounded in bytes) and wake the actor
if it is parked. The actor drives the opening handshake (`opening.py`), then reads in large
chunks, feeds the codec, delivers whole messages to the application (`inline.py`, which also
does it in the hub for an inline app, and `runner.py`, in a greenlet shared by connections),
and writes everything queued in one `send` call (socket I/O in `transport.py`, the mailbox in
`mailbox.py`). An idle connection has no greenlet at all, no timer and no queue object:
its actor goes dormant (`dormancy.py`) and its read watcher, or mail, starts a new
greenlet for it when there is something to do.
"""

from __future__ import annotations

import _socket
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from greenlet import greenlet

from ..errors import CloseCode
from ..protocol.connection import ConnectionState, Event, WebSocketConnection
from ..protocol.deflate import CompressorPool, DeflateParameters
from ..protocol.http import Request, Response
from .dormancy import go_dormant, send_from_hub
from .inline import Handoff, deliver, on_readable, take_handoff
from .mailbox import Mailbox
from .opening import drive_handshake, open_connection
from .options import ConnectionOptions
from .runner import runner_for
from .transport import (
    HANDOFF,
    MAIL,
    NOT_WAITING,
    READABLE,
    SLEEP,
    TIMEOUT,
    WAIT_READ,
    Abort,
    TransportGone,
    WakeReason,
)

if TYPE_CHECKING:
    from .app import Application

__all__ = ["Connection"]

log = logging.getLogger("websock_actors")

_ids = itertools.count(1)


class Connection(Mailbox):
    """One WebSocket connection, run as an actor. Applications receive it as `conn`.

    Safe to call from any greenlet of the server's hub: `send`, `send_frame`, `ping`,
    `close`, `abort`. Attributes: `id`, `address`, `request` (the upgrade request, with
    its headers), `subprotocol`, `state` (a dict for the application), and `recv_count`
    (batches of bytes received, which keepalive watches).
    """

    __slots__ = (
        "__weakref__",
        "_answered",
        "_compressors",
        "_handoff",
        "_on_finish",
        "_on_handshake_end",
        "_on_open",
        "_on_received",
        "_on_request",
        "_state",
        "address",
        "app",
        "id",
        "recv_count",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        sock: _socket.socket,
        address: Any,
        app: Application,
        options: ConnectionOptions,
        *,
        on_open: Callable[[Connection], Response | None] | None = None,
        on_received: Callable[[Connection, bool], Response | None] | None = None,
        on_request: Callable[[Request], Response | None] | None = None,
        on_handshake_end: Callable[[Connection], None] | None = None,
        on_finish: Callable[[Connection], None] | None = None,
        recv_buffer: memoryview | None = None,
        compressors: CompressorPool | None = None,
    ) -> None:
        self.id = next(_ids)
        self.address = address
        self.app = app
        self.request: Request | None = None
        self.subprotocol: str | None = None
        self._state: dict[str, Any] | None = None  # made at first use: most never need one
        self.recv_count = 0
        self._on_open = on_open  # admission of an upgrade: capacity, the server's hook
        self._on_received = on_received  # the server's look at a request before the app's hooks
        self._on_request = on_request  # the server's hook, for a request without Upgrade
        self._on_handshake_end = on_handshake_end  # accepted, refused or answered
        self._on_finish = on_finish
        self._init_transport(sock, recv_buffer, options)
        self._init_mailbox()
        self._compressors = compressors  # permessage-deflate: the server's shared compressors
        # The handshake ended with a plain HTTP answer: True, then the connection closes;
        # on a kept-alive connection (opening.py) the bytes sent after the request answered.
        self._answered: bool | bytes = False
        # What the inline reader left to the actor (inline.py), between a HANDOFF and the
        # actor's take_handoff; None otherwise.
        self._handoff: Handoff = None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.address}>"

    # -- state -------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """A dict for the application, one per connection."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    @property
    def established(self) -> bool:
        """True once the opening handshake succeeded, closing or not."""
        return self._protocol is not None

    @property
    def compression(self) -> DeflateParameters | None:
        """The negotiated permessage-deflate parameters, or None when not compressed."""
        protocol = self._protocol
        if protocol is None or protocol.deflate is None:
            return None
        return protocol.deflate.params

    # -- the actor -----------------------------------------------------------------

    def run(self) -> None:
        """The actor's body: handshake, message loop, close. Runs in its own greenlet, which
        ends early when the actor goes dormant (another takes over: `_revive`)."""
        self._owner = self._greenlet = gevent.getcurrent()
        self._read_watcher = self._hub.loop.io(self._fd, 1)
        self._act(None, NOT_WAITING)

    def _act(self, rest: bytes | None, wake: int) -> None:
        """The handshake (`wake` 0) or a wake-up, the message loop, the close unless dormant."""
        code: int = CloseCode.ABNORMAL
        reason = ""
        ended = True
        try:
            if wake == NOT_WAITING:
                rest = open_connection(self)
            if rest is not None:
                # A plain call (not `*args`, which Python 3.11 does not inline): the greenlet
                # parks with a shallower C stack.
                served = self._serve(rest, wake)
                if served is None:
                    ended = False
                else:
                    code, reason = served
        except Abort as exc:
            code, reason = exc.code, exc.reason
            self._send_last_close(code, reason)
        except TransportGone:
            code, reason = CloseCode.ABNORMAL, ""
        except Exception:
            log.exception("%r: connection actor failed", self)
            code, reason = CloseCode.INTERNAL_ERROR, "internal error"
            self._send_last_close(code, reason)
        finally:
            if ended:
                self._finish(code, reason)

    # -- dormancy (dormancy.py): an idle actor without a greenlet ---------------------------

    def _revive(self, reason: WakeReason) -> None:
        """In the hub (the read watcher, a wake, a hand-off): a new greenlet for the dormant
        actor, which takes up `reason` where its last one parked."""
        actor = self._greenlet = greenlet(self._wake_up, self._hub)
        actor.gr_context = self._context
        actor.switch(reason)

    def _mail_dormant(self) -> None:
        """Mail for the dormant actor, in the hub: written from there when that needs no wait
        (`send_from_hub`), else taken up by a new greenlet."""
        if not send_from_hub(self):
            self._revive(MAIL)

    def _wake_up(self, reason: WakeReason) -> None:
        """The revived actor's greenlet: the message loop again, as if it had parked."""
        self._owner = self._greenlet = gevent.getcurrent()
        self._wait_state = NOT_WAITING
        self._read_watcher.stop()
        self._act(b"", reason)

    def _finish(self, code: int, reason: str) -> None:
        was_open = self._open
        self._open = False
        self._closing = True
        self._finished = True
        self.close_code, self.close_reason = code, reason
        self._outbox = []
        self._release_transport()
        if was_open and log.isEnabledFor(logging.DEBUG):
            log.debug("%r: closed: %d %s", self, code, reason, extra={"code": code})
        try:
            if was_open:
                try:
                    self.app.handle_close(self, code, reason)
                except Exception:
                    log.exception("%r: on_close failed", self)
        finally:
            if self._on_finish is not None:
                self._on_finish(self)

    def _serve(self, first_data: bytes, wake: int) -> tuple[int, str] | None:
        """The message loop: returns the close code and reason once the protocol is CLOSED,
        or None when the actor goes dormant (when, see dormancy.py); `_revive` then calls it
        again with the reason it woke for, as if it had parked here.

        Once a close is requested or an abort decided, data frames still arriving are
        discarded (RFC 6455 7.1.4 allows it): a refused client reaches no handler. Liveness
        for keepalive counts reads that completed a frame, not bytes: a frame trickled a
        byte at a time looks idle, gets a ping it cannot answer, and is closed.
        """
        protocol = self._protocol
        assert protocol is not None
        recv = self._recv_nowait
        read_size = self.options.read_size
        receive_data = protocol.receive_data
        stats = self.options.stats
        reader = self._inline_reader()  # reads served outside the actor while it is parked
        data = first_data
        events: list[Event] | None = None  # handed off by the inline callback, not delivered
        parked = True
        drained = False  # the last read got less than it asked: the socket was empty
        received: bytes | None = None
        fresh = wake == NOT_WAITING and self.options.dormant_when_idle  # the handshake's greenlet
        if wake == HANDOFF:
            events = take_handoff(self)
        elif wake == MAIL:
            drained = True  # see to the mail, then park
        while True:
            if data or events is not None:
                if events is None:
                    events = receive_data(data)
                self._close_holds += 1  # a drain's close waits for these messages' replies
                if deliver(self, events):
                    self.recv_count += 1
                self.release_close()
                # Consumed: a parked connection keeps no reference to its last read (nor, the
                # events being deliver's, to its last message): less memory per idle connection.
                data = received = b""
                events = None
                control = protocol.data_to_send()  # a close reply, the close of a failure
                if control:
                    self._outbox.extend(control)
                if protocol.state is ConnectionState.CLOSED:
                    if self._close_deadline is None:
                        self._close_deadline = self._hub.loop.now() + self.options.close_timeout
                    self._flush()
                    self._close_transport(drain=True)
                    return protocol.close_code or CloseCode.NO_STATUS, protocol.close_reason
            if self._abort_reason is not None:
                raise Abort(*self._abort_reason)
            if self._outbox:
                self._flush()
            deadline = self._close_deadline
            if deadline is not None and self._hub.loop.now() >= deadline:
                # Checked on every turn, not only when parked: a peer that keeps the socket
                # readable does not postpone it.
                return self._give_up(protocol)
            if drained and not self._outbox:
                # The last read took less than it asked for: the socket was empty then, so a
                # read now would most likely fail (a syscall and an exception per message).
                # Park instead; the read watcher is level-triggered, so nothing is missed.
                if deadline is None and not self._closing:
                    if fresh:
                        go_dormant(self, reader)
                        return None
                    if reader is not None:
                        wake = self._park_inline(reader)
                        if wake == HANDOFF:
                            events = take_handoff(self)
                            drained = False  # then read on: what came since, or the end of the stream
                            continue
                    else:
                        wake = self._park(WAIT_READ, None)
                    if wake == SLEEP:
                        go_dormant(self, reader)
                        return None
                else:
                    wake = self._park(WAIT_READ, deadline)
                if wake == TIMEOUT:
                    return self._give_up(protocol)
                parked = True
                if wake != READABLE:  # mail, or an abort: see to it, then park again
                    data = b""
                    continue
            wanted = protocol.bytes_wanted  # read a large frame in few, big reads
            size = wanted if wanted > read_size else read_size
            received = recv(size)
            drained = received is not None and 0 < len(received) < size
            if received is None:
                data = b""
                if self._outbox:
                    # Mail queued while a write was blocked woke no one (only a parked
                    # reader is woken): send it before parking.
                    continue
                drained = True  # park, inline or not, at the top of the loop
                continue
            data = received
            stats.bytes_received += len(data)
            if not parked:
                # Back-to-back batches from a flooding peer: let other actors run in between.
                gevent.sleep(0)
            parked = False
            if not data:
                lost = protocol.connection_lost()  # the end of the stream
                return lost.code, lost.reason

    def _inline_reader(self) -> Callable[[Connection], None] | None:
        """Who reads and answers while the actor is parked: the hub itself (an inline app),
        the hub's shared runner (an app whose handler need not run in this greenlet), or
        None (the actor: woken for every read)."""
        app = self.app
        if app.inline:
            return on_readable
        if app.shared_runner:
            return runner_for(self._hub).on_readable
        return None

    def _give_up(self, protocol: WebSocketConnection) -> tuple[int, str]:
        """The closing handshake took longer than close_timeout: drop the transport."""
        lost = protocol.connection_lost("close handshake timed out")
        self._close_transport(drain=False)
        return lost.code, lost.reason

    def _send_last_close(self, code: int, reason: str) -> None:
        """Best effort, never blocking: tell the peer why before dropping the connection."""
        protocol = self._protocol
        if protocol is None or protocol.close_sent or code in (CloseCode.ABNORMAL, CloseCode.NO_STATUS):
            return
        self._send_if_possible(protocol.send_close(code, reason))

    # -- the opening handshake (opening.py) ----------------------------------------------

    def _handshake(self) -> bytes | None:
        """The opening handshake: the bytes after the request once the protocol is open, or
        None (refused, answered). TLSConnection runs its TLS handshake first."""
        return drive_handshake(self)

    def _handshake_deadline(self) -> float:
        """When the opening handshake must be over (a TLS connection counts its own from the start)."""
        return self._hub.loop.now() + self.options.handshake_timeout
