"""Rate limits leased from Redis (scale/redis_ratelimit.py): a client spread over two servers
sharing one real redis-server gets its rate once, not once per server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect

from websock_actors import RedisBackplane
from websock_actors.testing import ServerThread

from ..support.apps import fresh_chat_app

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def two_hosts(redis_server: Any) -> Iterator[list[tuple[ServerThread, RedisBackplane]]]:
    """Two chat servers with the demo's limits, each with its own RedisBackplane on one Redis."""
    started: list[tuple[ServerThread, RedisBackplane]] = []
    for _ in range(2):
        app = fresh_chat_app(resume=False, limits=True)
        backplane = RedisBackplane(redis_server.url)
        app.use_backplane(backplane)
        started.append((ServerThread(app).start(), backplane))
    yield started
    for server, _ in started:
        server.stop()


def test_a_client_alternating_between_hosts_gets_its_rate_once(
    two_hosts: list[tuple[ServerThread, RedisBackplane]],
) -> None:
    per_connection = 5
    accepted = refused = 0
    started = time.monotonic()
    for n in range(40):  # a new connection every 5 `say`, on the other host each time
        server, _ = two_hosts[n % 2]
        with connect(server.url, proxy=None, compression=None, max_queue=None) as ws:
            ws.send(json.dumps({"type": "join", "id": "j", "room": "lobby", "name": f"spammer{n}"}))
            for i in range(per_connection):
                ws.send(json.dumps({"type": "say", "id": i, "room": "lobby", "text": "spam"}))
            answers = 0
            while answers < per_connection:
                message = json.loads(ws.recv(timeout=5))
                if message["type"] in ("session", "message", "joined", "member_joined"):
                    continue
                answers += 1
                if message["type"] == "said":
                    accepted += 1
                else:
                    assert message["code"] == "rate_limited", message
                    assert message["retry_after_ms"] > 0
                    refused += 1
    elapsed = time.monotonic() - started
    # burst 20, 5 a second; each host may hold one leased token unspent
    assert accepted <= 20 + 5 * elapsed + 2, (accepted, refused, elapsed)
    assert refused > 0
    assert all(backplane.rate_leases.calls > 0 for _, backplane in two_hosts)
