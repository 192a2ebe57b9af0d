"""Applications the tests serve, and checks of what such apps send.

`fresh_chat_app` loads a copy of the chat demo per node; `RecordingEchoApp` echoes and
records; `session_opened`, `unnumbered` and `RoomSequence` check the session and numbered
broadcasts of apps with session resumption.

The pytest process never monkey-patches: servers run in `websock_actors.testing.ServerThread`
(a thread with its own hub), so tests drive them with ordinary blocking clients.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websock_actors import App, Connection, RedisBackplane, ResumePolicy, WebSocketApp
from websock_actors.testing import ServerThread

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat.py"
_chat_copies = itertools.count(1)


def fresh_chat_app(resume: bool = True, limits: bool = False, **policy: Any) -> App:
    """A fresh copy of examples/chat.py's app, without its rate limits (the tests send faster
    than a person types; `limits=True` keeps them): each node of a test needs an App and a
    backplane of its own.

    `resume=False`: without the demo's session resumption, so with plain (unnumbered)
    broadcasts; `policy` changes its ResumePolicy (window 120 s, history 1000, grace 10 s,
    unless given).
    """
    name = f"chat_copy_{next(_chat_copies)}"
    spec = importlib.util.spec_from_file_location(name, CHAT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its type hints are resolved through sys.modules
    spec.loader.exec_module(module)
    app: App = module.app
    if not limits:
        app.rate_limit = None
        app.type_rate_limits = {}
        app.join_rate = None
    assert app.resumption is not None, "the chat demo has resumption on"
    if not resume:
        app.resumption = None
        del app.router.routes["resume"]
    elif policy:
        app.resumption.policy = ResumePolicy(**{"window": 120, "history": 1000, "grace": 10, **policy})
    return app


# -- typed apps with session resumption (typed/resume.py) --------------------------------------


def session_opened(message: dict[str, Any]) -> str:
    """The `session` message such an app sends first on every connection; returns its token.
    (websock_actors.client keeps it for itself: only other clients read it.)"""
    assert message.keys() == {"type", "session"} and message["type"] == "session", message
    token = message["session"]
    assert isinstance(token, str) and token, message
    return token


def unnumbered(message: dict[str, Any]) -> dict[str, Any]:
    """A room broadcast of such an app without the `seq` (int) and `epoch` (str) it must carry."""
    plain = dict(message)
    seq, epoch = plain.pop("seq", None), plain.pop("epoch", None)
    assert isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1, f"no seq in {message}"
    assert isinstance(epoch, str) and epoch, f"no epoch in {message}"
    return plain


class RoomSequence:
    """The numbered broadcasts one client reads: in each room, seq +1 each, in one epoch.

    `seq(message)` checks that `message` follows the last one read of its room and returns
    it `unnumbered`; `seq.last[room]` is the (seq, epoch) of that room's last one.
    """

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, str]] = {}

    def __call__(self, message: dict[str, Any]) -> dict[str, Any]:
        plain = unnumbered(message)
        room, position = message.get("room"), (message["seq"], message["epoch"])
        assert isinstance(room, str), f"no room in {message}"
        if room in self.last:
            seq, epoch = self.last[room]
            assert position == (seq + 1, epoch), f"after seq {seq} (epoch {epoch}) of {room!r}: {message}"
        self.last[room] = position
        return plain


class RecordingEchoApp(WebSocketApp):
    """Echo; record connections and closes (code, reason).

    `all_connected` / `all_closed` are set once `expected` connections opened / closed.
    """

    def __init__(self, expected: int = 1) -> None:
        super().__init__()
        self.expected = expected
        self.conns: list[Connection] = []
        self.closes: list[tuple[int, str]] = []
        self.all_connected = threading.Event()
        self.all_closed = threading.Event()

        @self.on_connect
        def connected(conn: Connection) -> None:
            self.conns.append(conn)
            if len(self.conns) >= self.expected:
                self.all_connected.set()

        @self.on_message
        def echo(conn: Connection, message: str | bytes) -> None:
            conn.send(message)

        @self.on_close
        def closed(conn: Connection, code: int, reason: str) -> None:
            self.closes.append((code, reason))
            if len(self.closes) >= self.expected:
                self.all_closed.set()


@contextmanager
def two_nodes_on(
    url: str, make_app: Callable[[], App], **server_options: Any
) -> Iterator[tuple[ServerThread, ServerThread]]:
    """Two servers of `make_app()`, each on a RedisBackplane of its own over the Redis at
    `url`; stopped after the block."""
    servers: list[ServerThread] = []
    try:
        for _ in range(2):
            app = make_app()
            app.use_backplane(RedisBackplane(url))
            servers.append(ServerThread(app, **server_options).start())
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@contextmanager
def chat_nodes_on(url: str) -> Iterator[Callable[..., tuple[ServerThread, RedisBackplane]]]:
    """`node(resume=True, **backplane_options)`: a chat server (fresh_chat_app) on a
    RedisBackplane of its own over the Redis at `url`, as many as a test starts; all stopped
    after the block."""
    started: list[ServerThread] = []

    def start(resume: bool = True, **options: Any) -> tuple[ServerThread, RedisBackplane]:
        app = fresh_chat_app(resume)
        backplane = RedisBackplane(url, **options)
        app.use_backplane(backplane)
        started.append(ServerThread(app).start())
        return started[-1], backplane

    try:
        yield start
    finally:
        for server in started:
            server.stop()
