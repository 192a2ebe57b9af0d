"""Typed applications: a pydantic model per JSON message `type`, routed to handlers.

    app = App("chat")

    @app.handler
    def say(msg: Say, ctx: Context) -> Said | None: ...

    @app.handler(actor="rooms")          # one at a time, in order, in the actor "rooms"
    def count(msg: Count, ctx: Context) -> Counted: ...

A handler without `actor=` runs for its connection in the shared runner (server/runner.py),
which may wait: concurrently across connections, in order per connection. Bad frames get
typed errors (`invalid_json`, `unknown_type`, `validation_error`, `unsupported_data`); a
handler that raises gets the sender a `handler_error` and never closes the connection; a
named actor that raised is restarted by the supervisor within its policy, and answers
`handler_unavailable` beyond it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import BaseModel

from ..actors.actor import Actor, ActorRef
from ..actors.supervisor import RestartPolicy, Supervisor
from ..errors import CloseCode, ConfigurationError
from ..protocol.http import Request, Response
from ..server.app import Application
from ..server.server_options import EndpointOptions
from .api import ServerApi
from .auth import Authenticator
from .context import Context
from .dispatch import Dispatcher
from .members import MemberHooks
from .metrics import app_metrics
from .numbered import RoomLost
from .pages import HttpSide
from .ratelimit import DEFAULT_JOIN_RATE, RateLimit, RateLimitKey, rate_limit_key
from .resume import ResumePolicy, SessionOpened
from .resumption import Resumption
from .rooms import LocalRooms, Rooms
from .router import Handler, Route, Router
from .schema import asyncapi_document, json_schema_document
from .services import HandlerServices, Published
from .users import UserAddressing

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["App"]

log = logging.getLogger("websock_actors")

H = TypeVar("H", bound=Handler)

DEFAULT_MAX_TYPED_MESSAGE = 1024 * 1024
_NOT_STARTED = (
    "app.broadcast works only in the server's process once the app started; from any other "
    "process (a web view, a Celery task, a script) publish with an Emitter: "
    "websock_actors.Emitter('redis://...').broadcast(room, message)"
)
M = TypeVar("M", bound=type[BaseModel])

def _drop_letter(message: Any) -> None:
    log.warning("dropped a message to an actor that is down: %r", message)


class App(UserAddressing, Application):
    """A typed application; serve it with `websock-actors run module:app`."""

    # Handlers get their connection through `ctx`, never from the current greenlet: they run
    # in the hub's shared runner (server/runner.py), in order per connection, and may wait.
    shared_runner = True

    def __init__(
        self,
        title: str = "websock_actors app",
        version: str = "0.1.0",
        *,
        restart: RestartPolicy | None = None,
        actor_mailbox_size: int = 1000,
        backplane: Rooms | None = None,
        max_message_size: int | None = DEFAULT_MAX_TYPED_MESSAGE,
        rate_limit: RateLimit | None = None,
        join_rate: RateLimit | None = DEFAULT_JOIN_RATE,
        rate_limit_per: RateLimitKey = "client",
        resume: ResumePolicy | None = None,
        inline: bool = False,
        max_rooms: int = 100,
    ) -> None:
        """`backplane`: where rooms, presence and broadcasts live (default: this process's
        memory; `RedisBackplane(url)` shares them between processes and hosts).
        `max_message_size`: the largest frame accepted (1 MiB; a larger one closes with 1009):
        validating JSON costs CPU in proportion to its size, and the whole hub waits for it.
        `rate_limit`: every client's limit over all its messages (None: none); handlers
        add limits per message type (`@app.handler(rate_limit=...)`). A client is its
        identity when authenticated, else its address (typed/ratelimit.py).
        `rate_limit_per`: "client" (the default, as above: reconnecting refills nothing) or
        "connection" (each connection its own buckets: for load tests whose thousands of
        users come from one address).
        `join_rate`: each client's `ctx.join`s (5 a second, 100 at once; None: no limit):
        a join into a large room is news its members pay for; past it, `rate_limited`.
        `resume`: sessions a client can resume after a dropped connection, with the room
        messages it missed (typed/resume.py has the wire protocol); None: off.
        `max_rooms`: rooms one connection may be in at once (a `join` past it gets
        `too_many_rooms`): each costs memory here and in Redis.
        `inline`: no handler ever blocks (see `Application.inline`): they run in the event
        loop's readiness callback; a handler that blocks there answers `handler_error`.
        Not with a `backplane`, whose Redis calls may wait."""
        self.inline = inline
        if backplane is not None:
            self._check_inline_backplane()
        self.title = title
        self.max_message_size = max_message_size
        self.version = version
        self.router = Router()
        self.pushes: list[type[BaseModel]] = []  # server-initiated messages, for the schema
        self.restart_policy = restart or RestartPolicy()
        self.actor_mailbox_size = actor_mailbox_size
        # what the Contexts reach: rooms, broadcasts, error counts (one per app)
        rooms = backplane if backplane is not None else LocalRooms()
        self.services = HandlerServices(rooms, max_rooms, join_rate)
        self.has_backplane = backplane is not None
        self.supervisor: Supervisor | None = None
        self._supervisor_ref: ActorRef[Supervisor] | None = None
        self.http = HttpSide()  # pages and the authentication hook
        self._actors: dict[str, Callable[[], Actor]] = {}
        self.members = MemberHooks(self.services)  # on_connect, on_disconnect, ...
        self.bytes_handler: Callable[[bytes, Context], None] | None = None
        self.rate_limit = rate_limit
        self.rate_limit_per: RateLimitKey = rate_limit_key(rate_limit_per)
        self.type_rate_limits: dict[str, RateLimit] = {}  # per message type, by tag
        self.resumption: Resumption | None = None
        if resume is not None:
            self.resumption = Resumption(
                resume, self.rooms, member_gone=self.members.gone, rejoined=self.members.rejoined,
                authenticates=lambda: self.authenticates,
            )
            self.services.resumption = self.resumption
            self.resumption.graces.user_done = self.services.users.graces_over
        self.dispatcher = self.services.dispatcher = Dispatcher(self)
        if type(self).handle_message is App.handle_message:
            # The server calls the dispatcher straight away: a call less per message. Set here,
            # so that a handle_message set on the instance later still replaces it; not when
            # a subclass has its own, which must be called.
            self.handle_message = self.dispatcher.handle  # type: ignore[method-assign]
        if self.resumption is not None:
            self.router.add(self.resumption.handler())
            self.push(SessionOpened)
            self.push(RoomLost)

    # -- registration ----------------------------------------------------------------

    @overload
    def handler(self, func: H) -> H: ...
    @overload
    def handler(self, *, actor: str | None = None, rate_limit: RateLimit | None = None) -> Callable[[H], H]:
        ...

    def handler(
        self, func: H | None = None, *, actor: str | None = None, rate_limit: RateLimit | None = None
    ) -> H | Callable[[H], H]:
        """Register a handler; a thin layer over `add`."""

        def register(f: H) -> H:
            self.add(f, actor=actor, rate_limit=rate_limit)
            return f

        return register(func) if func is not None else register

    def add(self, func: Handler, *, actor: str | None = None, rate_limit: RateLimit | None = None) -> Route:
        """Register `def func(msg: Model, ctx: Context) -> Reply | None`, optionally in a named
        actor; `rate_limit` limits each client's messages of this type."""
        route = self.router.add(func, actor=actor)
        if rate_limit is not None:
            self.type_rate_limits[route.tag] = rate_limit
        return route

    def authenticate(self, func: Authenticator) -> Authenticator:
        """`func(request: AuthRequest) -> identity` runs before the upgrade of every WebSocket
        request: an identity (not None) admits it and is kept as `ctx.identity`;
        `raise AppRefusal(401 | 403, reason)` refuses it with that HTTP status, and None with 401."""
        self.http.authenticator = func
        return func

    def push(self, model: M) -> M:
        """Declare a message the server pushes unasked (it appears in the schema)."""
        if model not in self.pushes:
            self.pushes.append(model)
        return model

    def on_connect(self, func: Callable[[Context], bool | None]) -> Callable[[Context], bool | None]:
        """`func(ctx)` runs when a connection opens; returning False refuses it (close 1008)."""
        self.members.on_connect = func
        return func

    def on_disconnect(self, func: Callable[[Context], None]) -> Callable[[Context], None]:
        """`func(ctx)` runs when a connection closed, before it leaves its rooms."""
        self.members.on_disconnect = func
        return func

    def on_member_lost(
        self, func: Callable[[str, Any], BaseModel | None]
    ) -> Callable[[str, Any], BaseModel | None]:
        """`func(room, presence) -> message | None` runs, on one surviving process, for each
        member of a process that vanished without closing its connections (kill -9, a lost
        host): the message it returns goes to the room, as `on_disconnect` would have sent.
        Only a backplane can notice such a loss."""
        self.members.on_member_lost = func
        return func

    def use_backplane(self, backplane: Rooms) -> None:
        """Put rooms on `backplane` (the CLI's --redis does this); before the server starts."""
        if self.supervisor is not None:
            raise ConfigurationError("the backplane must be chosen before the app starts")
        self._check_inline_backplane()
        self.rooms = backplane
        self.has_backplane = True

    def refuse_rooms(self, reason: str) -> None:
        """From now on, using a room (join, leave, broadcast, list) raises
        ConfigurationError(reason): the CLI's `--workers N` without a backplane calls it,
        since every process would keep rooms of its own."""
        self.services.rooms_refusal = reason

    @property
    def rooms(self) -> Rooms:
        """Where rooms, presence and broadcasts live (see `backplane`)."""
        return self.services.rooms

    @rooms.setter
    def rooms(self, rooms: Rooms) -> None:
        self.services.rooms = rooms
        if self.resumption is not None:
            self.resumption.rooms = rooms

    @property
    def max_rooms(self) -> int:
        return self.services.max_rooms

    @property
    def join_rate(self) -> RateLimit | None:
        """Each client's limit on joins (see `join_rate` above); set it before the app starts."""
        return self.services.join_rate

    @join_rate.setter
    def join_rate(self, limit: RateLimit | None) -> None:
        self.services.join_rate = limit

    @property
    def rooms_refused(self) -> int:
        """Joins refused past `max_rooms`."""
        return self.services.rooms_refused

    @property
    def error_replies(self) -> dict[str, int]:
        """Typed error replies sent, by code."""
        return self.services.error_replies

    def _check_inline_backplane(self) -> None:
        if self.inline:
            raise ConfigurationError("inline=True needs the in-process rooms: Redis calls may wait")

    def on_resume(self, func: Callable[[Context, set[str]], None]) -> Callable[[Context, set[str]], None]:
        """`func(ctx, rooms)` runs after a resume that came after the member's grace: it was
        reported as left (`on_disconnect`) and has just joined `rooms` again (tell the room)."""
        self.members.on_resume = func
        return func

    @property
    def authenticates(self) -> bool:
        return self.http.authenticator is not None

    def on_bytes(self, func: Callable[[bytes, Context], None]) -> Callable[[bytes, Context], None]:
        """`func(data, ctx)` receives binary frames (without it they get `unsupported_data`)."""
        self.bytes_handler = func
        return func

    def add_actor(self, name: str, factory: Callable[[], Actor]) -> None:
        """Start an actor of the app's own (a producer, a cache) under the supervisor."""
        if name in self._actors:
            raise ConfigurationError(f"an actor named {name!r} is already registered")
        self._actors[name] = factory

    def broadcast(self, room: str, message: BaseModel) -> int:
        """Send a model to every member of `room`, in the server's process (else: `Emitter`):
        the deliveries queued here."""
        return self.publish(room, message).deliveries

    def publish(self, room: str, message: BaseModel) -> Published:
        """`broadcast`, telling where a numbered room (resumption on) kept it: its seq and epoch."""
        if self.supervisor is None:
            raise ConfigurationError(_NOT_STARTED)
        return self.services.publish(room, message)

    def send_to_room(
        self, room: str, message: BaseModel, exclude: Connection | None = None, ctx: Context | None = None
    ) -> int:
        """Send a model to `room` (not to `exclude`): see `HandlerServices.send_to_room`."""
        return self.services.send_to_room(room, message, exclude, ctx.pending if ctx is not None else None)

    def api_endpoint(self, options: EndpointOptions) -> ServerApi:
        """The server API's handler of /_api/ (typed/api.py), asked for by the Server when
        `options.api_key` is given; built after the app's pushes are declared."""
        assert options.api_key is not None
        return ServerApi(self, options.api_key, options.api_rate, options.api_burst)

    def page(self, path: str, body: str | bytes, content_type: str = "text/html; charset=utf-8") -> None:
        """Serve `body` to plain HTTP GETs of `path` on the WebSocket's port."""
        self.http.add_page(path, body, content_type)

    # -- lifecycle (called by the server) ------------------------------------------------

    def handle_start(self) -> None:
        """Build the validator and start the supervisor and the named actors."""
        if self.supervisor is not None:
            return
        self.router.build()
        self.dispatcher.start()
        ref = Supervisor.start(self.restart_policy)
        supervisor = ref.actor
        assert supervisor is not None
        self.dispatcher.supervise_actors(supervisor, self.actor_mailbox_size)
        for name, factory in self._actors.items():
            supervisor.supervise(name, factory, _drop_letter)
        self.supervisor, self._supervisor_ref = supervisor, ref
        if self.resumption is not None:
            self.resumption.start()
        lost = self.members.lost if self.members.on_member_lost is not None else None
        self.rooms.start(lost, self.resumption.reset if self.resumption is not None else None)

    def handle_stop(self) -> None:
        """After the connections closed: stop the handler actors, the supervisor, the rooms."""
        if self.resumption is not None:
            self.resumption.stop()
        if self._supervisor_ref is not None:
            self._supervisor_ref.stop(timeout=10.0)
            self.rooms.stop()
        self.supervisor = self._supervisor_ref = None

    def not_ready(self) -> str | None:
        """Not ready while the rooms' backplane is disconnected (rooms would fail)."""
        if self.has_backplane and getattr(self.rooms, "connected", True) is False:
            return "the rooms' backplane (Redis) is unavailable"
        return None

    def drain_close(self) -> tuple[int, str]:
        """With resumable sessions that other processes see, a stopping server sends its
        clients elsewhere with 1012 (they resume there); otherwise 1001."""
        if self.resumption is not None and self.rooms.sessions.shared:
            return CloseCode.SERVICE_RESTART, "service restart"
        return super().drain_close()

    def handle_request(self, request: Request) -> Response | None:
        """Plain GETs get the app's pages; an upgrade runs the authentication hook."""
        return self.http.handle_request(request)

    def handle_connect(self, conn: Connection) -> None:
        self.members.opened(conn)

    def handle_close(self, conn: Connection, code: int, reason: str) -> None:
        self.dispatcher.closed(conn)
        if self.supervisor is not None:
            self.members.closed(conn, code)

    # -- messages --------------------------------------------------------------------

    def handle_message(self, conn: Connection, message: str | bytes) -> None:
        self.dispatcher.handle(conn, message)

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Messages and handler time by type, error replies by code, broadcasts, restarts."""
        return app_metrics(self)

    # -- description ---------------------------------------------------------------

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of every message the app accepts and sends (typed/schema.py)."""
        numbered = self.resumption is not None
        return json_schema_document(self.title, self.router, self.pushes, numbered=numbered)

    def asyncapi(self, *, address: str = "/", host: str = "localhost:8000") -> dict[str, Any]:
        """An AsyncAPI 3.0 document of the app (typed/schema.py)."""
        numbered = self.resumption is not None
        return asyncapi_document(
            self.title, self.version, self.router, self.pushes, address=address, host=host, numbered=numbered
        )
