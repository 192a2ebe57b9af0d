"""WebSock's `WebSocketServer` serving forever in a background thread with its own hub.

The compat sibling of `websock_actors.testing.ServerThread`: the test's thread blocks as it
likes, and `call` runs code in the server's hub, as a callback of legacy code would.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import gevent

from websock_actors import WebSocketServer

__all__ = ["WebSockThread"]


class WebSockThread:
    """`WebSocketServer("127.0.0.1", 0, **callbacks)` in a thread; `events` is for the test's use."""

    def __init__(self, **callbacks: Any) -> None:
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.server = WebSocketServer("127.0.0.1", 0, **callbacks)
        self._hub: Any = None
        self._ready = threading.Event()
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._hub = gevent.get_hub()
        self._ready.set()
        self.server.serve_forever()
        self.finished.set()

    def start(self) -> WebSockThread:
        self.thread.start()
        assert self._ready.wait(10)
        # The hub runs callbacks only once serve_forever waits, so after this the port is bound.
        self.call(lambda: None)
        return self

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run func in the server's hub, as a callback of legacy code would, and return its result."""
        results: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                results.put((True, func(*args, **kwargs)))
            except BaseException as exc:
                results.put((False, exc))

        self._hub.loop.run_callback_threadsafe(gevent.spawn, run)
        ok, value = results.get(timeout=10)
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        """`close_server` in the hub (it waits for the connections to go), then the thread ends."""
        if self.server.alive:
            self.call(self.server.close_server)
        self.thread.join(10)
