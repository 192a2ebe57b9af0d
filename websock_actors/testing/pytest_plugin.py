"""The pytest plugin (entry point `pytest11`): the `websock_client` and `websock_server` fixtures.

def test_chat(websock_client):
    client = websock_client(app)           # served until the end of the test
    ws = client.connect()

def test_raw(websock_server):
    server = websock_server(app)           # a ServerThread: its port, url and hub hooks
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..server.app import Application
from .client import TestClient
from .server_thread import ServerThread

__all__ = ["websock_client", "websock_server"]


@pytest.fixture
def websock_client() -> Iterator[Callable[..., TestClient]]:
    """`websock_client(app, **server_options)`: a started TestClient, stopped after the test."""
    started: list[TestClient] = []

    def start(app: Application, **server_options: Any) -> TestClient:
        client = TestClient(app, **server_options).__enter__()
        started.append(client)
        return client

    yield start
    for client in started:
        client.__exit__(None, None, None)


@pytest.fixture
def websock_server() -> Iterator[Callable[..., ServerThread]]:
    """`websock_server(app, **server_options)`: a started ServerThread on 127.0.0.1 and a free
    port, stopped after the test; for tests that bring their own client."""
    started: list[ServerThread] = []

    def start(app: Application, **server_options: Any) -> ServerThread:
        server = ServerThread(app, **server_options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
