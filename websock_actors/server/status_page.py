"""A live status page at GET /_status: what an operator looks at first, without Prometheus.

Off by default; `EndpointOptions(status_token=...)` (the CLI's `--status-page`) turns it on behind a
token, given as `?token=` or `Authorization: Bearer`, compared in constant time. The page
(status_page.html, no external script: it works offline) opens a WebSocket to `/_status/ws`,
which the server hands to `StatusPage` instead of the application: the status connections
never reach the application's hooks, authentication or rooms.

One sampler greenlet per server takes the figures once a second (`Server.metrics_total`:
summed over the workers when they share a metrics directory) and keeps the last five minutes
of points, so a page opened during an incident shows what led to it at once. Rates are
deltas between two samples: messages/s, errors and closes by code, and the handler p99 by
type estimated from the histogram buckets filled during the interval (as Prometheus'
`histogram_quantile` does). Every viewer gets the history on connect, then one point a
second, with the open connections and the rooms (a typed App's, by size; under `--workers`
this worker's only: the rooms are in-process, with a backplane too).
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from functools import lru_cache
from heapq import nsmallest
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import gevent

from ..protocol.http import Headers, Request, Response, error_response
from .app import Application
from .metrics import HANDLER_BUCKETS, Snapshot

if TYPE_CHECKING:
    from .connection import Connection

__all__ = [
    "MAX_ROOMS_SHOWN",
    "STATUS_PATH",
    "STATUS_WS_PATH",
    "StatusPage",
    "histogram_quantile",
    "is_status_path",
    "status_point",
]

log = logging.getLogger("websock_actors")

STATUS_PATH = "/_status"
STATUS_WS_PATH = "/_status/ws"
MAX_ROOMS_SHOWN = 100  # the largest rooms: a snapshot a second stays small with 100k rooms


def is_status_path(path: str) -> bool:
    """`/_status` and everything under it belong to the status page while it is on."""
    return path == STATUS_PATH or path.startswith(STATUS_PATH + "/")


def histogram_quantile(q: float, counts: list[int]) -> float | None:
    """The q-quantile of non-cumulative bucket counts (HANDLER_BUCKETS, then +Inf), linearly
    interpolated in its bucket like Prometheus; None without observations. A quantile in the
    +Inf bucket is the largest finite bound: all a histogram can say."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if index >= len(HANDLER_BUCKETS):
                return HANDLER_BUCKETS[-1]
            lower = HANDLER_BUCKETS[index - 1] if index else 0.0
            upper = HANDLER_BUCKETS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return HANDLER_BUCKETS[-1]


def _counter_deltas(now: Snapshot, before: Snapshot, name: str) -> dict[str, int]:
    """A counter's increases by label, the zero ones left out (a counter never goes down: a
    decrease, e.g. a worker's file not readable this once, counts as none)."""
    out: dict[str, int] = {}
    old: Mapping[str, Any] = before.get(name, {})
    for label, value in now.get(name, {}).items():
        grown = int(value) - int(old.get(label, 0))
        if grown > 0:
            out[label] = grown
    return out


def status_point(now: Snapshot, before: Snapshot, seconds: float, at: float) -> dict[str, Any]:
    """One point of the charts: what changed from `before` to `now`, `seconds` apart."""
    received = sum(now.get("websock_messages_received_total", {}).values())
    received -= sum(before.get("websock_messages_received_total", {}).values())
    p99: dict[str, float] = {}
    old_histograms = before.get("websock_handler_seconds", {})
    for label, histogram in now.get("websock_handler_seconds", {}).items():
        old = old_histograms.get(label)
        old_counts = old["counts"] if old is not None else [0] * len(histogram["counts"])
        grown = [max(0, a - b) for a, b in zip(histogram["counts"], old_counts, strict=True)]
        value = histogram_quantile(0.99, grown)
        if value is not None:
            p99[label] = round(value, 6)
    return {
        "t": round(at, 3),
        "connections": int(sum(now.get("websock_connections", {}).values())),
        "messages_per_second": round(max(0, received) / seconds, 3) if seconds > 0 else 0.0,
        "handler_p99": p99,
        "errors": _counter_deltas(now, before, "websock_error_replies_total"),
        "closes": _counter_deltas(now, before, "websock_closes_total"),
    }


def _room_table(app: Application) -> dict[str, Mapping[Any, Any]] | None:
    """This process's rooms of a typed App (behind a WSGIMount too), or None: a raw app has
    none. Looked up by shape, not type: the server layer does not import the typed one."""
    served: Any = getattr(app, "websocket_app", app)
    rooms = getattr(served, "rooms", None)
    local = getattr(rooms, "local", rooms)  # a RedisBackplane's in-process members
    table = getattr(local, "rooms", None)
    return table if isinstance(table, dict) else None


@lru_cache(maxsize=1)
def _template() -> str:
    return files(__package__).joinpath("status_page.html").read_text(encoding="utf-8")


