"""The connection actor: one greenlet that alone owns one socket and one protocol object.

Other greenlets never touch the socket: `send`, `send_frame`, `ping`, `close` and `abort`
put an item into the actor's mailbox (a plain list, bounded in bytes) and wake the actor
if it is parked. The actor drives the sans-I/O handshake, then reads in large chunks, feeds
the codec, delivers whole messages to the application, and writes everything queued in one
`send` call (socket I/O in `transport.py`). An idle connection has no extra greenlet, no
timer and no queue object.
"""

from __future__ import annotations

import _socket
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from gevent.exceptions import BlockingSwitchOutError

from ..errors import CloseCode, LocalHandshakeRefusal
from ..protocol.connection import (
    BinaryMessage,
    ConnectionState,
    Event,
    PingReceived,
    ProtocolFailure,
    TextMessage,
    WebSocketConnection,
)
from ..protocol.deflate import CompressorPool, DeflateParameters, MessageCompressor
from ..protocol.handshake import ServerHandshake
from ..protocol.http import Request, Response, error_response
from .mailbox import Mailbox
from .options import ConnectionOptions
from .transport import HANDOFF, NOT_WAITING, READABLE, TIMEOUT, WAIT_READ, Abort, TransportGone

if TYPE_CHECKING:
    from .app import Application

__all__ = ["Connection"]

log = logging.getLogger("websock_actors")

_ids = itertools.count(1)

