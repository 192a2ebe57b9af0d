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


def keyed_post(server: ServerThread, path: str, body: Any, key: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": key}
        conn.request("POST", path, json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_an_idempotency_key_is_done_once_across_nodes(
    two_nodes: tuple[ServerThread, ServerThread], shared_redis: Any
) -> None:
    a, b = two_nodes
    ann_a, bob_b = member(a, "ann", "lobby"), member(b, "bob", "lobby")
    lobby = "/_api/presence?room=lobby"
    wait_until(lambda: post(a, lobby, None)[1]["presence"] == ["ann", "bob"], 10, "both in the presence")
    body = {"room": "lobby", "message": say("once")}
    assert keyed_post(a, "/_api/broadcast", body, "retry-1") == (200, {"deliveries": 1})
    assert keyed_post(b, "/_api/broadcast", body, "retry-1") == (200, {"duplicate": True})  # the other node
    assert keyed_post(a, "/_api/broadcast", body, "retry-1") == (200, {"duplicate": True})
    assert int(shared_redis.command("TTL", "wsa:idempotency:retry-1")) > 250  # the key an Emitter shares
    status, _ = post(b, "/_api/broadcast", {"room": "lobby", "message": say("marker")})
    assert status == 200
    for ws in (ann_a, bob_b):  # "once" once, then the marker
        assert notice(ws) == "once"
        assert notice(ws) == "marker"
        ws.close()


def test_a_numbered_room_answers_the_seq_and_epoch_redis_gave(shared_redis: Any) -> None:
    with two_nodes_on(shared_redis.url, lambda: api_app(resume=True), api_key=KEY) as (a, b):
        ann_b = member(b, "ann", "numbered")
        wait_until(lambda: post(a, "/_api/presence?room=numbered", None)[1]["presence"] == ["ann"], 10, "ann")
        answers = []
        for text in ("one", "two"):
            status, answer = post(a, "/_api/broadcast", {"room": "numbered", "message": say(text)})
            assert status == 200 and answer.keys() == {"deliveries", "seq", "epoch"}, answer
            answers.append(answer)
            got = ann_b.recv_json(timeout=5)  # on the other node, numbered by the same script
            assert (got["text"], got["seq"], got["epoch"]) == (text, answer["seq"], answer["epoch"])
        assert answers[1]["seq"] == answers[0]["seq"] + 1 and answers[0]["epoch"] == answers[1]["epoch"]
        ann_b.close()