class StatusPage(Application):
    """The status page's HTTP answers and its WebSocket application (the viewers)."""

    def __init__(
        self,
        token: str,
        totals: Callable[[], Snapshot],
        app: Application,
        *,
        summed: bool = False,
        interval: float = 1.0,
        window: float = 300.0,
    ) -> None:
        """`totals()` gives the figures (the server's `metrics_total`), `app` the rooms;
        `summed`: the figures are every worker's, the rooms this process's."""
        if not token or not token.strip():
            raise ValueError("the status token may not be empty")
        self._token = token.encode("utf-8")
        self._totals = totals
        self._app = app
        self.summed = summed
        self.interval = interval
        self.window = window
        self.points: deque[dict[str, Any]] = deque(maxlen=max(1, round(window / interval)))
        self.viewers: set[Connection] = set()
        self._sampler: Any = None
        self._last: tuple[Snapshot, float] | None = None

    # -- HTTP ------------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        """The request carries the token: `?token=` or `Authorization: Bearer <token>`."""
        given = [value.encode("utf-8") for value in request.query.get("token", [])]
        scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            given.append(credentials.strip().encode("utf-8"))
        # every candidate is compared, so the time taken says nothing about which one failed
        return sum(hmac.compare_digest(candidate, self._token) for candidate in given) > 0

    def answer(self, request: Request, upgrade: bool) -> Response | None:
        """The answer to a request under /_status, or None for an upgrade to /_status/ws that
        this application is to serve."""
        if not self.authorized(request):
            return error_response(401, "the status page needs its token", [("WWW-Authenticate", "Bearer")])
        path = request.bare_path
        if path == STATUS_WS_PATH:
            if upgrade:
                return None
            return error_response(426, "a WebSocket of the status page", [("Upgrade", "websocket")])
        if path == STATUS_PATH and not upgrade:
            if request.method not in ("GET", "HEAD"):
                return error_response(405, "GET the status page", [("Allow", "GET, HEAD")])
            return self.page()
        return error_response(404, "not found")

    def page(self) -> Response:
        """The HTML page, with the token (for its WebSocket) and a fresh CSP nonce."""
        nonce = secrets.token_urlsafe(16)
        body = (
            _template()
            .replace("__STATUS_NONCE__", nonce)
            .replace("__STATUS_TOKEN__", html.escape(self._token.decode("utf-8"), quote=True))
        )
        policy = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self';"
            " img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        headers = Headers(
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Cache-Control", "no-store"),  # it holds the token
                ("Referrer-Policy", "no-referrer"),
                ("X-Content-Type-Options", "nosniff"),
                ("X-Frame-Options", "DENY"),
                ("Content-Security-Policy", policy),
            ]
        )
        return Response(200, "OK", headers, body.encode("utf-8"))

    # -- sampling ----------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling in the current hub (the server's), before anyone looks."""
        if self._sampler is None:
            self._sampler = gevent.spawn(self._sample_forever)

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.kill(block=False)  # it waits in gevent.sleep only
            self._sampler = None

    def _sample_forever(self) -> None:
        next_at = time.monotonic()
        while True:
            try:
                self.sample()
            except Exception:
                log.exception("the status page could not take its figures")
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a stalled hub: start the schedule again rather than catch up
                next_at, delay = time.monotonic(), 0.0
            gevent.sleep(delay)

    def sample(self) -> dict[str, Any] | None:
        """Take the figures; from the second call on, add a point and push it to the viewers."""
        now = self._totals()
        at = time.monotonic()
        last, self._last = self._last, (now, at)
        if last is None:
            return None
        point = status_point(now, last[0], at - last[1], time.time())
        self.points.append(point)
        if self.viewers:
            message = self.message([point], point["connections"])
            for conn in list(self.viewers):
                conn.send(message)
        return point

    def rooms(self) -> tuple[list[dict[str, Any]], int] | None:
        """The largest rooms of this process (name and size), and how many there are."""
        table = _room_table(self._app)
        if table is None:
            return None
        largest = nsmallest(MAX_ROOMS_SHOWN, table.items(), key=lambda item: (-len(item[1]), item[0]))
        return [{"name": name, "size": len(members)} for name, members in largest], len(table)

    def message(self, points: list[dict[str, Any]], connections: int) -> str:
        """What a viewer receives: new points, and the figures of the moment."""
        rooms = self.rooms()
        status: dict[str, Any] = {
            "type": "status",
            "interval": self.interval,
            "window": self.window,
            "summed": self.summed,
            "points": points,
            "connections": connections,
            "rooms": None if rooms is None else rooms[0],
            "rooms_total": None if rooms is None else rooms[1],
            "rooms_scope": None if rooms is None else ("worker" if self.summed else "server"),
        }
        return json.dumps(status, separators=(",", ":"))

    # -- the viewers' WebSocket ---------------------------------------------------------

    def handle_connect(self, conn: Connection) -> None:
        """A viewer: the history at once, then a point a second (pushed by the sampler)."""
        self.viewers.add(conn)
        try:
            connections = int(sum(self._totals().get("websock_connections", {}).values()))
        except OSError as exc:  # the workers' metrics directory: the sampler's last figure will do
            log.warning("the status page could not take its figures: %s", exc)
            connections = self.points[-1]["connections"] if self.points else 0
        conn.send(self.message(list(self.points), connections))

    def handle_message(self, conn: Connection, message: str | bytes) -> None:
        """Viewers only listen; what they send is ignored."""

    def handle_close(self, conn: Connection, code: int, reason: str) -> None:
        self.viewers.discard(conn)
