"""A WebSocket client on gevent, built on the same sans-I/O core as the server.

    from websock_actors.client import connect

    with connect("ws://127.0.0.1:8000/") as ws:
        ws.send("hello")                      # text frame; bytes go as a binary frame
        print(ws.recv(timeout=5))
        joined = ws.request({"type": "join", "room": "lobby", "name": "ann"})

Every wait is a gevent wait: connections used from many greenlets of one thread run side by
side, and in a plain script without monkey-patching a wait runs gevent's hub on demand and
blocks its caller as an ordinary socket would. A connection has no greenlet of its own:
whoever waits (`recv`, `request`, `ping`, `close`) reads the socket (transport.py), one
greenlet at a time, and sorts what arrives (`_message`, here); while nobody waits, a watcher
in the thread's gevent loop reads what comes (pings and the server's close are answered at
once) whenever that loop runs: always in a gevent program or under Locust, and in a plain
script while the thread waits in gevent (in this client, `gevent.sleep`, a gevent queue),
not while it blocks in `time.sleep` or a lock of `threading`. A reply whose `id` belongs to
a pending `request` goes to that request; the server's `session` message sets `session`;
everything else goes to `on_push`, when given, and into a bounded queue that `recv` reads.
While that queue is full, nothing is read unless someone waits.

A connection belongs to the thread that opened it. An open connection is kept by its watcher
until it is closed (or lost): close it (`with connect(...) as ws:`) rather than dropping it.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from time import monotonic
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from ..errors import (
    CloseCode,
    ConnectionClosed,
    ConnectionClosedOK,
    RequestTimeout,
    WebSocketError,
    connection_closed,
)
from ..protocol.http import Response
from .endpoint import ClientOptions, open_with_retries, parse_url
from .requests import PendingRequests, reply_or_raise
from .transport import ClientTransport

__all__ = ["RECONNECT_CODES", "ClientConnection", "PushHandler"]

log = logging.getLogger("websock_actors.client")

# Close codes after which a connection with `reconnect=` opens again: the transport was lost,
# or the server went away, failed, restarts or is overloaded. Not 1000 (the server meant it),
# nor refusals such as 1008, which another try would only repeat.
RECONNECT_CODES = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.ABNORMAL,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.BAD_GATEWAY,
    }
)

PushHandler = Callable[[str | bytes], None]


class ClientConnection(ClientTransport):
    """One client connection: raw messages (`send`, `recv`, iteration), `ping`, `close`, and
    typed request-reply (`request`). Make one with `connect`.

    Attributes: `url`, `response` (the server's 101 answer, with its headers), `subprotocol`,
    `close_code` and `close_reason` (once closed; 1006 when the transport was lost),
    `dropped` (unsolicited messages pushed out of the full queue), `reconnects`, and
    `on_push`, the optional callback that sees each unsolicited message as it is read.
    From a typed server with resumption: `session` (the token of its `session` message, the
    first one it sends: neither queued for `recv` nor given to `on_push`, with or without
    `resume`); with `resume`: `positions` (room -> seq, epoch of the last broadcast
    read) and `resumed` (the server's answer to the last resume).
    """

    __slots__ = (
        "_inbox",
        "_requests",
        "_target",
        "_user_closed",
        "dropped",
        "on_push",
        "on_reconnect",
        "positions",
        "reconnects",
        "response",
        "resume",
        "resumed",
        "session",
        "subprotocol",
        "url",
    )

    def __init__(
        self,
        url: str,
        opts: ClientOptions,
        *,
        max_queue: int,
        on_push: PushHandler | None,
        on_reconnect: Callable[[ClientConnection], None] | None,
        resume: bool = False,
    ) -> None:
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        super().__init__(opts)
        self.url = url
        self._target = parse_url(url)
        self.on_push = on_push
        self.on_reconnect = on_reconnect
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.dropped = 0
        self.reconnects = 0
        self.resume = resume
        self.session: str | None = None
        self.positions: dict[str, dict[str, Any]] = {}
        self.resumed: dict[str, Any] | None = None
        self._inbox: deque[str | bytes] = deque(maxlen=max_queue)
        self._requests = PendingRequests()
        self._user_closed = False

    # -- opening -----------------------------------------------------------------------

    def _open_with_retries(self) -> None:
        """Open (retrying with `reconnect=`'s backoff) and take over the new transport."""
        sock, handshake, protocol = open_with_retries(self._target, self._opts)
        self._start(sock, protocol)
        self.response = handshake.response
        self.subprotocol = handshake.subprotocol
        self._requests.reset()
        if handshake.rest:  # frames the server sent right behind its answer
            self._receive(handshake.rest)

    # -- state -------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        """Return when data may be sent: open, reopened (`reconnect=`), or raise ConnectionClosed."""
        if not self.closed:
            protocol = self._protocol
            if protocol.close_sent:  # closing: the server's code when it began (a drain's 1012)
                if protocol.close_code is not None:
                    raise connection_closed(protocol.close_code, protocol.close_reason)
                raise connection_closed(CloseCode.NORMAL, "closing")
            return
        if self._opts.reconnect is None or self._user_closed or self.close_code not in RECONNECT_CODES:
            raise self._closed_error()
        session = self.session
        self._open_with_retries()
        self.reconnects += 1
        self._wake()
        if self.resume and session is not None:
            self.resume_session(session)
        if self.on_reconnect is not None:
            self.on_reconnect(self)

    def resume_session(
        self,
        session: str,
        positions: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        timeout: float | None = 10.0,
    ) -> dict[str, Any]:
        """Ask the server, on this new connection, for `session` and the rooms' messages after
        `positions` (room -> seq and epoch; default: those read here). The missed messages are
        queued for `recv` before the answer, which is returned and kept in `resumed`. With
        `resume=True` this runs by itself when the connection opens again."""
        if positions is not None:
            self.positions = {room: dict(position) for room, position in positions.items()}
        rooms = {room: dict(position) for room, position in self.positions.items()}
        answer = self.request({"type": "resume", "session": session, "rooms": rooms}, timeout=timeout)
        self.resumed = answer
        token = answer.get("session")
        if isinstance(token, str):
            self.session = token  # the session's next token, or this connection's own when not restored
        if not answer.get("restored"):
            self.positions.clear()  # a fresh session: the rooms are to be joined again
        positions = answer.get("positions")
        if isinstance(positions, dict):  # where each room stands after the replay
            self.positions.update({room: dict(p) for room, p in positions.items() if isinstance(p, dict)})
        return answer

    # -- sorting what arrives (ClientTransport reads) ---------------------------------

    def _message(self, message: str | bytes) -> None:
        """A data message read: a reply goes to its request; an unsolicited one to `on_push`,
        then into the queue (the oldest out when full)."""
        if type(message) is str:
            if self._requests.claim(message):
                return
            if message.startswith('{"type":"session"'):
                self.session = json.loads(message).get("session")
                return
            if self.resume and '"seq":' in message:
                self._track(message)
        if self.on_push is not None:
            try:
                self.on_push(message)
            except Exception:
                log.exception("on_push failed on a message from %s", self._target.shown)
        inbox = self._inbox
        if inbox.maxlen:
            if len(inbox) == inbox.maxlen:
                self.dropped += 1
            inbox.append(message)

    def _has_room(self) -> bool:
        """Idle reading stops while the queue for `recv` is full: the server then meets the
        kernel's backpressure, as it did before, instead of messages dropped unread."""
        inbox = self._inbox
        return not inbox.maxlen or len(inbox) < inbox.maxlen

    def _track(self, message: str) -> None:
        """Remember the room's position of a numbered broadcast, or of a `room_lost` notice
        (for the next resume)."""
        try:
            data = json.loads(message)
        except ValueError:
            return
        room, seq = data.get("room"), data.get("seq")
        if isinstance(room, str) and isinstance(seq, int):
            self.positions[room] = {"seq": seq, "epoch": str(data.get("epoch", ""))}

    # -- the API -----------------------------------------------------------------------

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text message (`str`) or a binary message (bytes-like)."""
        self._ensure_open()
        protocol = self._protocol
        if isinstance(message, str):
            self._write(protocol.send_text(message))
        else:
            self._write(protocol.send_binary(bytes(message)))

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next unsolicited message (`str` for text, `bytes` for binary): neither a reply
        to a `request` nor the server's `session` message (see `session`).

        Raises TimeoutError after `timeout` seconds, ConnectionClosed once the connection is
        closed and every message received before is read.
        """
        inbox = self._inbox
        if not inbox.maxlen:
            raise WebSocketError("recv() needs a queue: this connection was opened with max_queue=0")
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if inbox:
                return inbox.popleft()
            if self.closed:
                self._ensure_open()  # raises, or reopens with reconnect=
            remaining = None if deadline is None else deadline - monotonic()
            try:
                if not self._wait_until(lambda: bool(inbox), remaining):
                    raise TimeoutError(f"no message within {timeout:g} s")
            except ConnectionClosed:
                if not self.resume or self._user_closed:
                    raise
                # resume=True: what came before the loss is read first, then the connection
                # opens again and resumes (or _ensure_open raises)

    def recv_json(self, timeout: float | None = None) -> Any:
        """The next unsolicited message, parsed as JSON (from a typed server: a dict).

        `recv` gives the frame as it came (`str` or `bytes`); `request` gives the reply to a
        request, parsed. Raises WebSocketError for a binary message or text that is not JSON
        (the message is consumed), and what `recv` raises.
        """
        message = self.recv(timeout)
        if not isinstance(message, str):
            raise WebSocketError(f"recv_json() got a binary message of {len(message)} bytes")
        try:
            return json.loads(message)
        except ValueError:
            raise WebSocketError(f"recv_json() got text that is not JSON: {message[:64]!r}") from None

    def __iter__(self) -> Iterator[str | bytes]:
        """The messages, until the connection closes cleanly (ConnectionClosedOK: 1000, 1001,
        a close without a code) or we closed it; another end raises ConnectionClosedError."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return
            except ConnectionClosed:
                if self._user_closed:
                    return
                raise

    def request(
        self, message: Mapping[str, Any] | BaseModel, *, timeout: float | None = 10.0
    ) -> dict[str, Any]:
        """Send `message` (a dict or a pydantic model with a `type`) with a fresh `id`; return
        the reply that carries that `id`.

        Raises RequestError for an `error` reply, RequestTimeout when no reply came within
        `timeout` seconds (a late one is dropped), ConnectionClosed when the connection ended
        first. Unsolicited messages that arrive meanwhile stay readable with `recv`.
        """
        requests = self._requests
        message_id, text = requests.encode(message)
        try:
            self._ensure_open()
            self._write(self._protocol.send_text(text))
            if not self._wait_until(lambda: requests.answered(message_id), timeout):
                raise RequestTimeout(message_id, timeout or 0.0)
        finally:
            reply = requests.take(message_id)
        assert reply is not None
        return reply_or_raise(message_id, reply)

    def ping(self, data: bytes | None = None, *, timeout: float | None = 10.0) -> float:
        """Send a ping and wait for its pong; return the round trip in seconds."""
        payload = data if data is not None else b"p%d" % self._requests.next_id()
        self._ensure_open()
        pings = self._pings
        pings[payload] = False
        start = monotonic()
        try:
            self._write(self._protocol.send_ping(payload))
            if not self._wait_until(lambda: pings.get(payload, True), timeout):
                raise TimeoutError(f"no pong within {timeout:g} s")
        finally:
            pings.pop(payload, None)
        return monotonic() - start

    def close(self, code: int = CloseCode.NORMAL, reason: str = "", *, timeout: float | None = None) -> None:
        """The closing handshake: send a close frame, wait (up to `timeout`, else the
        connection's close_timeout) for the server's and for it to end TCP, then let go.
        Messages that arrive meanwhile stay readable with `recv`. Idempotent."""
        self._user_closed = True
        if self.closed:
            return
        frame = self._protocol.send_close(code, reason)  # ValueError for a code one may not send
        if self._write_broken:
            self._finish(CloseCode.ABNORMAL, "a write was cut short")
            return
        try:
            if frame:
                self._write(frame)
            self._wait_until(lambda: False, self._opts.close_timeout if timeout is None else timeout)
        except ConnectionClosed:
            return
        self._finish(CloseCode.ABNORMAL, "no close frame from the server in time")

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        self._user_closed = True
        self._finish(CloseCode.ABNORMAL, "aborted")
        self._wake()

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"closed {self.close_code}" if self.closed else "open"
        return f"<ClientConnection {self._target.shown} {state}>"
