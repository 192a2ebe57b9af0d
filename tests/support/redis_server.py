"""A real Redis for the tests: Debian's `redis-server`, started by the tests themselves.

Each server listens on a free port of 127.0.0.1, keeps nothing on disk (`--save ""
--appendonly no`, its `--dir` a temporary directory) and runs in the foreground with its
output captured in `<dir>/redis.log` (shown when it fails to start).

Fixtures (registered in tests/conftest.py):

- `redis_server`: a server of the test's own, which it may `kill()` (SIGKILL), `restart()`
  (on the same port) or `stop()`; stopped after the test, which then checks that the process
  is gone, its port refuses connections and it wrote no file.
- `shared_redis`: one server for the whole session (`redis_session`), emptied (FLUSHALL) for
  each test; its `kill`, `restart` and `stop` raise, since the tests after would see it. After
  the test its clients are disconnected (a warning names any that were still connected).

Without `redis-server` the fixtures skip, or fail when WEBSOCK_ACTORS_REQUIRE_REDIS is set
(CI sets it to 1, after installing Debian's redis-server).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

REQUIRE = "WEBSOCK_ACTORS_REQUIRE_REDIS"
START_TIMEOUT = 10.0  # seconds for a started server to answer PING
STOP_TIMEOUT = 10.0


class RedisReplyError(Exception):
    """An error reply (`-ERR ...`) of Redis."""


class RedisLeakWarning(UserWarning):
    """A test left clients connected to the shared Redis."""


def redis_server_executable() -> str:
    """The path of redis-server; skips the test (or fails it, when required) if there is none."""
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    message = "redis-server is not installed (Debian: apt-get install redis-server)"
    if os.environ.get(REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{message}, and {REQUIRE} is set: the Redis tests are required", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a tiny RESP client: one connection per command ------------------------------------------


def _encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: Any, top: bool = True) -> Any:
    """One RESP2 reply: simple strings as str, bulk strings as bytes, integers as int,
    arrays as lists, nil as None; an error raises (nested in an array: is returned)."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("Redis closed the connection before replying")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        error = RedisReplyError(rest.decode())
        if top:
            raise error
        return error
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("Redis closed the connection in a reply")
        return data[:-2]
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(stream, top=False) for _ in range(count)]
    raise ConnectionError(f"not a RESP reply: {line!r}")


def resp_command(port: int, *args: Any, timeout: float = 5.0) -> Any:
    """Send one command to the Redis on 127.0.0.1:`port`; its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        with sock.makefile("rb") as stream:
            return _read_reply(stream)


def refuses(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


# -- the server ---------------------------------------------------------------------------------


class RedisServer:
    """One redis-server process (started again by `restart`, on the same port)."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.log = directory / "redis.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._started: list[subprocess.Popen[bytes]] = []  # every process, reaped by the end

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the Redis server is not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        """What the server(s) printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> RedisServer:
        """Start on a free port (another if that one is taken meanwhile); wait for PING."""
        for _ in range(5):
            self.port = free_port()
            if self._launch():
                return self
            if "Address already in use" not in self.output():
                break
        self._fail_to_start()

    def restart(self) -> None:
        """Start again on the same port (stopping it first if it runs); wait for PING."""
        if self.running:
            self.stop()
        if not self._launch():
            self._fail_to_start()

    def kill(self) -> None:
        """SIGKILL: gone at once, no clean shutdown. Waits for the process to end."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM (Redis shuts down cleanly), SIGKILL if it takes over STOP_TIMEOUT s."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        """One command over a connection of its own, e.g. `command("SET", "k", "v")`; its reply
        (see `_read_reply`; an error reply raises `RedisReplyError`)."""
        return resp_command(self.port, *args, timeout=timeout)

    def client_kill_pubsub(self) -> int:
        """Disconnect every client in Pub/Sub mode (CLIENT KILL TYPE pubsub); how many."""
        return int(self.command("CLIENT", "KILL", "TYPE", "pubsub"))

    def check_gone(self) -> None:
        """After `stop`/`kill`: every process reaped, the port closed, nothing written."""
        alive = [process.pid for process in self._started if process.poll() is None]
        assert not alive, f"redis-server still running: {alive}"
        assert refuses(self.port), f"something still listens on 127.0.0.1:{self.port}"
        written = sorted(path.name for path in self.directory.iterdir() if path != self.log)
        assert not written, f"redis-server wrote {written} (it should persist nothing)"

    def _launch(self) -> bool:
        """Run redis-server on self.port; True once it answers PING, False if it exited."""
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                [
                    self.executable,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.directory),
                    "--daemonize", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self._started.append(process)
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if resp_command(self.port, "PING", timeout=1.0) == "PONG":
                    return True
            except (OSError, RedisReplyError):
                pass  # not listening yet, or still loading
            try:
                process.wait(0.02)  # the pause between two PINGs, cut short if it exits
            except subprocess.TimeoutExpired:
                continue
            return False
        process.kill()
        process.wait(STOP_TIMEOUT)
        return False

    def _fail_to_start(self) -> NoReturn:
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}:\n{self.output()}")


class SharedRedis:
    """The session's server as one test sees it: everything but `kill`, `restart` and `stop`."""

    def __init__(self, server: RedisServer) -> None:
        self._server = server

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def pid(self) -> int:
        return self._server.pid

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        return self._server.command(*args, timeout=timeout)

    def client_kill_pubsub(self) -> int:
        return self._server.client_kill_pubsub()

    def output(self) -> str:
        return self._server.output()

    def _refuse(self, *_: Any) -> NoReturn:
        raise RuntimeError("the shared Redis serves every test: use the redis_server fixture for one to stop")

    kill = restart = stop = _refuse


def _other_clients(server: RedisServer) -> list[str]:
    """CLIENT LIST but for the connection asking."""
    listing = server.command("CLIENT", "LIST")
    lines = (listing.decode() if isinstance(listing, bytes) else str(listing)).splitlines()
    return [line for line in lines if "cmd=client|list" not in line]


# -- the fixtures ------------------------------------------------------------------------------


def _running(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_server_executable(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.check_gone()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this test's own (`.url`, `.port`, `.pid`, `.kill()`, `.restart()`, `.stop()`,
    `.command(...)`, `.client_kill_pubsub()`); stopped after the test, and checked gone."""
    yield from _running(tmp_path_factory.mktemp("redis"))


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The Redis shared by the session; tests use it through `shared_redis`."""
    yield from _running(tmp_path_factory.mktemp("redis-shared"))


@pytest.fixture
def shared_redis(redis_session: RedisServer) -> Iterator[SharedRedis]:
    """The session's Redis, empty and without clients at the start of the test."""
    pid = redis_session.pid
    assert redis_session.running, f"the shared Redis died:\n{redis_session.output()}"
    redis_session.command("FLUSHALL")
    yield SharedRedis(redis_session)
    assert redis_session.running and redis_session.pid == pid, "the shared Redis was stopped by the test"
    # Clients close asynchronously: give them a moment, then disconnect what is left.
    deadline = time.monotonic() + 2.0
    while (left := _other_clients(redis_session)) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        leak = RedisLeakWarning(f"{len(left)} client(s) still connected to the shared Redis: {left}")
        warnings.warn(leak, stacklevel=1)
        for kind in ("normal", "pubsub"):
            redis_session.command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
    redis_session.command("FLUSHALL")
