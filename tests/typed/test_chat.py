"""The chat example end to end with real clients, and broadcasting past a member that never reads."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from examples.chat import app as chat_app

from ..support.apps import RoomSequence, session_opened
from ..support.raw import TEXT, RawClient


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=5))
    return message


def without_ts(message: dict[str, Any]) -> dict[str, Any]:
    assert isinstance(message.pop("ts"), float)
    return message


def test_three_clients_in_two_rooms(serve) -> None:
    server = serve(chat_app)
    with connect(server.url) as ann, connect(server.url) as bob, connect(server.url) as cat:
        assert len({session_opened(recv(ws)) for ws in (ann, bob, cat)}) == 3  # first, one each
        ann_seq, bob_seq, cat_seq = RoomSequence(), RoomSequence(), RoomSequence()
        send(ann, type="join", id="j1", room="lobby", name="ann")
        assert recv(ann) == {"type": "joined", "id": "j1", "room": "lobby", "members": ["ann"]}
        send(bob, type="join", room="lobby", name="bob")
        assert recv(bob) == {"type": "joined", "room": "lobby", "members": ["ann", "bob"]}  # no id: none
        assert ann_seq(recv(ann)) == {"type": "member_joined", "room": "lobby", "name": "bob"}
        send(cat, type="join", id=1, room="garden", name="cat")
        assert recv(cat) == {"type": "joined", "id": 1, "room": "garden", "members": ["cat"]}
        send(bob, type="join", id=2, room="garden", name="bobby")
        assert recv(bob) == {"type": "joined", "id": 2, "room": "garden", "members": ["cat", "bobby"]}
        assert cat_seq(recv(cat)) == {"type": "member_joined", "room": "garden", "name": "bobby"}

        send(ann, type="say", id="s1", room="lobby", text="hello lobby")
        chat = {"type": "message", "room": "lobby", "name": "ann", "text": "hello lobby"}
        assert without_ts(ann_seq(recv(ann))) == chat  # the sender gets the message too
        assert recv(ann) == {"type": "said", "id": "s1"}
        assert without_ts(bob_seq(recv(bob))) == chat
        assert ann_seq.last["lobby"] == bob_seq.last["lobby"]  # one number for every member
        send(cat, type="say", room="garden", text="hi garden")  # no id: no "said"
        garden = {"type": "message", "room": "garden", "name": "cat", "text": "hi garden"}
        assert without_ts(cat_seq(recv(cat))) == garden
        assert without_ts(bob_seq(recv(bob))) == garden
        assert cat_seq.last["garden"] == bob_seq.last["garden"]

        send(ann, type="say", id="x", room="garden", text="sneaky")
        error = recv(ann)
        assert (error["type"], error["code"], error["id"]) == ("error", "not_in_room", "x")
        send(ann, type="leave", id="l0", room="garden")
        assert recv(ann)["code"] == "not_in_room"

        send(bob, type="leave", id="l1", room="lobby")
        assert recv(bob) == {"type": "left", "id": "l1", "room": "lobby"}
        assert ann_seq(recv(ann)) == {"type": "member_left", "room": "lobby", "name": "bob"}

        send(ann, type="say", room="lobby", text="x" * 2001)
        assert recv(ann)["code"] == "validation_error"

        bob.close()  # a close from the client leaves every room it was in, at once
        assert cat_seq(recv(cat)) == {"type": "member_left", "room": "garden", "name": "bobby"}
        send(cat, type="join", id=3, room="garden", name="cat")
        assert recv(cat)["members"] == ["cat"]


def test_chat_page_is_served_on_the_same_port(serve) -> None:
    server = serve(chat_app)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as response:
        body = response.read().decode()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
    # The page runs on the browser client the same server serves.
    assert 'import {connect} from "/_wsa/client.js"' in body and '"join"' in body
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/_wsa/client.js", timeout=5) as response:
        assert response.status == 200
        assert "export function connect(" in response.read().decode()


@pytest.mark.parametrize("overflow", ["close", "drop"])
def test_broadcast_goes_on_past_a_member_that_never_reads(serve, monkeypatch, overflow: str) -> None:
    # 2,600 `say` in one burst: far past the chat's rate limits, which this test is not about.
    monkeypatch.setattr(chat_app, "rate_limit", None)
    monkeypatch.setattr(chat_app, "type_rate_limits", {})
    # A member dropped without a close from its client (1013 here, or 1006) stays in the
    # room for the grace of a resume (10 s in the demo) before the room hears it left.
    assert chat_app.resumption is not None
    policy = dataclasses.replace(chat_app.resumption.policy, grace=0.2)
    monkeypatch.setattr(chat_app.resumption, "policy", policy)
    server = serve(chat_app, max_queue_bytes=256 * 1024, overflow=overflow)
    with RawClient(server.port, rcvbuf=4096) as stalled:
        opcode, payload = stalled.recv_frame()
        assert opcode == TEXT
        session_opened(json.loads(payload))
        join = {"type": "join", "room": "r", "name": "stalled"}
        stalled.send_text(json.dumps(join))
        # max_queue=None: these clients' reader threads keep draining their sockets.
        with connect(server.url, max_queue=None) as reader, connect(server.url, max_queue=None) as sender:
            for ws in (reader, sender):
                session_opened(recv(ws))
            seq = RoomSequence()  # every broadcast of the room reaches the reader, in order
            send(reader, type="join", id=1, room="r", name="reader")
            assert recv(reader)["members"] == ["stalled", "reader"]

            def find_stalled() -> Any:
                conns = server.server.connections.values()
                return next(c for c in conns if c.state["names"]["r"] == "stalled")

            stalled_conn = server.call(find_stalled)
            send(sender, type="join", id=2, room="r", name="sender")
            assert recv(sender)["id"] == 2
            assert seq(recv(reader)) == {"type": "member_joined", "room": "r", "name": "sender"}
            text = "y" * 2000
            # 5.2 MB to each member: more than the kernel buffers the stalled member's socket
            # (tcp_wmem allows up to 4 MiB here) plus its 256 KiB mailbox.
            for i in range(2600):
                send(sender, type="say", id=i, room="r", text=text)
            received, others = 0, []
            while received < 2600:
                message = seq(recv(reader))
                if message["type"] == "message":
                    assert message["text"] == text
                    received += 1
                else:
                    others.append(message)
            left = {"type": "member_left", "room": "r", "name": "stalled"}
            if overflow == "close":
                # The stalled member was closed; the room hears it left after its grace
                # (maybe only now).
                if not others:
                    others.append(seq(recv(reader)))
                assert others == [left]
                assert server.call(lambda: stalled_conn.close_code) == 1013
            else:
                assert others == []
                assert server.call(lambda: (stalled_conn.open, stalled_conn.dropped > 0)) == (True, True)
                stalled.close()  # gone without a close frame: the room hears it after the grace
                assert seq(recv(reader)) == left
                assert server.call(lambda: stalled_conn.close_code) == 1006
            assert server.call(lambda: server.app.rooms.broadcast_failures) > 0


def test_the_chat_with_the_test_client() -> None:
    """The same demo as its users would test it: websock_actors.testing."""
    from websock_actors import RequestError
    from websock_actors.testing import TestClient

    with TestClient(chat_app) as client, client.connect() as ann, client.connect() as bob:
        assert ann.request({"type": "join", "room": "tea", "name": "ann"})["members"] == ["ann"]
        assert bob.request({"type": "join", "room": "tea", "name": "bob"})["members"] == ["ann", "bob"]
        ann.expect("member_joined", room="tea", name="bob")
        assert bob.request({"type": "say", "room": "tea", "text": "milk?"}) == {"type": "said", "id": 2}
        assert ann.expect("message", text="milk?")["name"] == "bob"
        with pytest.raises(RequestError, match="not_in_room"):
            ann.request({"type": "say", "room": "coffee", "text": "x"})
        bob.close()
        ann.expect("member_left", room="tea", name="bob")
        ann.assert_no_message()
