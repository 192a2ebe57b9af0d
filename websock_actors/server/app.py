"""The raw application interface: what the server calls for each connection.

An application sees a connection open, its messages (``str`` for text, ``bytes`` for
binary) and its close. `Application` is the base the server drives; `WebSocketApp`
fills it from plain functions registered by decorator. The typed layer builds on the
same interface.

Names: the server calls an application's `handle_*` methods; what a user registers or
passes is an `on_*` hook (`@app.on_message`, `HandshakeOptions(on_request=...)`, `Actor.on_receive`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import CloseCode, LocalHandshakeRefusal
from ..protocol.connection import DEFAULT_MAX_MESSAGE_SIZE
from ..protocol.http import Request, Response

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Application", "WebSocketApp", "threads_are_greenlets"]

F = TypeVar("F", bound=Callable[..., object])


class Application:
    """Base class: override the hooks you need. Each runs in the connection's own actor
    (`handle_message` in a shared greenlet when `shared_runner` is set)."""

    # The largest message it takes, unless the server is given another (None: no limit).
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE

    # True when `handle_message` never blocks (no socket I/O, sleep, lock or wait of any
    # kind, also not under monkey-patching): the server may then run it in the event loop's
    # readiness callback, without switching into the connection's greenlet and back (a
    # fast path for many connections with one message in flight each). A handler that
    # blocks there fails its connection with 1011. Off by default.
    inline: bool = False

    # True when `handle_message` need not run in the connection's own greenlet (it keeps no
    # greenlet-local state): the server may then run it for many connections in one shared
    # greenlet per turn of the event loop (server/runner.py), which may wait; a connection
    # whose handler waits keeps that greenlet, and the others get a new one. Fewer switches
    # per message than the actor's own loop. The typed App's default, and WebSocketApp's
    # unless threads are greenlets (monkey-patched); off here.
    shared_runner: bool = False

    def handle_start(self) -> None:
        """The server started (in its hub): start what the application needs."""

    def handle_stop(self) -> None:
        """The server closed every connection: stop what `handle_start` started."""

    def handle_request(self, request: Request) -> Response | None:
        """Called before the upgrade: return a `Response` to answer (refuse, or serve a page)."""
        return None

    def handle_refused(self, address: Any, error: LocalHandshakeRefusal) -> None:
        """A client's opening handshake was refused with `error.status`; it never connected."""

    def not_ready(self) -> str | None:
        """Why the application cannot serve now (GET /readyz answers 503 with it), or None."""
        return None

    def drain_close(self) -> tuple[int, str]:
        """The close code and reason a stopping server sends each open connection."""
        return CloseCode.GOING_AWAY, "server shutting down"

    def metrics(self) -> dict[str, dict[str, Any]]:
        """What the application counts itself, by metric name (server/metrics.py's METRICS)
        and label value; merged into the server's on GET /metrics."""
        return {}

    def handle_connect(self, conn: Connection) -> None:
        """The handshake is done; `conn` can send. Raise or call `conn.close` to refuse."""

    def handle_message(self, conn: Connection, message: str | bytes) -> None:
        """One whole message: `str` for a text message, `bytes` for a binary one."""

    def handle_close(self, conn: Connection, code: int, reason: str) -> None:
        """The connection is closed (1006 when the transport ended without a close frame)."""


def threads_are_greenlets() -> bool:
    """Whether gevent has patched `threading` in this process (never imports gevent's monkey
    module when nothing did)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


class WebSocketApp(Application):
    """An `Application` assembled from functions::

        app = WebSocketApp()

        @app.on_message
        def echo(conn, message):
            conn.send(message)
    """

    def __init__(self, *, inline: bool = False, shared_runner: bool | None = None) -> None:
        """`inline`: the message handler never blocks (see `Application.inline`).
        `shared_runner`: it need not run in the connection's greenlet (`Application.shared_runner`).
        By default it need not, unless `threading` is monkey-patched: then legacy code may keep
        per-connection state in a `threading.local` (a greenlet's own, under the patch), as it
        did with a thread per client, and the handler stays in the connection's greenlet."""
        self.inline = inline
        self.shared_runner = not threads_are_greenlets() if shared_runner is None else shared_runner
        self._on_request: Callable[[Request], Response | None] | None = None
        self._on_refused: Callable[[Any, LocalHandshakeRefusal], None] | None = None
        self._on_connect: Callable[[Connection], None] | None = None
        self._on_message: Callable[[Connection, str | bytes], None] | None = None
        self._on_close: Callable[[Connection, int, str], None] | None = None

    def on_request(self, func: F) -> F:
        self._on_request = func  # type: ignore[assignment]
        return func

    def on_refused(self, func: F) -> F:
        self._on_refused = func  # type: ignore[assignment]
        return func

    def on_connect(self, func: F) -> F:
        self._on_connect = func  # type: ignore[assignment]
        return func

    def on_message(self, func: F) -> F:
        self._on_message = func  # type: ignore[assignment]
        return func

    def on_close(self, func: F) -> F:
        self._on_close = func  # type: ignore[assignment]
        return func

    def handle_request(self, request: Request) -> Response | None:
        return self._on_request(request) if self._on_request else None

    def handle_refused(self, address: Any, error: LocalHandshakeRefusal) -> None:
        if self._on_refused:
            self._on_refused(address, error)

    def handle_connect(self, conn: Connection) -> None:
        if self._on_connect:
            self._on_connect(conn)

    def handle_message(self, conn: Connection, message: str | bytes) -> None:
        if self._on_message:
            self._on_message(conn, message)

    def handle_close(self, conn: Connection, code: int, reason: str) -> None:
        if self._on_close:
            self._on_close(conn, code, reason)
