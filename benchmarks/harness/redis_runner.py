"""A redis-server of the benchmark's own: a free loopback port, nothing persisted (its files and
log in the run's work directory), stopped by PID.

The tests start theirs with tests/redis_server.py, a pytest fixture; this one serves scripts that
need redis-py's client and the server's resource usage."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness.ports import free_port
from benchmarks.harness.processes import Failed, pinned, reap

__all__ = ["RedisServer", "answers_ping", "redis_command"]


def redis_command(binary: str, port: int, workdir: Path) -> list[str]:
    """redis-server on 127.0.0.1:`port` without persistence, its log in `workdir`/redis.log."""
    return [
        binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip


def answers_ping(client: Any, exited: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll PING through `client` (a redis.Redis) until it answers (True), or until the server
    `exited()` or `timeout` seconds passed (False)."""
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return True
        except redis.ConnectionError:
            if exited() or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


class RedisServer:
    """redis-server on a free loopback port, without persistence, and a redis.Redis client of it.
    Raises Failed when it does not answer PING."""

    def __init__(self, binary: str, cpus: int | str | None, workdir: Path) -> None:
        import redis  # the project's [redis] extra: only the scripts that start Redis need it

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = redis_command(binary, self.port, workdir)
        self.proc = subprocess.Popen(pinned(cpus, command), cwd=workdir, stdout=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        if not answers_ping(self.client, lambda: self.proc.poll() is not None):
            raise Failed(f"redis-server did not start: see {workdir / 'redis.log'}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def commandstats(self) -> dict[str, dict[str, Any]]:
        """`INFO commandstats`: its `cmdstat_<name>` entries."""
        stats: dict[str, dict[str, Any]] = self.client.info("commandstats")
        return stats

    def calls(self) -> dict[str, int]:
        """Calls so far per command."""
        stats = self.commandstats()
        return {key.removeprefix("cmdstat_"): int(value["calls"]) for key, value in stats.items()}

    def cpu(self) -> dict[str, float]:
        """`INFO cpu`: its CPU seconds so far (used_cpu_sys, used_cpu_user, ...)."""
        return {key: float(value) for key, value in self.client.info("cpu").items()}

    def stop(self, timeout: float = 10.0) -> tuple[int, Any] | None:
        """SIGTERM, SIGKILL after `timeout`: its exit status and resource usage (None if it had
        ended already)."""
        self.client.close()
        if self.proc.returncode is not None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        return reap(self.proc, timeout)
