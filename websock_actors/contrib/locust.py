"""A Locust user that speaks WebSocket through websock_actors' client.

    from locust import between, task
    from websock_actors.contrib.locust import WebSocketUser

    class Greeter(WebSocketUser):
        wait_time = between(1, 2)

        @task
        def greet(self) -> None:
            self.request({"type": "greet", "name": "ann"})   # reported as WS "greet"

    locust -f greeter.py --headless -u 1000 -r 100 -t 1m --host ws://127.0.0.1:8000

Importing this module imports locust, which monkey-patches the whole process: import it only
from locustfiles, never from the library.

What is reported (request type, name):
- `WS connect`: the TCP connection and the opening handshake, when the user starts (and
  when it opens again after losing its connection, unless it resumes);
- `WS resume` (with `resume = True`): a lost connection opened again and its session
  resumed, timed from the TCP connection to the server's answer; it fails as `session not
  restored` when the server no longer had the session (the user starts afresh) and as
  `messages lost` when some rooms' missed messages could not be replayed;
- `WS <type>`: each `request`, with its real round-trip time; error replies, timeouts and
  closed connections are failures named by the error code (`not_in_room`, `timeout`,
  `closed 1006`, ...);
Locust keeps response times in whole milliseconds (a 0.3 ms round trip shows as 0 in its
percentiles; the averages keep the fractions).

Resumption (`resume = True`, for a typed server with a ResumePolicy, as `examples.chat`): a
user whose connection was lost (a close code of RECONNECT_CODES) opens a new one and resumes
its session on it: the server gives back its rooms and state, and replays what its rooms said
meanwhile (to `on_push`, in order, before its answer), so `on_connect` does not run again; it
does when the session was not restored. A connection lost between two tasks is noticed as it
happens (its watcher reads the server's close, or the end of the stream), so the next request
resumes first; one lost while a request is on its way fails that request (`closed 1006`, or
the server's close code). The client parses each room broadcast (JSON) to keep its room's
position.

Pushes (messages the server sent unasked) are not requests: they are counted by type in
`self.pushes`, fired as the `push_received` event, and reported when the run ends, on
stdout and in `<csv prefix>_pushes.csv`, so the Aggregated row stays the requests' own
figure. `report_pushes = False` neither counts nor reports them. Distributed, the master
adds up what the workers counted (locust_pushes.py).

Costs per user: the user's own greenlet and one socket; the connection has no greenlet of its
own. While a user waits between tasks, its connection's watcher reads what comes (pushes,
pings, the server's close) in a short greenlet, `idle_read_delay` after it came, so a
drained or lost connection is known before the next task.
"""

from __future__ import annotations

import functools
import gc
import ssl
import time
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import gevent
from locust import User, events
from locust.env import Environment
from pydantic import BaseModel

from ..client import RECONNECT_CODES, ClientConnection, connect
from ..errors import CloseCode, ConnectionClosed, HandshakeError, RequestError, WebSocketError
from ..protocol.deflate import DeflateOptions
from ..protocol.redact import mask_secrets
from .locust_pushes import PushCounts, push_received, push_type

# A server's drain (1001 going away, 1012 restart) closes only once the requests it read were
# answered, so a request left unanswered by one was not handled.
_DRAIN_CODES = frozenset({CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART})
_DRAIN_RETRIES = 3  # a rolling restart drains one worker after the other: a client may meet each

__all__ = ["WebSocketFailure", "WebSocketUser", "failure_of", "push_received", "push_type"]


class WebSocketFailure(Exception):
    """What a failure is reported as: its text is the error code (Locust groups by it).

    Raise it inside `timed` to report a failure of your own, e.g. a wrong echo.
    """


def failure_of(exc: BaseException) -> WebSocketFailure:
    """A short, groupable description of what went wrong."""
    if isinstance(exc, WebSocketFailure):
        return exc
    if isinstance(exc, RequestError):
        return WebSocketFailure(exc.code)
    if isinstance(exc, TimeoutError):  # RequestTimeout, recv and open timeouts
        return WebSocketFailure("timeout")
    if isinstance(exc, ConnectionClosed):
        return WebSocketFailure(f"closed {exc.code}")
    if isinstance(exc, HandshakeError):
        return WebSocketFailure(f"handshake {exc.status if exc.status is not None else 'invalid'}")
    if isinstance(exc, OSError):
        return WebSocketFailure(type(exc).__name__)
    return WebSocketFailure(mask_secrets(str(exc)))  # Locust shows it: no credentials


