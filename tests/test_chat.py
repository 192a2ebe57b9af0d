"""The chat example end to end with real clients, and broadcasting past a member that never reads."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from examples.chat import app as chat_app

from .helpers import upgrade_request
from .rawws import masked_frame


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
        send(ann, type="join", id="j1", room="lobby", name="ann")
        assert recv(ann) == {"type": "joined", "id": "j1", "room": "lobby", "members": ["ann"]}
        send(bob, type="join", room="lobby", name="bob")
        assert recv(bob) == {"type": "joined", "room": "lobby", "members": ["ann", "bob"]}  # no id: none
        assert recv(ann) == {"type": "member_joined", "room": "lobby", "name": "bob"}
        send(cat, type="join", id=1, room="garden", name="cat")
        assert recv(cat) == {"type": "joined", "id": 1, "room": "garden", "members": ["cat"]}
        send(bob, type="join", id=2, room="garden", name="bobby")
        assert recv(bob) == {"type": "joined", "id": 2, "room": "garden", "members": ["cat", "bobby"]}
        assert recv(cat) == {"type": "member_joined", "room": "garden", "name": "bobby"}

        send(ann, type="say", id="s1", room="lobby", text="hello lobby")
        chat = {"type": "message", "room": "lobby", "name": "ann", "text": "hello lobby"}
        assert without_ts(recv(ann)) == chat  # the sender gets the message too
        assert recv(ann) == {"type": "said", "id": "s1"}
        assert without_ts(recv(bob)) == chat
        send(cat, type="say", room="garden", text="hi garden")  # no id: no "said"
        garden = {"type": "message", "room": "garden", "name": "cat", "text": "hi garden"}
        assert without_ts(recv(cat)) == garden
        assert without_ts(recv(bob)) == garden

        send(ann, type="say", id="x", room="garden", text="sneaky")
        error = recv(ann)
        assert (error["type"], error["code"], error["id"]) == ("error", "not_in_room", "x")
        send(ann, type="leave", id="l0", room="garden")
        assert recv(ann)["code"] == "not_in_room"

        send(bob, type="leave", id="l1", room="lobby")
        assert recv(bob) == {"type": "left", "id": "l1", "room": "lobby"}
        assert recv(ann) == {"type": "member_left", "room": "lobby", "name": "bob"}

        send(ann, type="say", room="lobby", text="x" * 2001)
        assert recv(ann)["code"] == "validation_error"

        bob.close()  # closing leaves every room it was in
        assert recv(cat) == {"type": "member_left", "room": "garden", "name": "bobby"}
        send(cat, type="join", id=3, room="garden", name="cat")
        assert recv(cat)["members"] == ["cat"]


def test_chat_page_is_served_on_the_same_port(serve) -> None:
    server = serve(chat_app)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5) as response:
        body = response.read().decode()
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
    assert "new WebSocket(" in body and '"join"' in body


@pytest.mark.parametrize("overflow", ["close", "drop"])
def test_broadcast_goes_on_past_a_member_that_never_reads(serve, monkeypatch, overflow: str) -> None:
    # 2,600 `say` in one burst: far past the chat's rate limits, which this test is not about.
    monkeypatch.setattr(chat_app, "rate_limit", None)
    monkeypatch.setattr(chat_app, "type_rate_limits", {})
    server = serve(chat_app, max_queue_bytes=256 * 1024, overflow=overflow)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(upgrade_request())
        assert stalled.recv(4096).startswith(b"HTTP/1.1 101")
        join = {"type": "join", "room": "r", "name": "stalled"}
        stalled.sendall(masked_frame(0x1, json.dumps(join).encode()))
        # max_queue=None: these clients' reader threads keep draining their sockets.
        with connect(server.url, max_queue=None) as reader, connect(server.url, max_queue=None) as sender:
            send(reader, type="join", id=1, room="r", name="reader")
            assert recv(reader)["members"] == ["stalled", "reader"]

            def find_stalled() -> Any:
                conns = server.server.connections.values()
                return next(c for c in conns if c.state["names"]["r"] == "stalled")

            stalled_conn = server.call(find_stalled)
            send(sender, type="join", id=2, room="r", name="sender")
            assert recv(sender)["id"] == 2
            assert recv(reader)["name"] == "sender"
            text = "y" * 2000
            # 5.2 MB to each member: more than the kernel buffers the stalled member's socket
            # (tcp_wmem allows up to 4 MiB here) plus its 256 KiB mailbox.
            for i in range(2600):
                send(sender, type="say", id=i, room="r", text=text)
            received, others = 0, []
            while received < 2600:
                message = recv(reader)
                if message["type"] == "message":
                    assert message["text"] == text
                    received += 1
                else:
                    others.append(message)
            if overflow == "close":
                # The stalled member was closed; the room hears it left (maybe only now).
                if not others:
                    others.append(recv(reader))
                assert others == [{"type": "member_left", "room": "r", "name": "stalled"}]
                assert server.call(lambda: stalled_conn.close_code) == 1013
            else:
                assert others == []
                assert server.call(lambda: (stalled_conn.open, stalled_conn.dropped > 0)) == (True, True)
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
