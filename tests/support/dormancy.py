"""Looks at a ServerThread's dormant actors (server/dormancy.py), each taken in its hub."""

from __future__ import annotations

import gc

from gevent.hub import get_hub
from greenlet import greenlet

from websock_actors.testing import ServerThread

__all__ = ["actor_greenlets", "live_greenlets", "sweep_idle"]


def live_greenlets(server: ServerThread) -> int:
    """Greenlets alive in the server's thread (the one reading them left out)."""

    def count() -> int:
        hub = get_hub()
        # type(), not isinstance: a dead weak proxy among the objects raises on the latter.
        alive = [obj for obj in gc.get_objects() if issubclass(type(obj), greenlet) and not obj.dead]
        return sum(1 for obj in alive if obj.parent is hub) - 1

    return server.call(count)


def actor_greenlets(server: ServerThread) -> list[object]:
    """Each open connection's greenlet (None while dormant)."""
    hub_server = server.server
    assert hub_server is not None
    return server.call(lambda: [conn._greenlet for conn in hub_server.connections.values()])


def sweep_idle(server: ServerThread) -> None:
    """Two looks of the idle sweep, as its timer takes them an interval apart: every actor
    quiet since the first goes dormant. Run in the hub itself (a callback), as the timer does."""
    hub_server = server.server
    assert hub_server is not None
    for _ in range(2):
        server.call(lambda: get_hub().loop.run_callback(hub_server._idle_sweep.sweep))
    server.call(lambda: None)  # queued after the second look: it has run
