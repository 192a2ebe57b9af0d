"""The connection actor's socket I/O: a plain non-blocking socket driven by the actor itself.

No gevent socket object (and its two idle watchers) per connection: the actor reads with
`recv_into` a buffer shared by the server's connections, tries every write as a plain
non-blocking `send` and waits for writability only when the kernel buffer is full, and
parks on one read watcher it keeps for its whole life. Waiting happens outside any `except`
block: a greenlet parked inside one keeps the exception and its traceback alive, which costs
memory per idle connection.

A mixin rather than an object of its own, so that the hot path reaches the socket with one
attribute lookup.
"""

from __future__ import annotations

import _socket
import socket
from collections.abc import Callable
from typing import Any, Final, Literal

import gevent
from gevent.hub import Hub, get_hub
from greenlet import greenlet as _RawGreenlet

from .options import ConnectionOptions

__all__ = [
    "HANDOFF",
    "MAIL",
    "NOT_WAITING",
    "READABLE",
    "SLEEP",
    "TIMEOUT",
    "WAIT_READ",
    "WAIT_WRITE",
    "WRITABLE",
    "Abort",
    "ParkState",
    "Transport",
    "TransportGone",
    "WakeReason",
]

# Why a parked actor was woken: what `_park` and `_park_inline` return, and what the watcher,
# the timer, `_do_wake` and the inline reader switch into the actor with.
WakeReason = Literal[1, 2, 3, 4, 5, 8]
READABLE: Final = 1  # the socket has bytes (or the end of the stream) to read
WRITABLE: Final = 2  # the kernel takes bytes again after a write that did not go whole
MAIL: Final = 3  # another greenlet queued something, or asked for a close or an abort
TIMEOUT: Final = 4  # the deadline given to _park passed
HANDOFF: Final = 5  # the inline reader left the rest to the actor (inline.py)
SLEEP: Final = 8  # quiet for a whole sweep (dormancy.py): end the greenlet, keep the watcher

# What the actor is parked on, in `_wait_state`: nothing; readable or mail; writable (then only
# an abort wakes it as mail). Numbers apart from the wake reasons', so that mypy (and a reader
# of a debugger's output) tells one set from the other. Plain int constants, not enums: they
# are compared on every message, and mypyc inlines a Final int.
ParkState = Literal[0, 6, 7]
NOT_WAITING: Final = 0
WAIT_READ: Final = 6
WAIT_WRITE: Final = 7


# greenlet's own switch, for the actor to park: the hub's `switch` adds a check (that it is
# not called from the hub itself) which the actor, never the hub, does not need.
_switch = _RawGreenlet.switch


