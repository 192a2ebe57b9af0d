"""Fixtures of the whole suite: the Redis servers (tests/support/redis_server.py) and `serve`.

The server fixtures come from the package's own pytest plugin
(websock_actors.testing.pytest_plugin, registered by the pytest11 entry point).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from websock_actors.testing import ServerThread

from .support.redis_server import redis_server as redis_server  # a real Redis
from .support.redis_server import redis_session as redis_session
from .support.redis_server import shared_redis as shared_redis


@pytest.fixture
def serve(websock_server: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    """`serve(app, **server_options)`: the plugin's `websock_server` under the suite's short name."""
    return websock_server
