"""What a new user tripped over (issue 11): the client's message model, the context's request,
ids left out when None, the command line's errors and SIGHUP, WebSock's send of bytes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Literal

import pytest
from websockets.sync.client import connect as ws_connect

from websock_actors import App, Context, Message, WebSocketError
from websock_actors.client import connect

from .support.raw import BINARY, TEXT, RawClient, free_port
from .support.websock_thread import WebSockThread

ROOT = Path(__file__).resolve().parent.parent


def cli(port: int) -> list[str]:
    run = [sys.executable, "-m", "websock_actors", "run", "examples.echo:app"]
    return [*run, "--port", str(port), "--no-patch"]


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


def test_websock_send_of_bytes_is_binary_unless_text_is_asked_for() -> None:
    ready = threading.Event()

    def opened(client: Any) -> None:
        server = thread.server
        server.send(client, b"\xff\xfe")  # not UTF-8: a binary frame now
        server.send(client, "text")
        server.send(client, b"as text", 1)  # FrameType.TEXT: WebSock's own behaviour
        ready.set()

    thread = WebSockThread(on_connection_open=opened).start()
    try:
        with RawClient(thread.port) as client:
            assert ready.wait(5)
            assert client.recv_frame() == (BINARY, b"\xff\xfe")
            assert client.recv_frame() == (TEXT, b"text")
            assert client.recv_frame() == (TEXT, b"as text")
    finally:
        thread.stop()  # close_server in the hub waits for the connections to go
        assert not thread.thread.is_alive(), "serve_forever did not return"


def test_cli_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(cli(port), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_cli_sighup_stops_gracefully() -> None:
    port = free_port()
    proc = subprocess.Popen(cli(port), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        with ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            proc.send_signal(signal.SIGHUP)
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=10)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001, closed.value
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_error_replies_and_acks_keep_their_id(serve) -> None:
    server = serve(make_app())
    with ws_connect(server.url) as ws:
        ws.send(json.dumps({"type": "nope", "id": "n1"}))
        assert json.loads(ws.recv(timeout=5))["id"] == "n1"
        ws.send(json.dumps({"type": "nope"}))
        assert "id" not in json.loads(ws.recv(timeout=5))
