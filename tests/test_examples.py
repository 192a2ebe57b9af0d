"""The examples, run as their users run them: in a subprocess (they monkey-patch)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Poll until the port accepts TCP (the process starts in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


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
