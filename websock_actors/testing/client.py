"""`TestClient(app)`: the app served on a loopback socket, and connections whose waits fail
with what did arrive instead of hanging.

    with TestClient(app) as client, client.connect("/", query={"token": "s3cret"}) as ws:
        ws.request({"type": "join", "room": "r", "name": "ann"})
        ws.expect("message", text="hi")
        ws.assert_no_message()

The app runs in a real `Server` (in a thread of its own, see ServerThread) and the
connections are real `websock_actors.client` connections: what a test sees is what a
client sees, handshake, frames and close codes included. Two TestClients of two apps on
one Redis backplane are two nodes.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel

from ..client.connect import connect
from ..client.connection import ClientConnection
from ..client.endpoint import HeadersLike
from ..errors import CloseCode, RequestTimeout
from ..server.app import Application
from .server_thread import ServerThread

__all__ = ["TestClient", "TestConnection"]

_REMEMBERED = 20  # messages kept to explain a failed wait


class TestConnection:
    """One client connection of a test; every wait has a timeout and explains itself."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.seen: deque[Any] = deque(maxlen=_REMEMBERED)  # the latest messages received

    def __enter__(self) -> TestConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.conn.closed:
            self.conn.close()

    def send(self, message: str | bytes) -> None:
        self.conn.send(message)

    def send_json(self, message: Any) -> None:
        self.conn.send(json.dumps(message))

    def request(self, message: Mapping[str, Any] | BaseModel, timeout: float = 1.0) -> dict[str, Any]:
        """Send with a fresh `id`, return the reply with that `id`; RequestError for an
        `error` reply, AssertionError (with what did arrive) when none came in time."""
        try:
            return self.conn.request(message, timeout=timeout)
        except RequestTimeout:
            raise AssertionError(f"no reply within {timeout:g} s; {self._story()}") from None

    def receive_json(self, timeout: float = 1.0) -> Any:
        """The next message (not a reply), parsed; AssertionError when none came in time."""
        try:
            message = self.conn.recv_json(timeout)
        except TimeoutError:
            raise AssertionError(f"no message within {timeout:g} s; {self._story()}") from None
        self.seen.append(message)
        return message

    def expect(self, type: str, timeout: float = 1.0, **fields: Any) -> dict[str, Any]:
        """The next message of `type` whose `fields` have these values; the others before it
        are skipped (and named if it never comes)."""
        deadline = time.monotonic() + timeout
        skipped: list[Any] = []
        while True:
            try:
                message = self.conn.recv_json(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                wanted = f"{type!r}" + (f" with {fields}" if fields else "")
                raise AssertionError(
                    f"no {wanted} message within {timeout:g} s; skipped {skipped!r}; {self._story()}"
                ) from None
            self.seen.append(message)
            if (
                isinstance(message, dict)
                and message.get("type") == type
                and all(message.get(name) == value for name, value in fields.items())
            ):
                return message
            skipped.append(message)

    def assert_no_message(self, timeout: float = 0.1) -> None:
        """Fail if any message arrives within `timeout` seconds."""
        try:
            message = self.conn.recv(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"expected no message for {timeout:g} s, got {message!r}")

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        self.conn.close(code, reason)

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code

    def _story(self) -> str:
        if not self.seen:
            return "nothing arrived before"
        return f"the last messages that arrived: {list(self.seen)!r}"


class TestClient:
    """Serve `app` on 127.0.0.1 (a free port) for the `with` block; `connect` to it."""

    __test__ = False

    def __init__(self, app: Application, **server_options: Any) -> None:
        self.app = app
        self.server_options = server_options
        self.server: ServerThread | None = None
        self._connections: list[TestConnection] = []

    def __enter__(self) -> TestClient:
        self.server = ServerThread(self.app, **self.server_options).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for ws in self._connections:
            if not ws.conn.closed:
                ws.conn.abort()
        self._connections.clear()
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("use the TestClient in a `with` block first")
        return self.server.url

    def connect(
        self,
        path: str = "/",
        *,
        headers: HeadersLike | None = None,
        query: Mapping[str, str | Sequence[str]] | None = None,
        subprotocols: Sequence[str] | None = None,
        open_timeout: float = 5.0,
    ) -> TestConnection:
        """Open a connection to `path` (with `query` encoded into it); RemoteHandshakeRefusal when
        the app refuses it (its HTTP status in `.status`)."""
        url = self.url.rstrip("/") + path
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query, doseq=True)
        conn = connect(url, headers=headers, subprotocols=subprotocols, open_timeout=open_timeout)
        ws = TestConnection(conn)
        self._connections.append(ws)
        return ws
