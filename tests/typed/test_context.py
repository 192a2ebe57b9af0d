"""What a typed handler sees and sends, read by our client: the context's request (path and
query), pushes without an id, replies and acks that keep the request's id."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from websockets.sync.client import connect as ws_connect

from websock_actors import App, Context, Message, WebSocketError
from websock_actors.client import connect


class Where(Message):
    type: Literal["where"]


class Here(Message):
    type: Literal["here"] = "here"
    path: str
    query: dict[str, list[str]]


class Shout(Message):
    type: Literal["shout"]
    text: str


class Heard(Message):
    type: Literal["heard"] = "heard"
    text: str


def make_app() -> App:
    app = App("edges")

    @app.handler
    def where(msg: Where, ctx: Context) -> Here:
        return Here(path=ctx.path, query=ctx.query)

    @app.handler
    def shout(msg: Shout, ctx: Context) -> None:
        ctx.send(Heard(text=msg.text))  # a push: no id
        if msg.text == "bytes":
            ctx.conn.send(b"\xff\x00")

    return app


def test_context_has_the_path_and_the_parsed_query(serve) -> None:
    server = serve(make_app())
    with connect(server.url + "chat/room?token=abc&tag=a&tag=b") as ws:
        reply = ws.request({"type": "where"})
        assert reply["path"] == "/chat/room"
        assert reply["query"] == {"token": ["abc"], "tag": ["a", "b"]}


def test_recv_gives_the_frame_recv_json_the_message_and_pushes_have_no_id(serve) -> None:
    server = serve(make_app())
    with connect(server.url) as ws:
        assert ws.request({"type": "shout", "text": "hi"}) == {"type": "ack", "id": 1}
        assert ws.recv(timeout=5) == '{"type":"heard","text":"hi"}'  # the frame as it came: no "id"
        ws.request({"type": "shout", "text": "again"})
        assert ws.recv_json(timeout=5) == {"type": "heard", "text": "again"}
        ws.request({"type": "shout", "text": "bytes"})
        assert ws.recv_json(timeout=5) == {"type": "heard", "text": "bytes"}
        with pytest.raises(WebSocketError, match="binary"):
            ws.recv_json(timeout=5)


def test_error_replies_and_acks_keep_their_id(serve) -> None:
    server = serve(make_app())
    with ws_connect(server.url) as ws:
        ws.send(json.dumps({"type": "nope", "id": "n1"}))
        assert json.loads(ws.recv(timeout=5))["id"] == "n1"
        ws.send(json.dumps({"type": "nope"}))
        assert "id" not in json.loads(ws.recv(timeout=5))
