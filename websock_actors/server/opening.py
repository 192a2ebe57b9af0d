"""The opening handshake of a connection actor: the sans-I/O `ServerHandshake` driven over
the actor's socket, the server's and the app's request hooks, and the answer.

It ends in one of three ways: accepted (the connection's protocol is set, the 101 written),
refused (an HTTP error answered, the app's `handle_refused` told), or answered over plain
HTTP (a page, a health check). Functions of the connection: they run once per connection, in
its actor, before the message loop (`Connection.run`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import CloseCode, LocalHandshakeRefusal
from ..protocol.handshake import ServerHandshake
from ..protocol.http import error_response
from .transport import TIMEOUT, WAIT_READ, TransportGone

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["drive_handshake", "open_connection"]

log = logging.getLogger("websock_actors")


def open_connection(conn: Connection) -> bytes | None:
    """The handshake and the app's connect hook: the first bytes after the handshake, or None
    when it ended without a WebSocket (refused, or answered over plain HTTP). A call of its
    own, out of `run`, which stays on a parked actor's stack: compiled, that keeps the C frame
    every idle connection holds small."""
    try:
        rest = conn._handshake()
    finally:
        if conn._on_handshake_end is not None:
            conn._on_handshake_end(conn)
    if rest is None:
        if conn._answered:  # an HTTP answer went out: let the client read it to the end
            conn._close_transport(drain=True)
        return None
    conn._open = True
    try:
        conn.app.handle_connect(conn)
    except Exception:
        log.exception("%r: on_connect failed", conn)
        conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
    if conn.request is not None:
        conn.request.headers.pack()  # less memory per open connection
    return rest


def drive_handshake(conn: Connection) -> bytes | None:
    """Drive the sans-I/O handshake: the bytes after the request once the protocol is open,
    or None when the request was refused or answered with a plain HTTP response."""
    options = conn.options
    handshake = ServerHandshake(options.handshake, conn._compressors)
    deadline = conn._handshake_deadline()
    try:
        request = None
        while request is None:
            chunk = conn._recv_nowait(options.read_size)
            if chunk is None:
                if conn._park(WAIT_READ, deadline) == TIMEOUT:
                    raise LocalHandshakeRefusal(408, "handshake timed out")
                if conn._abort_reason is not None:
                    raise LocalHandshakeRefusal(503, conn._abort_reason[1] or "server shutting down")
                continue
            if not chunk:
                return None
            request = handshake.receive_data(chunk)
    except LocalHandshakeRefusal as exc:
        _refuse(conn, handshake, exc, deadline)
        return None
    request.peer = conn.address
    conn.request = request
    try:
        answer = None
        if conn._on_received is not None:
            answer = conn._on_received(conn, handshake.is_upgrade)
        if answer is None:
            answer = conn.app.handle_request(request)
        if answer is None and conn._on_request is not None and not handshake.is_upgrade:
            answer = conn._on_request(request)  # the server's hook may answer plain HTTP too
        if answer is None:
            response, protocol = handshake.accept()
            for why in handshake.declined:
                log.debug("%r: permessage-deflate offer declined: %s", conn, why)
            conn.subprotocol = handshake.subprotocol
            # Admission comes last: the server counts an admitted connection against its
            # capacity, so nothing may refuse it after this.
            answer = conn._on_open(conn) if conn._on_open is not None else None
    except LocalHandshakeRefusal as exc:
        _refuse(conn, handshake, exc, deadline)
        return None
    except Exception:
        # A bug in a request hook: answer 500 rather than drop the connection unanswered.
        log.exception("%r: request hook failed", conn)
        answer = error_response(500, "internal server error")
    if answer is not None:
        options.stats.answered(answer.status, handshake.is_upgrade)
        _respond(conn, handshake.respond(answer), deadline)
        return None
    conn._start_protocol(protocol)
    conn._write(response, deadline)
    return handshake.rest


def _refuse(
    conn: Connection, handshake: ServerHandshake, error: LocalHandshakeRefusal, deadline: float
) -> None:
    """Answer a refused request with its error; a client's mistake, not the server's news (DEBUG)."""
    log.debug("%r: handshake refused: %s", conn, error, extra={"status": error.status})
    conn.options.stats.answered(error.status, handshake.request is None or handshake.is_upgrade)
    try:
        conn.app.handle_refused(conn.address, error)
    except Exception:
        log.exception("%r: on_refused failed", conn)
    _respond(conn, handshake.refuse(error), deadline)


def _respond(conn: Connection, data: bytes, deadline: float) -> None:
    """Answer a plain HTTP request (an error or a page); the connection closes after it. A
    client that does not read the answer before the handshake deadline loses it."""
    try:
        # At least a second to write the answer, also when the deadline itself ran out (408).
        conn._write(data, max(deadline, conn._hub.loop.now() + 1.0))
    except TransportGone:
        return
    conn._answered = True
