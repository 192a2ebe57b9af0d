"""The transport of a client connection: the socket, read by whoever waits, and the writes.

Whoever waits (`recv`, `request`, `ping`, `close`) reads the socket, one greenlet at a time,
while the others park until it has sorted what it read: a reply goes straight to the
greenlet that waits for it, without a switch through a reader of the connection's own.
While nobody waits, a watcher of the socket in the thread's gevent loop (no greenlet) sees
bytes arrive and starts a short greenlet that reads and sorts them, so an idle connection
answers a ping and the server's close at once, and notices a lost transport: a server's
drain of idle clients does not wait for its close timeout. The watcher is off while someone
reads, so the hot path does not wake it.

The protocol's events are sorted here: pongs answer pings, data messages go to the
connection's `_message`, and what the protocol owes the server (pongs, the close reply) is
written at once.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic
from typing import Any

from gevent import get_hub, spawn_raw
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.timeout import Timeout
from greenlet import getcurrent

from ..errors import CloseCode, ConnectionClosed, connection_closed
from ..protocol.connection import (
    BinaryMessage,
    ConnectionState,
    PongReceived,
    Role,
    TextMessage,
    WebSocketConnection,
)
from .endpoint import ClientOptions

__all__ = ["ClientTransport"]

_READ_SIZE = 65536
_READ = 1  # libev's EV_READ, for the loop's io watcher


class ClientTransport:
    """One client connection's socket and protocol, reading and writing; `ClientConnection`
    adds the API and the reopening on top."""

    __slots__ = (
        "_due",
        "_generation",
        "_opts",
        "_parked",
        "_pings",
        "_protocol",
        "_reader",
        "_sock",
        "_watch",
        "_write_broken",
        "_write_lock",
        "close_code",
        "close_reason",
        "closed",
    )

    def __init__(self, opts: ClientOptions) -> None:
        self._opts = opts
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = True  # until the opening handshake succeeds
        self._sock: Any = None
        self._protocol = WebSocketConnection(Role.CLIENT)
        self._pings: dict[bytes, bool] = {}  # payloads of pings sent: True once answered
        self._reader: Any = None  # the greenlet reading the socket, if any
        self._watch: Any = None  # the loop's io watcher of the socket, on while nobody reads
        self._due: Any = None  # with idle_read_delay: the timer of the next idle read
        self._parked: Event | None = None  # set when the reader is done with a read
        self._write_lock = Semaphore()
        self._write_broken = False  # a write was cut short: the stream may end mid-frame
        self._generation = 0  # counts transports, so waits on a lost one end

    def _message(self, message: str | bytes) -> None:
        """A data message read: the connection sorts it (a reply, or an unsolicited one)."""
        raise NotImplementedError

    def _start(self, sock: Any, protocol: WebSocketConnection) -> None:
        """Take over a newly opened socket and its protocol; waits on the last one end."""
        self._sock = sock
        self._protocol = protocol
        self.closed = False
        self.close_code = None
        self.close_reason = ""
        self._write_broken = False
        self._generation += 1
        # Not counted as the loop's work (ref=False): an open connection alone does not keep
        # gevent.wait() waiting. Started in the thread that opens, whose loop reads it.
        watch = self._watch = get_hub().loop.io(sock.fileno(), _READ, ref=False)
        watch.start(self._readable)

    def _closed_error(self) -> ConnectionClosed:
        return connection_closed(self.close_code, self.close_reason)

    def _finish(self, code: int, reason: str, *, drain: bool = False) -> None:
        """The connection is over: after a close handshake (then `drain` waits, within
        close_timeout, for the server to end TCP first, as RFC 6455 7.1.1 asks), a failure,
        or a lost transport."""
        if self.closed:
            return
        watch, self._watch = self._watch, None
        if watch is not None:  # before the socket closes: its number may be reused at once
            watch.close()
        due, self._due = self._due, None
        if due is not None:
            due.stop()
        if drain:
            deadline = monotonic() + self._opts.close_timeout
            while (remaining := deadline - monotonic()) > 0 and self._recv(remaining):
                pass
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -- reading -----------------------------------------------------------------------

    def _recv(self, timeout: float | None) -> bytes | None:
        """One read: the bytes, b"" at the end of the stream (or a socket error), None on timeout."""
        sock = self._sock
        if sock is None:
            return b""
        timer = Timeout(timeout) if timeout is not None else None
        if timer is not None:
            timer.start()
        try:
            data: bytes = sock.recv(_READ_SIZE)
            return data
        except OSError:
            return b""
        except Timeout as exc:
            if exc is not timer:
                raise
            return None
        finally:
            if timer is not None:
                timer.close()

    def _wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Read and sort what arrives until `ready()`: False if `timeout` ran out first.

        Raises ConnectionClosed when the connection ends before. One greenlet reads at a
        time; the others park until it has sorted what it read.
        """
        deadline = None if timeout is None else monotonic() + timeout
        remaining = timeout
        generation = self._generation
        while not ready():
            if self.closed or self._generation != generation:
                raise self._closed_error()
            if deadline is not None:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    return False
            if self._reader is None:
                self._take_reading(getcurrent())
                try:
                    data = self._recv(remaining)
                    if data is not None:
                        self._receive(data)
                finally:
                    self._release_reading()
            else:
                parked = self._parked
                if parked is None:
                    parked = self._parked = Event()
                parked.wait(remaining)
        return True

    def _take_reading(self, reader: Any) -> None:
        """`reader` reads now: the idle watcher is off until it is done."""
        self._reader = reader
        watch = self._watch
        if watch is not None:
            watch.stop()

    def _release_reading(self) -> None:
        """The reader is done: the idle watcher is on again, parked waiters wake."""
        self._reader = None
        watch = self._watch
        if watch is not None:
            watch.start(self._readable)
        due = self._due
        if due is not None:  # what it was due for is read: the watcher sees anything new
            self._due = None
            due.stop()
        self._wake()

    def _readable(self) -> None:
        """In the loop: bytes came while nobody reads; a greenlet of ours reads them, at once
        or after `idle_read_delay` (what comes meanwhile is read in the same go), unless the
        connection has no room for more (then the kernel keeps them until a wait reads,
        which turns the watcher on again)."""
        if self._reader is not None or self.closed:
            return
        delay = self._opts.idle_read_delay
        if delay <= 0 or not self._has_room():
            self._read_now()
            return
        self._watch.stop()  # level-triggered: it would fire again at once
        if self._due is None:  # a fresh timer each time: a libev timer that fired fires at once
            due = self._due = get_hub().loop.timer(delay, ref=False)
            due.start(self._read_now)

    def _read_now(self) -> None:
        """In the loop: start the idle read, if nobody reads meanwhile (whose end turns the
        watcher on again) and there is room."""
        if self._reader is not None or self.closed:
            return
        if self._has_room():
            self._take_reading(spawn_raw(self._read_idle, self._generation))
        elif self._watch is not None:
            self._watch.stop()

    def _has_room(self) -> bool:
        """Whether what arrives unasked can be kept: the connection's queue is not full."""
        return True

    def _read_idle(self, generation: int) -> None:
        """One read of what came while nobody waited (a ping, the server's close, a push, the
        end of the stream), sorted as a waiter would; waiters that came meanwhile park."""
        try:
            data = self._recv(None)
            if data is not None and self._generation == generation:
                self._receive(data)
        finally:
            self._release_reading()

    def _wake(self) -> None:
        parked = self._parked
        if parked is not None:
            self._parked = None
            parked.set()

    def _receive(self, data: bytes) -> None:
        """Feed received bytes to the protocol; sort the messages; answer what it owes."""
        if self.closed:
            return
        protocol = self._protocol
        for event in protocol.receive_data(data):
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                self._message(event.data)  # type: ignore[union-attr]
            elif kind is PongReceived:
                self._on_pong(event.payload)  # type: ignore[union-attr]
        owed = protocol.data_to_send()  # pongs, the close reply, the close of a failure
        if owed:
            try:
                self._write(b"".join(owed))
            except ConnectionClosed:
                return
        if protocol.state is ConnectionState.CLOSED:
            code = protocol.close_code or CloseCode.ABNORMAL
            self._finish(code, protocol.close_reason, drain=protocol.close_received)

    def _on_pong(self, payload: bytes) -> None:
        pings = self._pings
        if payload in pings:
            # A pong may answer only the latest of several pings (RFC 6455 5.5.3).
            for key in pings:
                pings[key] = True
                if key == payload:
                    break

    # -- writing -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            sock = self._sock
            if sock is None or self._write_broken:
                raise self._closed_error()
            try:
                # One plain send is enough for a small frame; sendall only for what is left
                # (gevent's sendall asks the kernel for the buffer size on every call).
                sent = sock.send(data)
                if sent < len(data):
                    sock.sendall(memoryview(data)[sent:])
            except OSError as exc:
                self._write_broken = True
                self._finish(CloseCode.ABNORMAL, f"write failed: {exc}")
                raise self._closed_error() from None
            except BaseException:  # killed or timed out mid-write: the frame may be cut
                self._write_broken = True
                raise
