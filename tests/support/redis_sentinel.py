"""A real Sentinel deployment for the tests: one master, one replica, three sentinels.

Every process is Debian's redis-server (a sentinel is `redis-sentinel`, or `redis-server
--sentinel` where that package is missing) on a free port of 127.0.0.1, in a temporary
directory of its own, without persistence (the replica loads the master's data without a
file: diskless sync and load). The sentinels watch the master as `MASTER_NAME` with quorum 2,
`down-after-milliseconds` 1000 and a short failover timeout, so a master killed with -9 is
replaced within a few seconds. Every process is stopped by its PID after the test.

Fixture (registered in tests/conftest.py): `redis_sentinel`, a `SentinelDeployment` (`.url`,
`.master`, `.replica`, `.sentinels`, `.master_port()`, `.wait_failover(old_port)`). Without
redis-server the tests skip, or fail when WEBSOCK_ACTORS_REQUIRE_SENTINEL is set (CI sets it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from .redis_server import RedisReplyError, free_port, refuses, resp_command

__all__ = ["MASTER_NAME", "Process", "SentinelDeployment", "redis_sentinel"]

REQUIRE = "WEBSOCK_ACTORS_REQUIRE_SENTINEL"
MASTER_NAME = "wsa-master"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
DOWN_AFTER_MS = 1000


def executables() -> tuple[str, Callable[[str], list[str]]]:
    """redis-server, and the command that starts a sentinel with a config file; skips (or
    fails, when required) without redis-server."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not (os.path.isfile(server) and os.access(server, os.X_OK)):
        message = "redis-server is not installed (Debian: apt-get install redis-server redis-sentinel)"
        if os.environ.get(REQUIRE, "") not in ("", "0"):
            pytest.fail(f"{message}, and {REQUIRE} is set: the Sentinel tests are required", pytrace=False)
        pytest.skip(message)
    sentinel = shutil.which("redis-sentinel")
    if sentinel:
        return server, lambda conf: [sentinel, conf]
    return server, lambda conf: [server, conf, "--sentinel"]  # the file first


class Process:
    """One redis-server (or sentinel) process on its own port, in its own directory."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.log = directory / "out.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        return resp_command(self.port, *args, timeout=timeout)

    def start(self, argv: list[str], port: int) -> bool:
        """Run `argv`; True once it answers PING on `port`, False if it exited first."""
        self.port = port
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if resp_command(port, "PING", timeout=1.0) == "PONG":
                    return True
            except (OSError, RedisReplyError):
                pass
            try:
                self.process.wait(0.02)  # the pause between two PINGs, cut short if it exits
            except subprocess.TimeoutExpired:
                continue
            return False
        self.stop()
        return False

    def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class SentinelDeployment:
    """A master, its replica and three sentinels (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        self.server, self.sentinel_command = executables()
        self.root = root
        self.master = Process("master", self._folder("master"))
        self.replica = Process("replica", self._folder("replica"))
        self.sentinels = [Process(f"sentinel{i}", self._folder(f"sentinel{i}")) for i in range(3)]

    def _folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        return path

    @property
    def processes(self) -> list[Process]:
        return [self.master, self.replica, *self.sentinels]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self) -> SentinelDeployment:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
                  "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]  # fmt: skip
        self._launch(self.master, lambda port: [self.server, "--port", str(port), *common])
        replica = [*common, "--repl-diskless-load", "on-empty-db"]  # no file on the replica either
        replica += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self._launch(self.replica, lambda port: [self.server, "--port", str(port), *replica])
        for sentinel in self.sentinels:
            self._launch(sentinel, partial(self._sentinel_argv, sentinel))
        self._wait(self._ready, "the replica in sync and the sentinels aware of each other")
        return self

    def _sentinel_argv(self, sentinel: Process, port: int) -> list[str]:
        return self.sentinel_command(self._sentinel_conf(sentinel, port))

    def _sentinel_conf(self, sentinel: Process, port: int) -> str:
        path = sentinel.directory / "sentinel.conf"
        path.write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {sentinel.directory}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} 4000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        return str(path)

    def _launch(self, process: Process, argv: Any) -> None:
        for _ in range(5):
            port = free_port()
            if process.start(argv(port), port):
                return
            if "Address already in use" not in process.output():
                break
        raise RuntimeError(f"{process.name} did not start:\n{process.output()}")

    def _ready(self) -> bool:
        info = self.replica.command("INFO", "replication").decode()
        if "master_link_status:up" not in info:
            return False
        for sentinel in self.sentinels:
            fields = sentinel.command("SENTINEL", "MASTER", MASTER_NAME)
            master = dict(zip(fields[::2], fields[1::2], strict=True))
            if master[b"num-slaves"] != b"1" or master[b"num-other-sentinels"] != b"2":
                return False
        return True

    def _wait(self, condition: Any, what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.processes)
                raise AssertionError(f"not within {timeout} s: {what}\n{logs}")
            time.sleep(0.05)  # polling processes we do not control: nothing to wait on

    def master_port(self, sentinel: int = 0) -> int:
        """The master's port as one sentinel names it now."""
        _, port = self.sentinels[sentinel].command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(port)

    def wait_failover(self, old_port: int, timeout: float = 15.0) -> int:
        """Until every sentinel names another master than `old_port` and it says it is the
        master; its port."""

        def done() -> bool:
            ports = {self.master_port(i) for i in range(len(self.sentinels))}
            if len(ports) != 1 or old_port in ports:
                return False
            role = resp_command(ports.pop(), "ROLE")
            return bool(role[0] == b"master")

        self._wait(done, "the failover", timeout)
        return self.master_port()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        alive = [p.name for p in self.processes if p.process is not None and p.process.poll() is None]
        assert not alive, f"still running: {alive}"
        assert all(refuses(p.port) for p in self.processes if p.port)


@pytest.fixture
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    """A master, a replica and three sentinels of this test's own; stopped after it."""
    deployment = SentinelDeployment(tmp_path_factory.mktemp("sentinel"))
    try:
        yield deployment.start()
    finally:
        deployment.stop()
