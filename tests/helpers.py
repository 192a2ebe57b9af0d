"""Test helpers: a server running in its own thread (with its own gevent hub), raw sockets.

The pytest process never monkey-patches. The server under test runs in a background OS
thread with its own hub, so tests can drive it with ordinary blocking clients
(`websockets.sync.client`, plain sockets) from the main thread.
"""

from __future__ import annotations

import base64
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import gevent

from websock_actors import Application, Connection, Server, WebSocketApp

T = TypeVar("T")

UPGRADE_TEMPLATE = (
    "GET {path} HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "{extra}\r\n"
)


class ServerThread:
    """Run `Server(app, "127.0.0.1", 0, **options)` in a thread; `call` runs code in its hub."""

    def __init__(self, app: Application, **options: Any) -> None:
        self.app = app
        self.options = options
        self.server: Server | None = None
        self.port = 0
        self._hub: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="server-hub", daemon=True)

    def _run(self) -> None:
        try:
            self.server = Server(self.app, "127.0.0.1", 0, **self.options)
            self.server.start()
            self.port = self.server.address[1]
            self._hub = gevent.get_hub()
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.server.serve_forever()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("server thread did not start")
        if self._error is not None:
            raise self._error
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def call(self, func: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run `func(*args)` in a new greenlet of the server's hub; return its result."""
        results: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                results.put((True, func(*args)))
            except BaseException as exc:
                results.put((False, exc))

        self._hub.loop.run_callback_threadsafe(gevent.spawn, run)
        ok, value = results.get(timeout=timeout)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self, timeout: float = 5.0) -> None:
        if self.server is not None and self._thread.is_alive() and not self.server.stopped:
            self.call(self.server.stop, timeout, timeout=timeout + 10)
        self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def upgrade_request(path: str = "/", extra: str = "", key: str | None = None) -> bytes:
    """A valid upgrade request; `extra` adds header lines ending in CRLF."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    return UPGRADE_TEMPLATE.format(path=path, key=key, extra=extra).encode()


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes; return everything it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


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
