"""Keepalive: ping connections that went quiet, and close those that do not answer.

One sweeper greenlet per server, waking a few times per interval, instead of a timer per
connection. A connection counts as alive while bytes arrive (`recv_count` moves); after
`interval` seconds of silence it gets a ping, and `timeout` seconds after that without any
bytes (a pong included) it is closed with 1011.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import gevent

from ..errors import CloseCode
from .connection import Connection

__all__ = ["Keepalive"]

log = logging.getLogger("websock_actors")


class _Watch:
    """What the sweeper last saw of one connection."""

    __slots__ = ("idle_since", "ping_sent_at", "seen")

    def __init__(self, seen: int, now: float) -> None:
        self.seen = seen
        self.idle_since = now
        self.ping_sent_at: float | None = None


class Keepalive:
    """Sweeps `connections()` every tick: ping the silent, close the unresponsive."""

    def __init__(
        self, connections: Callable[[], Iterable[Connection]], interval: float, timeout: float | None
    ) -> None:
        self.connections = connections
        self.interval = interval
        self.timeout = timeout if timeout is not None else interval
        self._watches: dict[Connection, _Watch] = {}
        self._greenlet: gevent.Greenlet[[], None] | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _loop(self) -> None:
        tick = max(0.02, min(self.interval, self.timeout) / 4)
        loop = gevent.get_hub().loop
        while True:
            gevent.sleep(tick)
            self.sweep(loop.now())

    def sweep(self, now: float) -> None:
        """One pass over the open connections; forgets the ones that are gone."""
        watches = self._watches
        current: dict[Connection, _Watch] = {}
        for conn in list(self.connections()):
            if not conn.open:
                continue
            watch = watches.get(conn)
            if watch is None:
                current[conn] = _Watch(conn.recv_count, now)
                continue
            current[conn] = watch
            if conn.recv_count != watch.seen:  # bytes arrived: alive
                watch.seen, watch.idle_since, watch.ping_sent_at = conn.recv_count, now, None
            elif watch.ping_sent_at is None:
                if now - watch.idle_since >= self.interval:
                    watch.ping_sent_at = now
                    conn.ping(b"keepalive")
            elif now - watch.ping_sent_at >= self.timeout:
                log.debug("%r: no pong within %.1fs, closing", conn, self.timeout)
                conn.abort(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._watches = current
