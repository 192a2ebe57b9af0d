from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from websock_actors import Application

from .support.apps import ServerThread
from .support.redis_server import redis_server as redis_server  # a real Redis: tests/support/redis_server.py
from .support.redis_server import redis_session as redis_session
from .support.redis_server import shared_redis as shared_redis


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    """`serve(app, **server_options)` starts a server on 127.0.0.1:0; stopped after the test."""
    started: list[ServerThread] = []

    def start(app: Application, **options: Any) -> ServerThread:
        server = ServerThread(app, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
