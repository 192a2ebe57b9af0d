"""The typed message path, per message: rate limit, decode, route, run, reply.

`App` registers handlers and runs the app's lifecycle; a `Dispatcher` is what the server
calls with each message. A handler without an actor runs for the connection (in the
shared runner, or its actor; in order per connection); one with `actor=` is told to that
named actor (`HandlerActor`), which runs its messages one at a time. Whatever the handler
does, the sender gets one answer: its reply, `ack` for a request whose handler returned None, or a typed error
(`invalid_json`, `unknown_type`, `validation_error`, `rate_limited`, `handler_error`,
`overloaded`, `handler_unavailable`, `unsupported_data`).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..actors.actor import Actor
from ..errors import (
    ActorStopped,
    CloseCode,
    ConnectionClosed,
    InvalidMessage,
    MailboxFull,
    MessageError,
)
from ..server.metrics import HANDLER_BUCKETS, Histogram
from .context import Context
from .messages import Ack, ErrorReply, to_json
from .ratelimit import ClientLimits, ClientTable, client_key, retry_after_ms
from .router import Route, peek

if TYPE_CHECKING:
    from ..actors.supervisor import Supervisor
    from ..server.connection import Connection
    from .app import App

__all__ = ["Dispatcher", "HandlerActor", "LiveRoute"]

log = logging.getLogger("websock_actors")

Job = tuple["LiveRoute", BaseModel, Context]
# What a connection sends after numbered broadcasts of its own are kept: (their pending
# results, the text or "" for nothing, the request's id for the error when one was not).
Held = tuple[list[Any], str, Any]

class LiveRoute:
    """A route as the message path uses it: its handler, its counters, and whether its
    reply can be serialized as is (a model with an `id`, without to_json's exclusions)."""

    __slots__ = ("actor", "handler", "histogram", "received", "reply", "reply_json", "tag")

    def __init__(self, route: Route) -> None:
        self.tag = route.tag
        self.handler = route.handler
        self.actor = route.actor
        # ErrorReply drops a None `retry_after_ms`: it keeps the general path.
        self.reply = route.reply if route.reply is not ErrorReply else None
        # The reply model's serializer, taken from its class once (an attribute read on a
        # pydantic model goes through its __getattr__ hook).
        self.reply_json: Any = self.reply.__pydantic_serializer__.to_json if self.reply is not None else None
        self.received = 0
        self.histogram = Histogram()


class HandlerActor(Actor):
    """A named handler actor: its messages run one at a time; `ctx.actor_state` is its state."""

    def __init__(self, dispatcher: Dispatcher, mailbox_size: int) -> None:
        self.dispatcher = dispatcher
        self.mailbox_size = mailbox_size
        self.state: dict[str, Any] = {}

    def on_receive(self, message: Any) -> None:
        live, msg, ctx = message
        ctx.actor_state = self.state
        self.dispatcher.run(live, msg, ctx, True)


class Dispatcher:
    """The message path of one App (see the module's docstring)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.services = app.services
        self.router = app.router
        self.rate_limited = False  # the one check on the hot path (set at start)
        # each open connection's client's buckets, by connection id: one lookup a message
        self.limits: dict[int, ClientLimits] = {}
        self.clients = ClientTable()  # the clients' buckets, kept across their reconnects
        # metrics (server/metrics.py): counted here (and on each LiveRoute), read on scrape
        self.live: dict[str, LiveRoute] = {}  # by tag
        self.rejected_by_label: dict[str, int] = {}  # "_unknown", "_invalid"
        # connection ids whose session must be written once their handler is done: the
        # resumption's set, or one that stays empty
        self.sessions_changed: set[int] = set()
        self.numbered = False  # broadcasts may be pending: a handler's replies wait for them
        # what connections send after their numbered broadcasts are kept, in order
        self.held: dict[int, deque[Held]] = {}

    def start(self) -> None:
        """After registration: whether any rate limit applies."""
        app = self.app
        self.rate_limited = app.rate_limit is not None or bool(app.type_rate_limits)
        self.limits.clear()
        self.clients.clear()  # a restarted app starts with full buckets
        # the Redis backplane's shared budgets: a client gets its rate once over all processes
        self.clients.leases = getattr(app.rooms, "rate_leases", None)
        if app.resumption is not None:
            self.sessions_changed = app.resumption.changed
            self.numbered = True

    def supervise_actors(self, supervisor: Supervisor, mailbox_size: int) -> None:
        """Start a HandlerActor for each actor named by a route, under `supervisor`."""
        for name in sorted({r.actor for r in self.router.routes.values() if r.actor}):
            supervisor.supervise(name, lambda: HandlerActor(self, mailbox_size), self.dead_letter)

    def closed(self, conn: Connection) -> None:
        limits = self.limits.pop(conn.id, None)
        if limits is not None:
            self.clients.release(limits)

    def limits_of(self, conn: Connection) -> ClientLimits:
        """The buckets of `conn`'s client (see typed/ratelimit.py), found at its first use."""
        limits = self.limits.get(conn.id)
        if limits is None:
            app = self.app
            key = client_key(conn, app.rate_limit_per)
            limits = self.clients.acquire(key, app.rate_limit, app.type_rate_limits, self.services.join_rate)
            self.limits[conn.id] = limits
        return limits

    def _new_live_route(self, tag: str) -> LiveRoute:
        """At a route's first message: whatever registered it, and when."""
        live = self.live[tag] = LiveRoute(self.router.routes[tag])
        return live

    def handle(self, conn: Connection, message: str | bytes) -> None:
        app = self.app
        services = self.services
        if self.rate_limited and self._over_limit(conn, message):
            return
        if isinstance(message, bytes):
            self._run_bytes(message, Context(conn, services))
            return
        try:
            msg = self.router.decode(message)
        except InvalidMessage as exc:
            label = "_unknown" if exc.code == "unknown_type" else "_invalid"
            counts = self.rejected_by_label
            counts[label] = counts.get(label, 0) + 1
            Context(conn, services, exc.message_id).error(exc.code, exc.detail, exc.errors)
            return
        fields = msg.__dict__  # routed models have `type` and `id` (Router.add checks)
        try:
            live = self.live[fields["type"]]
        except KeyError:
            live = self._new_live_route(fields["type"])
        live.received += 1
        ctx = Context(conn, services, fields["id"])
        if live.actor is None:
            self.run(live, msg, ctx, False)  # positional: a faster call
            return
        assert app.supervisor is not None
        try:
            app.supervisor.child(live.actor).tell((live, msg, ctx))
        except MailboxFull:
            ctx.error("overloaded", f"actor {live.actor!r} is busy; try again later")
        except ActorStopped:
            ctx.error("handler_unavailable", f"actor {live.actor!r} is down")

    def _over_limit(self, conn: Connection, message: str | bytes) -> bool:
        """Take the message's tokens, before validation; or answer `rate_limited` (and close
        with 1008 after `close_after` refusals in a row) and return True."""
        app = self.app
        limits = self.limits.get(conn.id)
        if limits is None:
            limits = self.limits_of(conn)
        message_id: Any = None
        tag: object = None
        text = not isinstance(message, bytes)
        if text and app.type_rate_limits:  # the type is needed first: one light scan
            message_id, tag = peek(message)
        bucket = limits.take(tag)
        if bucket is None:
            return False
        if text and not app.type_rate_limits:
            message_id, _ = peek(message)  # the error path only
        what = "messages" if bucket is limits.total else f"{tag!r} messages"
        ctx = Context(conn, self.services, message_id)
        ctx.error("rate_limited", f"too many {what}; slow down", retry_after_ms=retry_after_ms(bucket))
        close_after = bucket.limit.close_after
        if close_after is not None and limits.rejected >= close_after:
            log.debug("%r: %d rate-limited messages in a row: closed", conn, limits.rejected)
            conn.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        return True

    def run(self, live: LiveRoute, msg: BaseModel, ctx: Context, crash: bool) -> None:
        """Call the handler and answer; with `crash`, re-raise so the actor is restarted."""
        started = perf_counter()
        if self.numbered:
            ctx.pending = []  # its numbered broadcasts hold its replies back, not the handler
        try:
            result = live.handler(msg, ctx)
        except MessageError as exc:
            live.histogram.observe(perf_counter() - started)
            ctx.error(exc.code, exc.detail, retry_after_ms=getattr(exc, "retry_after_ms", None))
            return
        except Exception:
            live.histogram.observe(perf_counter() - started)
            name = getattr(live.handler, "__name__", "?")
            log.exception("handler %s() failed on a %r message", name, live.tag)
            ctx.error("handler_error", f"the {live.tag!r} handler failed")
            if crash:
                raise
            return
        finally:
            if self.sessions_changed:  # rooms joined or left: the session, state included, before the reply
                assert self.app.resumption is not None
                self.app.resumption.save_changed()
        seconds = perf_counter() - started
        histogram = live.histogram  # Histogram.observe, written out: one call less per message
        histogram.counts[bisect_left(HANDLER_BUCKETS, seconds)] += 1
        histogram.sum += seconds
        request_id = ctx.request_id
        if type(result) is live.reply and request_id is not None:
            # The common answer, what ctx.reply does without its general send path; the
            # route's reply model has an `id` (Router.add checks), so stamp_request_id's
            # work is just this.
            fields = result.__dict__
            if fields["id"] is None:
                fields["id"] = request_id
                result.__pydantic_fields_set__.add("id")
            ctx.replied = True
            data = live.reply_json(result)
            if ctx.pending or self.held:
                self.send_after(ctx, data.decode())
            else:
                try:
                    ctx.conn.send_utf8(data)  # pydantic's UTF-8 as is: no decode, no encode
                except ConnectionClosed:
                    pass
        elif result is not None:
            ctx.reply(result)
        elif request_id is not None and not ctx.replied:
            ctx.reply(Ack())
        if ctx.pending:  # broadcasts after the reply, or without one: tell the sender if lost
            self.send_after(ctx, "")

    def send_after(self, ctx: Context, text: str) -> None:
        """Send `text` ("": nothing) to ctx's connection once the broadcasts it has pending,
        and whatever that connection holds already, are kept: in order. A broadcast that was
        not kept turns it into a `backplane_unavailable` error (the sender was not answered)."""
        conn = ctx.conn
        pending = ctx.pending or []
        ctx.pending = []
        queue = self.held.get(conn.id)
        if queue is None:
            if not pending:
                try:
                    conn.send(text)
                except ConnectionClosed:
                    pass
                return
            queue = self.held[conn.id] = deque()
            conn.hold_close()  # a drain closes once the held replies are sent
        queue.append((pending, text, ctx.request_id))
        for result in pending:
            result.rawlink(lambda _result, conn=conn: self._release(conn))
        self._release(conn)

    def _release(self, conn: Connection) -> None:
        queue = self.held.get(conn.id)
        while queue:
            pending, text, request_id = queue[0]
            if not all(result.ready() for result in pending):
                return
            queue.popleft()
            failed = next((result for result in pending if not result.successful()), None)
            if failed is not None:
                self.services.count_error("backplane_unavailable")
                detail = getattr(failed.exception, "detail", str(failed.exception))
                error = ErrorReply(id=request_id, code="backplane_unavailable", detail=detail)
                text = to_json(error)
            if text:
                try:
                    conn.send(text)
                except ConnectionClosed:
                    pass
        if self.held.pop(conn.id, None) is not None:
            conn.release_close()

    def _run_bytes(self, data: bytes, ctx: Context) -> None:
        on_bytes = self.app.bytes_handler
        if on_bytes is None:
            ctx.error("unsupported_data", "binary frames are not accepted here; send JSON text")
            return
        try:
            on_bytes(data, ctx)
        except MessageError as exc:
            ctx.error(exc.code, exc.detail)
        except Exception:
            log.exception("bytes handler failed")
            ctx.error("handler_error", "the bytes handler failed")

    def dead_letter(self, job: Job) -> None:
        """A message queued for an actor that went down for good."""
        live, _msg, ctx = job
        ctx.error("handler_unavailable", f"actor {live.actor!r} is down")

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Messages and handler time by type."""
        live = self.live
        return {
            "websock_messages_received_total": {
                **{tag: route.received for tag, route in live.items() if route.received},
                **self.rejected_by_label,
            },
            "websock_handler_seconds": {
                tag: route.histogram.snapshot() for tag, route in live.items() if route.received
            },
        }