class Abort(Exception):
    """Raised inside the actor to drop the connection at once."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class TransportGone(Exception):
    """The socket failed while writing (reset, broken pipe)."""


class Transport:
    """Reading, writing and parking for the one greenlet that owns `_raw`."""

    __slots__ = (
        "_abort_reason",
        "_context",
        "_fd",
        "_greenlet",
        "_hub",
        "_idle_mark",
        "_owner",
        "_raw",
        "_read_watcher",
        "_recv_buffer",
        "_wait_state",
        "_wake_scheduled",
        "_write_pending",
        "options",
    )

    def _init_transport(
        self, sock: _socket.socket, recv_buffer: memoryview | None, options: ConnectionOptions
    ) -> None:
        self.options = options
        self._raw = sock
        self._raw.setblocking(False)
        self._fd = sock.fileno()
        self._recv_buffer = recv_buffer
        self._hub: Hub = get_hub()
        # The actor's greenlet while it has one: None before it runs and while it is dormant
        # (parked without a greenlet, see `_revive`).
        self._greenlet: Any = None
        self._context: Any = None  # the actor's contextvars: the runner's handlers and a revival run in them
        # Who may encode and write for this connection now: the actor, or the hub while it
        # runs the actor's inline readiness callback on its behalf (inline.py).
        self._owner: Any = None
        self._wait_state: ParkState = NOT_WAITING
        self._wake_scheduled = False
        self._read_watcher: Any = None
        self._write_pending = False  # a write is blocked part-way through a frame
        # An abort was asked for (code, reason): a parked actor wakes for it and drops the socket.
        self._abort_reason: tuple[int, str] | None = None
        # The idle sweep's last look at `recv_count` (dormancy.py); -1 after mail came.
        self._idle_mark = -1

    def _recv_nowait(self, size: int) -> bytes | None:
        """Bytes received (b"" at end of stream or on error), or None when none are ready.

        With a `recv_buffer` (one per server, shared by its connections: only one greenlet
        of a hub runs at a time), bytes are read into it and copied out at their size, so
        no 64 KiB block is allocated and shrunk per read.
        """
        buffer = self._recv_buffer
        try:
            if buffer is None or size > len(buffer):
                data: bytes = self._raw.recv(size)
                return data
            count = self._raw.recv_into(buffer, size)
        except BlockingIOError:
            return None
        except OSError:
            return b""
        return buffer[:count].tobytes()

    def _write(self, data: bytes, deadline: float | None = None) -> None:
        """Write all of `data`, parking on writability only when the kernel buffer is full;
        a peer that takes nothing until `deadline` loses its connection (TransportGone)."""
        self.options.stats.bytes_sent += len(data)
        sent = self._send_some(data)
        if sent == len(data):
            return
        self._write_rest(memoryview(data)[sent:], deadline)

    def _write_rest(self, view: memoryview, deadline: float | None) -> None:
        """The part of a write the kernel did not take at once: park on writability until
        it is sent, or until `deadline` (TransportGone)."""
        watcher = self._hub.loop.io(self._fd, 2)
        self._write_pending = True
        try:
            while view:
                sent = self._send_some(view)
                if sent:
                    view = view[sent:]
                    continue
                if self._park(WAIT_WRITE, deadline, watcher) == TIMEOUT:
                    raise TransportGone("write timed out")
                if self._abort_reason is not None:
                    raise Abort(*self._abort_reason)
            self._write_pending = False
        finally:
            watcher.close()

    def _send_some(self, data: bytes | memoryview) -> int:
        """One non-blocking send: how much the kernel took (0 when its buffer is full);
        TransportGone when the socket is gone."""
        try:
            return self._raw.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise TransportGone() from exc

    def _send_if_possible(self, data: bytes) -> None:
        """One non-blocking send, never waiting, never raising: for a last word before dropping."""
        if self._write_pending:
            return  # a frame is half sent: anything written now would land inside it
        try:
            self._raw.send(data)
        except OSError:
            pass

    def _park(self, state: ParkState, deadline: float | None, watcher: Any = None) -> WakeReason:
        """Wait for the socket (readable or writable), mail, or the deadline.

        The actor switches to the hub itself, and what wakes it switches back to it with the
        reason: no Waiter in between (gevent's waits use one so that a wake may come before
        the wait; here only the started watcher, the timer, and `_do_wake` while
        `_wait_state` says parked can wake it, and all are stopped or checked first).
        """
        if watcher is None:
            watcher = self._read_watcher
        resume = self._owner.switch  # the actor, or the shared runner writing for it
        watcher.start(resume, READABLE if state == WAIT_READ else WRITABLE)
        timer = None if deadline is None else self._start_timer(deadline, resume)
        self._wait_state = state
        try:
            return _switch(self._hub)  # type: ignore[no-any-return]
        finally:
            self._wait_state = NOT_WAITING
            watcher.stop()
            if timer is not None:
                timer.close()

    def _park_inline(self, on_readable: Callable[[Any], None]) -> WakeReason:
        """Park on reading with `on_readable` as the read watcher's callback: the hub calls it
        when the socket is readable, and the actor stays parked unless it hands off (HANDOFF).
        Mail still wakes the actor (MAIL); there is no deadline."""
        # The shared runner delivers in the actor's context: this greenlet's, dormant or not.
        self._context = gevent.getcurrent().gr_context
        watcher = self._read_watcher
        watcher.start(on_readable, self)
        self._wait_state = WAIT_READ
        try:
            return _switch(self._hub)  # type: ignore[no-any-return]
        finally:
            self._wait_state = NOT_WAITING
            watcher.stop()

    def _start_timer(self, deadline: float, resume: Any) -> Any:
        """_park's timer, made out of _park: the C frame of a compiled _park, which every
        parked actor keeps on its saved stack, is smaller without it."""
        timer = self._hub.loop.timer(max(0.0, deadline - self._hub.loop.now()))
        timer.start(resume, TIMEOUT)
        return timer

    def _wake(self) -> None:
        """Wake the actor if it is parked on reading (mail came), or on writing (to abort)."""
        if self._wake_scheduled or gevent.getcurrent() is self._greenlet:
            return
        self._wake_scheduled = True
        self._hub.loop.run_callback(self._do_wake)

    def _do_wake(self) -> None:
        self._wake_scheduled = False
        self._idle_mark = -1  # not idle: the sweep waits a whole interval again
        state = self._wait_state
        if state == WAIT_READ or (state == WAIT_WRITE and self._abort_reason is not None):
            owner = self._owner  # the parked actor, or the runner waiting to write
            if owner is None:
                self._mail_dormant()
            else:
                owner.switch(MAIL)

    def _mail_dormant(self) -> None:
        """In the hub: mail for a dormant actor, which has no greenlet (Connection)."""
        raise NotImplementedError

    def _close_transport(self, *, drain: bool) -> None:
        """Half-close, then read until the peer closes too (bounded), so no RST eats our last frame."""
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            return
        if not drain:
            return
        deadline = self._hub.loop.now() + min(self.options.close_timeout, 2.0)
        while True:
            received = self._recv_nowait(65536)
            if received is None:
                if self._park(WAIT_READ, deadline) == TIMEOUT or self._abort_reason is not None:
                    return
            elif not received:
                return

    def _release_transport(self) -> None:
        """Close the watcher and the socket: the actor is done."""
        if self._read_watcher is not None:
            self._read_watcher.close()
        try:
            self._raw.close()
        except OSError:
            pass