_STAY = object()  # the inline callback did all there was: the actor stays parked


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
        "_broadcast_compressor",
        "_compressors",
        "_encode_now",
        "_handoff",
        "_on_finish",
        "_on_handshake_end",
        "_on_open",
        "_on_received",
        "_on_request",
        "_protocol",
        "_state",
        "address",
        "app",
        "close_code",
        "close_reason",
        "id",
        "options",
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
        self.options = options
        self.request: Request | None = None
        self.subprotocol: str | None = None
        self._state: dict[str, Any] | None = None  # made at first use: most never need one
        self.close_code: int | None = None
        self.close_reason = ""
        self.recv_count = 0
        self._on_open = on_open  # admission of an upgrade: capacity, the server's hook
        self._on_received = on_received  # the server's look at a request before the app's hooks
        self._on_request = on_request  # the server's hook, for a request without Upgrade
        self._on_handshake_end = on_handshake_end  # accepted, refused or answered
        self._on_finish = on_finish
        self._init_transport(sock, recv_buffer)
        # permessage-deflate: the server's shared compressors; the one this connection
        # compresses broadcasts with (no context takeover); whether `send` in the actor
        # may encode at once (not when compression keeps context: mailbox order decides).
        self._compressors = compressors
        self._broadcast_compressor: MessageCompressor | None = None
        self._encode_now = True
        self._protocol: WebSocketConnection | None = None  # once the handshake accepted
        self._answered = False  # the handshake ended with a plain HTTP answer
        # What the inline readiness callback left to the actor (see _on_readable).
        self._handoff: Any = None
        self._init_mailbox()

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
        """The actor's body: handshake, message loop, close. Runs in its own greenlet."""
        self._owner = self._greenlet = gevent.getcurrent()
        self._read_watcher = self._hub.loop.io(self._fd, 1)
        code: int = CloseCode.ABNORMAL
        reason = ""
        try:
            rest = self._open_connection()
            if rest is not None:
                # A plain call (not `*args`, which Python 3.11 does not inline): the greenlet
                # parks with a shallower C stack, 512 bytes less to keep per idle connection.
                code, reason = self._serve(rest)
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
            self._finish(code, reason)

    def _open_connection(self) -> bytes | None:
        """The handshake and the app's connect hook: the first bytes after the handshake, or
        None when it ended without a WebSocket (refused, or answered over plain HTTP). Out
        of `run`, which stays on a parked actor's stack: compiled, its C frame is 176 bytes
        smaller."""
        try:
            rest = self._handshake()
        finally:
            if self._on_handshake_end is not None:
                self._on_handshake_end(self)
        if rest is None:
            if self._answered:  # an HTTP answer went out: let the client read it to the end
                self._close_transport(drain=True)
            return None
        self._open = True
        try:
            self.app.handle_connect(self)
        except Exception:
            log.exception("%r: on_connect failed", self)
            self.abort(CloseCode.INTERNAL_ERROR, "internal error")
        if self.request is not None:
            self.request.headers.pack()  # ~2 KiB less per open connection
        return rest

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

    def _serve(self, first_data: bytes) -> tuple[int, str]:
        """The message loop: returns the close code and reason once the protocol is CLOSED.

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
        inline = self._can_inline()
        data = first_data
        events: list[Event] | None = None  # handed off by the inline callback, not delivered
        parked = True
        drained = False  # the last read got less than it asked: the socket was empty
        received: bytes | None = None
        while True:
            if data or events is not None:
                if events is None:
                    events = receive_data(data)
                if self._deliver(events):
                    self.recv_count += 1
                # Consumed: a parked connection keeps no reference to its last read (nor, the
                # events being _deliver's, to its last message): 8 KiB less per idle
                # connection after a 4 KiB message.
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
                if inline and deadline is None and not self._closing:
                    wake = self._park_inline(self._on_readable)
                    if wake == HANDOFF:
                        events = self._take_handoff()
                        drained = False  # then read on: what came since, or the end of the stream
                        continue
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

    def _can_inline(self) -> bool:
        """Whether the app lets the hub run its handler in the read watcher's callback."""
        return self.app.inline

    def _on_readable(self) -> None:
        """The read watcher's callback while the actor is parked inline: read, decode and
        deliver in the hub, with no switch into the actor and back.

        Runs only for an app whose `handle_message` never blocks (`Application.inline`).
        Anything but data messages (a ping, a close, a protocol error, the end of the
        stream), an abort or close requested, replies past the mailbox's bound (the rest of
        the read then waits), a write the socket does not take whole, or an error is handed
        off to the actor (`_handoff`, then a switch with HANDOFF), which takes it up where
        its own loop would.
        """
        protocol = self._protocol
        assert protocol is not None
        options = self.options
        wanted = protocol.bytes_wanted
        size = options.read_size
        received = self._recv_nowait(wanted if wanted > size else size)
        if received is None:
            return  # nothing after all; the watcher stays
        if not received:
            self._hand_off(None)  # the end of the stream: the actor's own read finds it
            return
        options.stats.bytes_received += len(received)
        self._wait_state = NOT_WAITING  # the actor's own sends below need not wake it
        self._owner = self._hub
        handoff: Any = _STAY
        try:
            events = protocol.receive_data(received)
            for event in events:
                kind = type(event)
                if kind is not TextMessage and kind is not BinaryMessage:
                    handoff = events  # the actor delivers them all, in order
                    break
            if handoff is _STAY:
                if self._deliver(events, options.max_queue_bytes):
                    self.recv_count += 1
                events = []  # no reference to the last message while parked
                if self._handoff is not None:
                    # The replies passed the mailbox's bound: the actor writes them, waiting
                    # for the socket, and then delivers the rest of the read.
                    handoff, self._handoff = self._handoff, None
                elif self._abort_reason is not None or self._closing:
                    handoff = None
                elif self._outbox:
                    handoff = self._send_inline(self._take_outbox())
        except Exception as exc:  # the actor fails the connection with it
            handoff = exc
        finally:
            self._owner = self._greenlet
            self._wait_state = WAIT_READ
        if handoff is not _STAY:
            self._hand_off(handoff)

    def _send_inline(self, data: bytes) -> Any:
        """One non-blocking send from the hub: _STAY, or what the actor must still write."""
        self.options.stats.bytes_sent += len(data)
        try:
            sent = self._send_some(data)
        except TransportGone as gone:
            return gone
        if sent == len(data):
            return _STAY
        self._write_pending = True
        return memoryview(data)[sent:]

    def _hand_off(self, what: Any) -> None:
        """Switch into the parked actor with what the inline callback leaves to it."""
        self._handoff = what
        self._greenlet.switch(HANDOFF)

    def _take_handoff(self) -> list[Event] | None:
        """In the actor, after a HANDOFF: events to deliver, or None; a blocked write is
        finished first, an error raised."""
        what, self._handoff = self._handoff, None
        if isinstance(what, memoryview):
            self._write_rest(what, self._close_deadline)
            return None
        if isinstance(what, BaseException):
            raise what
        return what  # type: ignore[no-any-return]

    def _deliver(self, events: list[Event], bound: int = 0) -> bool:
        """Hand the messages to the application, queue pongs; True if there were events.

        With a `bound` (the inline callback's, which cannot wait for the socket), delivery
        stops once the mailbox holds more than `bound` bytes, and the events not delivered
        are left in `_handoff` for the actor, whose sends wait for the socket."""
        if not events:
            return False
        stats = self.options.stats
        pending = iter(events)
        for event in pending:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                if self._closing:
                    continue
                if kind is TextMessage:
                    stats.messages_text += 1
                else:
                    stats.messages_binary += 1
                try:
                    self.app.handle_message(self, event.data)  # type: ignore[union-attr]
                except BlockingSwitchOutError:
                    log.error("%r: an inline message handler blocked; declare the app inline=False", self)
                    self.abort(CloseCode.INTERNAL_ERROR, "internal error")
                except Exception:
                    log.exception("%r: message handler failed", self)
                    self.abort(CloseCode.INTERNAL_ERROR, "internal error")
                if bound and self._queued > bound:
                    rest = list(pending)
                    if rest:
                        self._handoff = rest
                    break
            elif kind is PingReceived:
                # The pong goes out in order with replies to messages around it.
                assert self._protocol is not None
                self._outbox.extend(self._protocol.data_to_send())
            elif kind is ProtocolFailure:
                log.debug("%r: protocol error: %s", self, event.reason)  # type: ignore[union-attr]
        return True

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

    # -- the opening handshake ---------------------------------------------------------

    def _handshake(self) -> bytes | None:
        """Drive the sans-I/O handshake: the bytes after the request once the protocol is
        open, or None when the request was refused or answered with a plain HTTP response."""
        options = self.options
        handshake = ServerHandshake(options.handshake, self._compressors)
        deadline = self._handshake_deadline()
        try:
            request = None
            while request is None:
                chunk = self._recv_nowait(options.read_size)
                if chunk is None:
                    if self._park(WAIT_READ, deadline) == TIMEOUT:
                        raise LocalHandshakeRefusal(408, "handshake timed out")
                    if self._abort_reason is not None:
                        raise LocalHandshakeRefusal(503, self._abort_reason[1] or "server shutting down")
                    continue
                if not chunk:
                    return None
                request = handshake.receive_data(chunk)
        except LocalHandshakeRefusal as exc:
            self._refuse(handshake, exc, deadline)
            return None
        request.peer = self.address
        self.request = request
        try:
            answer = None
            if self._on_received is not None:
                answer = self._on_received(self, handshake.is_upgrade)
            if answer is None:
                answer = self.app.handle_request(request)
            if answer is None and self._on_request is not None and not handshake.is_upgrade:
                answer = self._on_request(request)  # the server's hook may answer plain HTTP too
            if answer is None:
                response, protocol = handshake.accept()
                for why in handshake.declined:
                    log.debug("%r: permessage-deflate offer declined: %s", self, why)
                self.subprotocol = handshake.subprotocol
                # Admission comes last: the server counts an admitted connection against
                # its capacity, so nothing may refuse it after this.
                answer = self._on_open(self) if self._on_open is not None else None
        except LocalHandshakeRefusal as exc:
            self._refuse(handshake, exc, deadline)
            return None
        except Exception:
            # A bug in a request hook: answer 500 rather than drop the connection unanswered.
            log.exception("%r: request hook failed", self)
            answer = error_response(500, "internal server error")
        if answer is not None:
            if answer.status >= 400:
                self.options.stats.failed(answer.status)
            self._respond(handshake.respond(answer), deadline)
            return None
        deflate = protocol.deflate
        if deflate is not None:
            self._broadcast_compressor = deflate.shared
            self._encode_now = not deflate.local_context_takeover
        self._protocol = protocol
        self._write(response, deadline)
        return handshake.rest

    def _handshake_deadline(self) -> float:
        """When the opening handshake must be over (a TLS connection counts its own from the start)."""
        return self._hub.loop.now() + self.options.handshake_timeout

    def _refuse(self, handshake: ServerHandshake, error: LocalHandshakeRefusal, deadline: float) -> None:
        # a client's mistake: not the server's news
        log.debug("%r: handshake refused: %s", self, error, extra={"status": error.status})
        self.options.stats.failed(error.status)
        try:
            self.app.handle_refused(self.address, error)
        except Exception:
            log.exception("%r: on_refused failed", self)
        self._respond(handshake.refuse(error), deadline)

    def _respond(self, data: bytes, deadline: float) -> None:
        """Answer a plain HTTP request (an error or a page); the connection closes after it. A
        client that does not read the answer before the handshake deadline loses it."""
        try:
            # At least a second to write the answer, also when the deadline itself ran out (408).
            self._write(data, max(deadline, self._hub.loop.now() + 1.0))
        except TransportGone:
            return
        self._answered = True
