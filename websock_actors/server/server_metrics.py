"""The figures of one `Server`: gathered, summed over the workers, served on a port of their own.

`snapshot` gathers this process's counters (metrics.py's `ServerStats`), its gauges and
what the application counts itself; `total` is what a scrape shows: the snapshot, or with
a metrics directory (`--workers`) the sum of every worker's. A worker writes its snapshot
there every second (`start(write=True)`) and once more when it stops, so that its last
counts stay in the sum.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import gevent

from .app import Application
from .metrics import (
    ServerStats,
    Snapshot,
    merge_snapshots,
    metrics_response,
    read_worker_snapshots,
    write_snapshot,
)

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["ServerMetrics"]

log = logging.getLogger("websock_actors")


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

    def snapshot(self) -> Snapshot:
        """This process's figures, by metric name and label value (metrics.py)."""
        stats = self.stats
        snapshot: Snapshot = {
            "websock_connections": {"": len(self.connections)},
            "websock_connections_total": {"": stats.connections_total},
            "websock_handshake_failures_total": dict(stats.handshake_failures),
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

    def total(self) -> Snapshot:
        """The figures to expose: this process's, or with a directory every worker's summed."""
        snapshot = self.snapshot()
        if self.directory is None:
            return snapshot
        write_snapshot(self.directory, snapshot)
        live, dead = read_worker_snapshots(self.directory)
        return merge_snapshots(live, dead)

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the metrics port serves (its port, when 0 was asked for), once started."""
        if self._server is None:
            return None
        return str(self._server.server_host), int(self._server.server_port)

    def start(self, *, write: bool, listener: socket.socket | None) -> None:
        """With `write`, save the snapshot every second; with `listener`, serve the figures
        there over plain HTTP (any path)."""
        if write and self.directory is not None:
            self._writer = gevent.spawn(self._write_forever)
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

    def _write_forever(self) -> None:
        while True:
            self.save()
            gevent.sleep(1.0)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body, content_type = metrics_response(self.total())
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
