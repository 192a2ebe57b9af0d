"""A `Server` in a background OS thread with a gevent hub of its own.

The test's thread needs no monkey-patching and may block as it likes (a blocking client,
`time.sleep`, a debugger): the server's hub runs in its own thread. `call` runs a function
in that hub, for looking at the server's state without racing it; `actor_count`,
`open_per_ip` and `wait_all_gone` are the looks tests need most, read in the hub too.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gevent

from ..server.app import Application
from ..server.server import Server

__all__ = ["ServerThread"]

T = TypeVar("T")


class ServerThread:
    """Run `Server.from_keywords(app, "127.0.0.1", 0, **options)` in a thread (the options are
    the groups' fields as flat keywords); `call` runs code in its hub.

    `port` and `url` say where it listens once `start` returned; `server` is the `Server`,
    whose state is read with `call` (or the looks below), never from the test's thread.
    """

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
            self.server = Server.from_keywords(self.app, "127.0.0.1", 0, **self.options)
            self.server.start()
            self.port = self.server.address[1]
            self._hub = gevent.get_hub()
        except BaseException as exc:  # reported to the starting thread
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
        """Run `func(*args)` in a new greenlet of the server's hub and return its result (or
        raise what it raised): the way to read or change the server's state from the test's
        thread without racing the hub."""
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

    # -- looks at the server's state, each read in its hub ------------------------------------
    # Server keeps these counts private (they are its bookkeeping, not its API); this is the
    # one place that reads them, so a change there is one change here.

    def actor_count(self) -> int:
        """How many connections the server holds: admitted ones and those still in their
        handshake (`server.connections` has the admitted ones only)."""
        server = self._started()
        return self.call(lambda: len(server._actors))

    def open_per_ip(self) -> dict[str, int]:
        """Admitted connections still open per client IP, as the per-IP cap counts them
        (`max_connections_per_ip`); empty when the server has no per-IP cap."""
        server = self._started()
        per_ip = server.admission.per_ip
        return self.call(lambda: dict(per_ip.open) if per_ip is not None else {})

    def wait_all_gone(self, timeout: float = 5.0) -> bool:
        """Wait until the server holds no connection, handshaking ones included; False if some
        are still there after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.actor_count():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _started(self) -> Server:
        if self.server is None:
            raise RuntimeError("the server thread is not started")
        return self.server

    def stop(self, timeout: float = 5.0) -> None:
        """`Server.stop(timeout)` in the hub (closing every connection), then the thread ends."""
        if self.server is not None and self._thread.is_alive() and not self.server.stopped:
            self.call(self.server.stop, timeout, timeout=timeout + 10)
        self._thread.join(10)

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until the thread ends: `serve_forever` returned, so a stop begun with `call`
        has finished. False if it is still running after `timeout` seconds."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
