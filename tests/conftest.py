"""Fixtures of the whole suite: the Redis servers (tests/support/redis_server.py), `serve`,
and `nodes` (chat servers, in process and on Redis).

The server fixtures come from the package's own pytest plugin
(websock_actors.testing.pytest_plugin, registered by the pytest11 entry point).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from websock_actors import App, RedisBackplane
from websock_actors.testing import ServerThread

from .support.apps import fresh_chat_app
from .support.redis_cluster import redis_cluster as redis_cluster  # 3 masters, 3 replicas
from .support.redis_sentinel import redis_sentinel as redis_sentinel  # master, replica, 3 sentinels
from .support.redis_server import redis_server as redis_server  # a real Redis
from .support.redis_server import redis_session as redis_session
from .support.redis_server import shared_redis as shared_redis


@pytest.fixture
def serve(websock_server: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    """`serve(app, **server_options)`: the plugin's `websock_server` under the suite's short name."""
    return websock_server


@pytest.fixture(params=["local", "redis"])
def backplane(request: pytest.FixtureRequest) -> str:
    """Each test that asks for `nodes` runs twice: rooms in process, and on a shared Redis."""
    return str(request.param)


@pytest.fixture
def nodes(backplane: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerThread]]:
    """`node(app=None, **policy)`: a server of `app` (default: the chat demo with `policy`);
    with Redis, each node on a RedisBackplane of its own over the shared Redis."""
    started: list[ServerThread] = []
    url = request.getfixturevalue("shared_redis").url if backplane == "redis" else None

    def start(app: App | None = None, **policy: Any) -> ServerThread:
        if app is None:
            app = fresh_chat_app(**policy)
        if url is not None:
            app.use_backplane(RedisBackplane(url))
        server = ServerThread(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
