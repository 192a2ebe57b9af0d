"""websock_actors.testing: TestClient against real apps, its waits that explain themselves, the
pytest plugin's fixture, and two TestClients on one Redis acting as two nodes."""

from __future__ import annotations

from typing import Literal

import pytest

from examples.chat import app as chat_app
from examples.echo import app as echo_app
from websock_actors import (
    App,
    AuthRequest,
    Context,
    Message,
    RedisBackplane,
    RemoteHandshakeRefusal,
    RequestError,
)
from websock_actors.testing import TestClient

from ..support.apps import fresh_chat_app


def test_chat_through_the_test_client() -> None:
    with TestClient(chat_app) as client, client.connect() as ann, client.connect() as bob:
        assert ann.request({"type": "join", "room": "r", "name": "ann"})["members"] == ["ann"]
        assert bob.request({"type": "join", "room": "r", "name": "bob"})["members"] == ["ann", "bob"]
        ann.expect("member_joined", name="bob")
        bob.request({"type": "say", "room": "r", "text": "hi"})
        assert ann.expect("message", text="hi")["name"] == "bob"
        ann.assert_no_message()
        with pytest.raises(RequestError) as refused:
            ann.request({"type": "say", "room": "elsewhere", "text": "x"})
        assert refused.value.code == "not_in_room"
        bob.close()
        ann.expect("member_left", name="bob")


def test_a_wait_that_times_out_names_what_did_arrive() -> None:
    with TestClient(echo_app) as client, client.connect() as ws:
        ws.send_json({"first": 1})
        assert ws.receive_json() == {"first": 1}
        ws.send_json({"type": "other", "n": 2})
        with pytest.raises(AssertionError) as failed:
            ws.expect("wanted", timeout=0.3)
        text = str(failed.value)
        assert "no 'wanted' message within 0.3 s" in text
        assert "skipped [{'type': 'other', 'n': 2}]" in text and "{'first': 1}" in text
        with pytest.raises(AssertionError, match=r"no message within 0.2 s; the last messages"):
            ws.receive_json(timeout=0.2)
        ws.send_json({"late": True})
        with pytest.raises(AssertionError, match="expected no message"):
            ws.assert_no_message(timeout=1.0)


who_app = App("who")


@who_app.authenticate
def _check(request: AuthRequest) -> str | None:
    return request.query.get("token", [None])[0] or request.headers.get("X-User")


class WhoAmI(Message):
    type: Literal["whoami"]


class YouAre(Message):
    type: Literal["you_are"] = "you_are"
    name: str


@who_app.handler
def whoami(msg: WhoAmI, ctx: Context) -> YouAre:
    return YouAre(name=str(ctx.identity))


def test_query_headers_and_refusals() -> None:
    app = who_app
    with TestClient(app) as client:
        with client.connect(query={"token": "ann"}) as ws:
            assert ws.request({"type": "whoami"})["name"] == "ann"
        with client.connect(headers={"X-User": "bob"}) as ws:
            assert ws.request({"type": "whoami"})["name"] == "bob"
        with pytest.raises(RemoteHandshakeRefusal) as rejected:
            client.connect()
        assert rejected.value.status == 401


def test_the_pytest_plugin_fixture(websock_client) -> None:
    client = websock_client(echo_app)
    ws = client.connect()
    ws.send_json([1, 2])
    assert ws.receive_json() == [1, 2]


def test_two_test_clients_on_one_redis_are_two_nodes(redis_server) -> None:
    a, b = fresh_chat_app(), fresh_chat_app()
    a.use_backplane(RedisBackplane(redis_server.url))
    b.use_backplane(RedisBackplane(redis_server.url))
    with TestClient(a) as node_a, TestClient(b) as node_b:
        ann, bob = node_a.connect(), node_b.connect()
        ann.request({"type": "join", "room": "r", "name": "ann"})
        assert bob.request({"type": "join", "room": "r", "name": "bob"})["members"] == ["ann", "bob"]
        bob.request({"type": "say", "room": "r", "text": "across"})
        assert ann.expect("message", text="across")["name"] == "bob"