class WebSocketUser(User):
    """A user with one WebSocket connection, `self.ws`, opened in `on_start`, closed in `on_stop`.

    The URL is `--host` (a ws:// or wss:// URL; http(s):// is read as ws(s)://), with
    `connect_path()` (default: the class's `path`) appended when the host has no path of its
    own. Override `connect_path` and `connect_headers` for a path or a token per user: they
    are asked at each connect and resume. For wss:// with a private CA, set `ca_file` (or run
    with `--ws-ca-file`), or `ssl_context`. Override `on_connect` to do what each new
    session needs first (join a room): it runs again after a reconnect, but not after a
    resume that restored the session, whose rooms the server kept (`resume = True`: a lost
    connection resumes its session instead of starting afresh).
    """

    abstract = True

    path: ClassVar[str] = "/"
    subprotocols: ClassVar[tuple[str, ...]] = ()
    headers: ClassVar[Mapping[str, str]] = {}
    compression: ClassVar[bool | DeflateOptions] = False
    open_timeout: ClassVar[float] = 10.0
    request_timeout: ClassVar[float] = 10.0
    close_timeout: ClassVar[float] = 5.0
    # Unsolicited messages kept for `self.ws.recv()`; 0 keeps none (they are only counted).
    max_queue: ClassVar[int] = 0
    report_pushes: ClassVar[bool] = True
    # After a failed connect, wait this long before the next try, doubling up to 10 s.
    reconnect_delay: ClassVar[float] = 0.5
    # For a typed server with resumption: a lost connection resumes its session (its rooms,
    # with the messages missed meanwhile) instead of starting afresh; reported as `WS resume`.
    resume: ClassVar[bool] = False
    # Once every user is spawned, move what exists to the collector's permanent generation
    # (gc.freeze) until the test stops: full collections then skip the users' connections,
    # greenlets and frames, which otherwise stall every user for hundreds of ms at 10,000.
    freeze_gc: ClassVar[bool] = True
    # For wss://: the context to use, else one trusting `ca_file` (else `--ws-ca-file`), else
    # the system's CA certificates.
    ssl_context: ClassVar[ssl.SSLContext | None] = None
    ca_file: ClassVar[str | None] = None
    # While a user waits between tasks, what its connection receives (pushes, pings, the
    # server's close) is read this long after it came, with what came meanwhile: fewer reads
    # for thousands of users; a server's drain still ends within it.
    idle_read_delay: ClassVar[float] = 0.5

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.ws: ClientConnection | None = None
        self.pushes: Counter[str] = Counter()
        self._retry_at = 0.0
        self._retry_delay = self.reconnect_delay

    # -- the connection ------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = self.host
        if not host:
            raise ValueError(f"{type(self).__name__} needs a URL: set --host ws://HOST:PORT")
        if host.startswith(("http://", "https://")):
            host = "ws" + host[4:]
        if urlsplit(host).path in ("", "/"):
            return host.rstrip("/") + "/" + self.connect_path().lstrip("/")
        return host

    def connect_path(self) -> str:
        """The path (and query) this user opens, asked at each connect and resume, when
        `--host` has no path of its own: the class's `path` unless overridden, e.g. with a
        token per user. What it needs, it computes (a `functools.cached_property` makes it
        once per user), so it does not depend on what `on_start` set first."""
        return self.path

    def connect_headers(self) -> Mapping[str, str]:
        """The extra request headers of this user's connects (the class's `headers` unless
        overridden, e.g. with an `Authorization` of its own); asked as `connect_path` is."""
        return self.headers

    def tls_context(self) -> ssl.SSLContext | None:
        """For wss://: `ssl_context`, else a context trusting `ca_file` or `--ws-ca-file`,
        else None (the client's default: the system's CA certificates)."""
        if self.ssl_context is not None:
            return self.ssl_context
        options = self.environment.parsed_options
        ca_file = self.ca_file or (getattr(options, "ws_ca_file", None) if options is not None else None)
        return _trusting(ca_file) if ca_file else None

    def on_start(self) -> None:
        self.connect()

    def on_stop(self) -> None:
        self.disconnect()

    def on_connect(self) -> None:
        """Called after each successful connect: override to set the connection up."""

    def open_connection(self) -> ClientConnection:
        """A new connection with the class's settings (raises what `connect` raises)."""
        return connect(
            self.url,
            subprotocols=self.subprotocols,
            headers=self.connect_headers(),
            ssl_context=self.tls_context(),
            compression=self.compression,
            open_timeout=self.open_timeout,
            close_timeout=self.close_timeout,
            max_queue=self.max_queue,
            on_push=self.on_push if self.report_pushes else None,
            # With `resume`, the client tracks the rooms' positions; the user reopens and
            # resumes itself (reported, with its own backoff), never the client inside a task.
            resume=self.resume,
            reconnect=False,
            idle_read_delay=self.idle_read_delay,
        )

    def connect(self) -> bool:
        """Open `self.ws`, reported as `WS connect` with the handshake time; True on success."""
        start = time.perf_counter()
        try:
            self.ws = self.open_connection()
        except (OSError, WebSocketError) as exc:
            self._fire("WS", "connect", start, exception=failure_of(exc))
            self.ws = None
            self._back_off()
            return False
        self._fire("WS", "connect", start)
        self._retry_delay = self.reconnect_delay
        self.on_connect()
        return True

    def resume_session(self, lost: ClientConnection) -> bool:
        """Open a new connection and resume `lost`'s session on it, reported as `WS resume`;
        True when the user has a connection again.

        The server replays the rooms' messages after the last ones `lost` read (they reach
        `on_push` before the answer). A session it no longer has starts afresh: `on_connect`
        runs, as after a connect. When the new connection cannot be opened, `lost` stays, to be
        resumed after the backoff delay; when the resume itself fails (no answer, refused),
        the user starts afresh at its next request.
        """
        session = lost.session
        assert session is not None, "ensure_connected resumes only a connection with a session"
        start = time.perf_counter()
        for attempt in range(_DRAIN_RETRIES + 1):
            try:
                ws = self.open_connection()
            except (OSError, WebSocketError) as exc:
                self._fire("WS", "resume", start, exception=failure_of(exc))
                self._back_off()
                return False
            # Positions of the rooms without missed messages are kept for the next resume: a
            # room named without one would be replayed from the member's join.
            try:
                answer = ws.resume_session(session, lost.positions, timeout=self.request_timeout)
                break
            except (OSError, WebSocketError) as exc:
                ws.abort()
                drained = isinstance(exc, ConnectionClosed) and exc.code in _DRAIN_CODES
                if drained and attempt < _DRAIN_RETRIES:
                    continue  # a drain left the resume unanswered: not done, so again elsewhere
                self._fire("WS", "resume", start, exception=failure_of(exc))
                self.ws = None
                self._back_off()
                return False
            except BaseException:  # killed (the test stops): no connection left open behind
                ws.abort()
                raise
        restored = bool(answer.get("restored"))
        self.ws = ws
        self._retry_delay = self.reconnect_delay
        if not restored:
            failure: WebSocketFailure | None = WebSocketFailure("session not restored")
        elif answer.get("lost"):
            failure = WebSocketFailure("messages lost")
        else:
            failure = None
        self._fire("WS", "resume", start, exception=failure)
        if not restored:
            self.on_connect()
        return True

    def _back_off(self) -> None:
        """After a failed open: wait before the next try, twice as long each time, up to 10 s."""
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, 10.0)

    def ensure_connected(self) -> bool:
        """Open the connection again when it was lost (after the backoff delay), resuming its
        session with `resume`; True if open."""
        ws = self.ws
        if ws is not None and not ws.closed:
            return True
        delay = self._retry_at - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        if self.resume and ws is not None and ws.session is not None and ws.close_code in RECONNECT_CODES:
            return self.resume_session(ws)
        return self.connect()

    def disconnect(self) -> None:
        """Close cleanly (1000), waiting at most `close_timeout` for the server."""
        ws, self.ws = self.ws, None
        if ws is None:
            return
        try:
            ws.close(timeout=self.close_timeout)
        except (OSError, WebSocketError):
            ws.abort()

    # -- measuring -----------------------------------------------------------------------

    def _fire(
        self,
        request_type: str,
        name: str,
        start: float,
        *,
        length: int = 0,
        exception: Exception | None = None,
    ) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )

    @contextmanager
    def timed(self, name: str, request_type: str = "WS") -> Iterator[None]:
        """Report the block as one request named `name`, timed from entry to exit.

        WebSocket errors, timeouts and `WebSocketFailure` inside it become a failure of that
        request (and end the block); the user goes on with its next task.
        """
        start = time.perf_counter()
        try:
            yield
        except (OSError, WebSocketError, WebSocketFailure) as exc:
            self._fire(request_type, name, start, exception=failure_of(exc))
        else:
            self._fire(request_type, name, start)

    def request(
        self,
        message: Mapping[str, Any] | BaseModel,
        *,
        name: str | None = None,
        timeout: float | None = None,
        expect_errors: Collection[str] = (),
    ) -> dict[str, Any] | None:
        """`self.ws.request(message)`, reported under the message's `type` (or `name`) with its
        round-trip time; None when it failed (the failure is reported).

        An error reply whose code is in `expect_errors` (an outbid in an auction) is part of
        the load, not a failure: it is reported as a success named `<name> (<code>)`, with
        its round trip, and returned (the error reply, a dict whose `type` is "error").
        """
        if name is None:
            kind = getattr(message, "type", None) if isinstance(message, BaseModel) else message.get("type")
            name = str(kind)
        if not self.ensure_connected():
            return None
        ws = self.ws
        assert ws is not None
        start = time.perf_counter()
        try:
            reply = self._request_through_drains(ws, message, timeout)
        except RequestError as exc:
            if exc.code in expect_errors:
                self._fire("WS", f"{name} ({exc.code})", start)
                return dict(exc.reply)
            self._fire("WS", name, start, exception=failure_of(exc))
            return None
        except (OSError, WebSocketError) as exc:
            self._fire("WS", name, start, exception=failure_of(exc))
            return None
        self._fire("WS", name, start)
        return reply

    def _request_through_drains(
        self, ws: ClientConnection, message: Mapping[str, Any] | BaseModel, timeout: float | None
    ) -> dict[str, Any]:
        """`ws.request`, sent again on the resumed session after a drain left it unanswered: a
        drain answers every request it handled before its close frame, so this one was not."""
        wait = self.request_timeout if timeout is None else timeout
        for _ in range(_DRAIN_RETRIES):
            try:
                return ws.request(message, timeout=wait)
            except ConnectionClosed as exc:
                if not (self.resume and exc.code in _DRAIN_CODES):
                    raise
                if not ws.closed:
                    ws.abort()  # in its closing handshake: the server said what it had to
                if not self.ensure_connected():
                    raise
                assert self.ws is not None
                ws = self.ws
        return ws.request(message, timeout=wait)

    def on_push(self, message: str | bytes) -> None:
        """Count a message the server sent unasked, by its `type`, and fire `push_received`.

        Pushes are events, not requests: they have no response time, and as requests they
        would drag the Aggregated row's median to 0 ms. Their counts go to the end-of-run
        summary and to `<csv prefix>_pushes.csv`.
        """
        kind = push_type(message)
        self.pushes[kind] += 1
        push_received.fire(name=kind, length=len(message), user=self)


