"""The figures of one `Server`: gathered, summed over the workers, served on a port of their own.

`snapshot` gathers this process's counters (metrics.py's `ServerStats`), its gauges and
what the application counts itself; `total` is the snapshot, or with a metrics directory
(`--workers`) the sum of every worker's. A worker writes its snapshot there every second
(`start(write=True)`), when another worker asks (it looks at the ask file every 50 ms, a
`stat`), and once more when it stops, so that its last counts stay in the sum.

A scrape (`exposition`) is rendered at most once a second per process: within the second,
scrapes get the same bytes, and a scrape that comes while one renders waits for it. So a
client scraping in a loop costs the server one render a second, not one per request. The
render asks the other workers for fresh snapshots and waits for them (a fraction of a
second at most: a worker stuck in a loop cannot hold the scrape), so that a scrape shows
what every worker counts at that moment, not what it counted up to a second before.
Asking rather than writing on every change keeps the message path as it is (plain integer
increments) and costs an idle worker one `stat` per 50 ms.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent
from gevent.event import AsyncResult

from .app import Application
from .metrics import (
    ServerStats,
    Snapshot,
    ask_for_snapshots,
    asked_since,
    merge_snapshots,
    metrics_response,
    read_worker_snapshots,
    write_snapshot,
)

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["ServerMetrics"]

log = logging.getLogger("websock_actors")

CACHE_SECONDS = 1.0  # a rendered exposition answers the scrapes of this long
ASK_POLL_SECONDS = 0.05  # how often a worker looks whether another asks for its snapshot
ASK_TIMEOUT_SECONDS = 0.25  # how long a render waits for the other workers' answers


class ServerMetrics:
    """The figures of a server whose open connections are `connections`."""

    def __init__(
        self,
        stats: ServerStats,
        connections: Mapping[int, Connection],
        app: Application,
        directory: str | None,
    ) -> None:
        self.stats = stats
        self.connections = connections
        self.app = app
        self.directory = directory  # where the workers' snapshots meet, or None
        self._writer: Any = None
        self._server: Any = None
        self._cached: tuple[bytes, str] | None = None
        self._cached_at = 0.0  # time.monotonic() when the cached render began
        self._rendering: AsyncResult[tuple[bytes, str]] | None = None  # scrapes meanwhile wait
        self.renders = 0  # expositions rendered: at most one a second

    def snapshot(self) -> Snapshot:
        """This process's figures, by metric name and label value (metrics.py)."""
        stats = self.stats
        snapshot: Snapshot = {
            "websock_connections": {"": len(self.connections)},
            "websock_connections_total": {"": stats.connections_total},
            "websock_handshake_failures_total": dict(stats.handshake_failures),
            "websock_http_requests_total": dict(stats.http_requests),
            "websock_closes_total": dict(stats.closes),
            "websock_messages_received_total": {"text": stats.messages_text, "binary": stats.messages_binary},
            "websock_messages_sent_total": {"": stats.messages_sent},
            "websock_bytes_received_total": {"": stats.bytes_received},
            "websock_bytes_sent_total": {"": stats.bytes_sent},
            "websock_dropped_messages_total": dict(stats.dropped),
            "websock_forwarded_invalid_total": dict(stats.forwarded_invalid),
            "websock_mailbox_bytes": {"": max((c._queued for c in self.connections.values()), default=0)},
        }
        for name, values in self.app.metrics().items():
            if name == "websock_messages_received_total":  # the app knows the types
                snapshot[name] = dict(values)
            else:
                into = snapshot.setdefault(name, {})
                for label, value in values.items():
                    into[label] = into[label] + value if label in into else value
        return snapshot

    def total(self, *, fresh: bool = False) -> Snapshot:
        """The figures to expose: this process's, or with a directory every worker's summed.
        `fresh`: ask the other workers for their snapshots and wait a moment for them."""
        since = time.monotonic_ns()
        snapshot = self.snapshot()
        directory = self.directory
        if directory is None:
            return snapshot
        write_snapshot(directory, snapshot)
        live, dead, stale = read_worker_snapshots(directory, since)
        if fresh and stale:
            ask_for_snapshots(directory)
            deadline = time.monotonic() + ASK_TIMEOUT_SECONDS
            while stale and time.monotonic() < deadline:
                gevent.sleep(0.005)
                live, dead, stale = read_worker_snapshots(directory, since)
        return merge_snapshots(live, dead)

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of a scrape: rendered at most once a second."""
        started = time.monotonic()
        cached = self._cached
        if cached is not None and started - self._cached_at < CACHE_SECONDS:
            return cached
        rendering = self._rendering
        if rendering is not None:
            waited = rendering.get()
            assert waited is not None
            return waited
        self._rendering = rendering = AsyncResult()
        try:
            answer = metrics_response(self.total(fresh=True))
        except BaseException as exc:
            rendering.set_exception(exc)
            raise
        finally:
            self._rendering = None
        self.renders += 1
        self._cached, self._cached_at = answer, started
        rendering.set(answer)
        return answer

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the metrics port serves (its port, when 0 was asked for), once started."""
        if self._server is None:
            return None
        return str(self._server.server_host), int(self._server.server_port)

    def start(self, *, write: bool, listener: socket.socket | None) -> None:
        """With a directory, save the snapshot when another worker asks, and with `write`
        every second too; with `listener`, serve the figures there over plain HTTP (any path)."""
        if self.directory is not None:
            self._writer = gevent.spawn(self._write_forever, self.directory, write)
        if listener is not None:
            from gevent.pywsgi import WSGIServer

            self._server = WSGIServer(listener, self._wsgi, log=None)
            self._server.start()

    def stop(self) -> None:
        if self._writer is not None:
            self._writer.kill(block=False)  # it waits in gevent.sleep only
            self._writer = None
        if self._server is not None:
            self._server.stop(timeout=1.0)
            self._server = None

    def save(self) -> None:
        """This worker's snapshot into the directory, for whichever worker answers a scrape."""
        if self.directory is None:
            return
        try:
            write_snapshot(self.directory, self.snapshot())
        except OSError as exc:
            log.warning("cannot write the metrics snapshot: %s", exc)

    def _write_forever(self, directory: str, periodic: bool) -> None:
        ticks = round(1.0 / ASK_POLL_SECONDS)
        seen: tuple[int, int] | None = None
        tick = 0
        while True:
            asked = asked_since(directory, seen)
            if asked is not None or (periodic and tick == 0):
                seen = asked or seen
                self.save()
            tick = (tick + 1) % ticks
            gevent.sleep(ASK_POLL_SECONDS)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body, content_type = self.exposition()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
