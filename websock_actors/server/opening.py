"""The opening handshake of a connection actor: the sans-I/O `ServerHandshake` driven over
the actor's socket, the server's and the app's request hooks, and the answer.

It ends in one of three ways: accepted (the connection's protocol is set, the 101 written),
refused (an HTTP error answered, the app's `handle_refused` told), or answered over plain
HTTP (a page, a health check). Functions of the connection: they run once per connection, in
its actor, before the message loop (`Connection.run`).

Keep-alive: an endpoint whose answer says `Connection: keep-alive` (the server API's, to
an authenticated client) lets the connection read the next request, when the client wants
it too (HTTP/1.1 without `Connection: close`, HTTP/1.0 with `keep-alive`) and it has carried
fewer than `MAX_KEPT_REQUESTS`. A refusal of the request's framing (400, 411, 413, 431) and
every other answer close it. The handshake slot (admission.py) is given back after the first
answer: an idle kept connection holds none, so it never stands in the way of an upgrade; it
still counts against its IP's sockets, and waits at most `handshake_timeout` for each next
request (an idle one is closed without a word).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import CloseCode, ConnectionClosed, LocalHandshakeRefusal
from ..protocol.handshake import ServerHandshake
from ..protocol.http import Request, Response, error_response, header_tokens, render
from .transport import TIMEOUT, WAIT_READ, TransportGone

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["MAX_KEPT_REQUESTS", "drive_handshake", "open_connection"]

log = logging.getLogger("websock_actors")

# Requests one kept-alive connection carries at most: then it closes, so that one client
# cannot pin a connection (and its place in the per-IP counts) for ever.
MAX_KEPT_REQUESTS = 10_000


def open_connection(conn: Connection) -> bytes | None:
    """The handshake and the app's connect hook: the first bytes after the handshake, or None
    when it ended without a WebSocket (refused, or answered over plain HTTP). A call of its
    own, out of `run`, which stays on a parked actor's stack: compiled, that keeps the C frame
    every idle connection holds small."""
    peer = conn.address  # a trusted proxy's socket: each request names its own client
    try:
        rest = conn._handshake()
    finally:
        if conn._on_handshake_end is not None:
            conn._on_handshake_end(conn)
    served = 1
    while rest is None and isinstance(conn._answered, bytes):  # kept alive: the next request
        conn.address = peer
        rest = drive_handshake(conn, conn._answered, served)
        served += 1
    if rest is None:
        if conn._answered:  # an HTTP answer went out: let the client read it to the end
            conn._close_transport(drain=True)
        return None
    conn._open = True
    try:
        conn.app.handle_connect(conn)
    except ConnectionClosed:  # closed meanwhile (a drain as the handshake ended): its code stands
        log.debug("%r: closed while on_connect ran", conn)
    except Exception:
        log.exception("%r: on_connect failed", conn)
        conn.abort(CloseCode.INTERNAL_ERROR, "internal error")
    if conn.request is not None:
        conn.request.headers.pack()  # less memory per open connection
    return rest


def drive_handshake(conn: Connection, pending: bytes = b"", served: int = 0) -> bytes | None:
    """Drive the sans-I/O handshake: the bytes after the request once the protocol is open,
    or None when the request was refused or answered with a plain HTTP response.

    On a kept-alive connection, `served` requests were answered before and `pending` are
    the bytes the client sent after the last one; waiting for the request's first byte is
    idle time, which ends the connection without an answer (a timeout, a server stop)."""
    options = conn.options
    handshake = ServerHandshake(options.handshake, conn._compressors)
    kept = served > 0
    if kept:
        conn._answered = False
        deadline = conn._hub.loop.now() + options.handshake_timeout
    else:
        deadline = conn._handshake_deadline()
    try:
        request = handshake.receive_data(pending) if pending else None
        idle = kept and not pending
        while request is None:
            if idle and conn._abort_reason is not None:
                return None
            chunk = conn._recv_nowait(options.read_size)
            if chunk is None:
                if conn._park(WAIT_READ, deadline) == TIMEOUT:
                    if idle:
                        return None
                    raise LocalHandshakeRefusal(408, "handshake timed out")
                if conn._abort_reason is not None:
                    if idle:
                        return None
                    raise LocalHandshakeRefusal(503, conn._abort_reason[1] or "server shutting down")
                continue
            if not chunk:
                return None
            idle = False
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
        if _keeps_alive(request, answer, served):
            _respond(conn, _render_kept(request, answer, options.handshake_timeout), deadline, handshake.rest)
        else:
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


def _respond(conn: Connection, data: bytes, deadline: float, kept: bytes | None = None) -> None:
    """Answer a plain HTTP request (an error or a page); the connection closes after it, or
    with `kept` (the bytes after the request) reads the next one. A client that does not
    read the answer before the handshake deadline loses it."""
    try:
        # At least a second to write the answer, also when the deadline itself ran out (408).
        conn._write(data, max(deadline, conn._hub.loop.now() + 1.0))
    except TransportGone:
        return
    conn._answered = True if kept is None else kept


def _keeps_alive(request: Request, answer: Response, served: int) -> bool:
    """Whether the connection reads another request after `answer`: see the module's docstring."""
    if served + 1 >= MAX_KEPT_REQUESTS or "keep-alive" not in header_tokens(answer.headers.get("Connection")):
        return False
    wanted = header_tokens(request.headers.get("Connection"))
    if request.version == "HTTP/1.0":
        return "keep-alive" in wanted
    return "close" not in wanted


def _render_kept(request: Request, answer: Response, idle: float) -> bytes:
    """The answer on a connection that stays open: its length, and how long it waits idle."""
    framing = ("content-length", "connection", "keep-alive")
    headers = [(name, value) for name, value in answer.headers if name.lower() not in framing]
    headers += [
        ("Content-Length", str(len(answer.body))),
        ("Connection", "keep-alive"),
        ("Keep-Alive", f"timeout={max(1, int(idle))}"),
    ]
    return render(answer.status, answer.reason, headers, b"" if request.method == "HEAD" else answer.body)