def _count_pushes(environment: Environment, **_: Any) -> None:
    if any(issubclass(cls, WebSocketUser) for cls in environment.user_classes):
        PushCounts(environment)


@functools.cache
def _trusting(ca_file: str) -> ssl.SSLContext:
    """One verifying context per CA file, shared by the users: loading it costs milliseconds."""
    return ssl.create_default_context(cafile=ca_file)


def _tls_options(parser: Any, **_: Any) -> None:
    parser.add_argument(
        "--ws-ca-file",
        default=None,
        help="CA certificates (PEM) to trust for wss://, e.g. a private CA's",
        env_var="LOCUST_WS_CA_FILE",
    )


def _freeze_gc_when_spawned(environment: Environment, **_: Any) -> None:
    """Freeze the collector once the users of a test are spawned; thaw it when the test stops."""
    if not any(issubclass(cls, WebSocketUser) and cls.freeze_gc for cls in environment.user_classes):
        return

    def freeze(**_: Any) -> None:
        gc.collect()
        gc.freeze()

    def thaw(**_: Any) -> None:
        gc.unfreeze()

    hooks: Any = environment.events  # locust's event hooks are untyped
    hooks.spawning_complete.add_listener(freeze)
    hooks.test_stop.add_listener(thaw)


_events: Any = events
_events.init.add_listener(_freeze_gc_when_spawned)
_events.init.add_listener(_count_pushes)
_events.init_command_line_parser.add_listener(_tls_options)
