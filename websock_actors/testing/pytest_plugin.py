"""The pytest plugin (entry point `pytest11`): the `websock_client` fixture.

def test_chat(websock_client):
    client = websock_client(app)           # served until the end of the test
    ws = client.connect()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..server.app import Application
from .client import TestClient

__all__ = ["websock_client"]


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
