"""The server API across nodes: two servers on one real redis-server, the API asked on one
node, the effect seen by clients of both (the App's methods publish on the backplane)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from websock_actors import ConnectionClosed
from websock_actors.testing import ServerThread

from ..support.api_app import api_app
from ..support.apps import two_nodes_on
from ..support.users_app import member, notice
from ..support.waits import wait_until

pytestmark = pytest.mark.timeout(60)

KEY = "node-key"


@pytest.fixture
def two_nodes(shared_redis: Any) -> Iterator[tuple[ServerThread, ServerThread]]:
    with two_nodes_on(shared_redis.url, api_app, api_key=KEY) as nodes:
        yield nodes


def post(server: ServerThread, path: str, body: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        conn.request("POST" if body is not None else "GET", path, json.dumps(body) if body else None, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def say(text: str) -> dict[str, str]:
    return {"type": "notice", "text": text}


def test_the_api_of_one_node_reaches_clients_of_both(two_nodes: tuple[ServerThread, ServerThread]) -> None:
    a, b = two_nodes
    ann_a, ann_b = member(a, "ann", "lobby"), member(b, "ann")
    bob_b = member(b, "bob", "lobby")
    lobby = "/_api/presence?room=lobby"
    wait_until(lambda: post(a, lobby, None)[1]["presence"] == ["ann", "bob"], 10, "both in the presence")
    status, answer = post(a, "/_api/broadcast", {"room": "lobby", "message": say("all")})
    assert status == 200 and answer == {"deliveries": 1}  # this node's; node b delivers too
    assert notice(ann_a) == notice(bob_b) == "all"
    status, answer = post(a, "/_api/send_to_user", {"identity": "ann", "message": say("ann")})
    assert status == 200
    assert notice(ann_a) == notice(ann_b) == "ann"
    status, answer = post(b, "/_api/send_to_user", {"identity": "bob", "message": say("bob")})
    assert notice(bob_b) == "bob"  # and not "ann" for bob before it
    status, answer = post(b, "/_api/disconnect_user", {"identity": "ann", "code": 4001, "reason": "gone"})
    assert status == 200
    for ws in (ann_a, ann_b):
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
        assert ws.close_code == 4001
    bob_b.close()
