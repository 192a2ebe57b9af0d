"""The examples, run as their users run them: in a subprocess (they monkey-patch)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

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
