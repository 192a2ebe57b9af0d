"""The examples, run as their users run them: in a subprocess (they monkey-patch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from websock_actors import RedisBackplane
from websock_actors.client import connect as ws_connect
from websock_actors.testing import ServerThread

from .support.apps import fresh_chat_app
from .support.chat import join, read_until, text_is
from .support.raw import free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def websock_chat() -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "CHAT_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "examples/websock_chat.py"], cwd=ROOT, env=env)
    try:
        wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_websock_chat_example_relays_and_bot_answers(websock_chat: int) -> None:
    url = f"ws://127.0.0.1:{websock_chat}/"
    with connect(url) as ann, connect(url) as bob:
        assert ann.recv(timeout=5) == "Hello, welcome to the chat server!"
        assert bob.recv(timeout=5) == "Hello, welcome to the chat server!"
        ann.send("hi bob")
        assert bob.recv(timeout=5) == "hi bob"
        assert bob.recv(timeout=5) == "@BOT: How are you today?"
        assert ann.recv(timeout=5) == "@BOT: How are you today?"  # the bot answers the sender too


def _post(url: str, fields: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


def test_flask_push_example_announces_into_the_chat_once(shared_redis: Any) -> None:
    """examples/flask_push.py, a Flask site in its own process, pushes into a chat room through
    an Emitter; a retried request (same Idempotency-Key) announces once."""
    app = fresh_chat_app()
    app.use_backplane(RedisBackplane(shared_redis.url))
    server = ServerThread(app).start()
    port = free_port()
    env = {**os.environ, "CHAT_PUSH_URL": shared_redis.url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flask", "--app", "examples.flask_push", "run", "--port", str(port)]
    site = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, site)
        with ws_connect(server.url) as ann:
            join(ann, "lobby", "ann")
            announce = f"http://127.0.0.1:{port}/announce/lobby"
            first = _post(announce, {"text": "deploy at 5"}, {"Idempotency-Key": "deploy-5"})
            heard = read_until(ann, text_is("deploy at 5"))[-1]
            assert heard["name"] == "announcer"
            assert (heard["seq"], heard["epoch"]) == (first["seq"], first["epoch"])
            assert _post(announce, {"text": "deploy at 5"}, {"Idempotency-Key": "deploy-5"})["duplicate"]
            _post(announce, {"text": "done"}, {})
            assert [m["text"] for m in read_until(ann, text_is("done")) if m["type"] == "message"] == ["done"]
    finally:
        site.terminate()
        site.wait(10)
        server.stop()
