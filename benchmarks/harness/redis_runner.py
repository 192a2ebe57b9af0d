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
from benchmarks.harness.processes import Failed, pinned, reap, stop_process

__all__ = ["RedisServer", "answers_ping", "redis_command"]


def redis_command(binary: str, port: int, workdir: Path) -> list[str]:
    """redis-server on 127.0.0.1:`port` without persistence, its log in `workdir`/redis.log."""
    return [
        binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip


def answers_ping(
    client: Any, exited: Callable[[], bool], timeout: float = 20.0, sleep: Callable[[float], Any] = time.sleep
) -> bool:
    """Poll PING through `client` (a redis.Redis) until it answers (True), or until the server
    `exited()` or `timeout` seconds passed (False)."""
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return True
        except (redis.ConnectionError, redis.TimeoutError):
            if exited() or time.monotonic() > deadline:
                return False
            sleep(0.05)


class RedisServer:
    """redis-server on a free loopback port, without persistence, and a redis.Redis client of it.
    Raises Failed when it does not answer PING. With `green`, a gevent run's: gevent's sockets,
    sleep and processes (`popen`), so that `restart()` on the same port blocks no greenlet."""

    def __init__(
        self,
        binary: str,
        cpus: int | str | None,
        workdir: Path,
        green: bool = False,
        popen: Callable[[list[str]], Any] | None = None,
    ) -> None:
        import redis  # the project's [redis] extra: only the scripts that start Redis need it

        self.binary, self.cpus, self.workdir, self.green = binary, cpus, workdir, green
        self.sleep: Callable[[float], Any] = time.sleep
        self.popen = popen or (lambda c: subprocess.Popen(c, cwd=workdir, stdout=subprocess.DEVNULL))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        if green:
            import gevent

            from websock_actors.scale.redis_connect import connection_options
            from websock_actors.scale.redis_io import GeventRedisConnection

            options = connection_options(self.url, connect_timeout=2.0, timeout=2.0)
            pool = redis.ConnectionPool(connection_class=GeventRedisConnection, **options)
            self.client = redis.Redis(connection_pool=pool)
            self.sleep = gevent.sleep
        else:
            self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)
        self.start()

    def start(self) -> None:
        """Start it on self.port; return once it answers PING."""
        self.proc = self.popen(pinned(self.cpus, redis_command(self.binary, self.port, self.workdir)))
        if not answers_ping(self.client, lambda: self.proc.poll() is not None, sleep=self.sleep):
            raise Failed(f"redis-server did not answer PING on {self.port}: see {self.workdir / 'redis.log'}")

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

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

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> tuple[int, Any] | None:
        """SIGTERM, SIGKILL after `timeout`: exit status and resource usage (None: it had ended)."""
        self.client.connection_pool.disconnect()
        if self.proc.returncode is not None or self.proc.poll() is not None:
            return None
        if self.green:  # gevent's Popen: its wait yields
            stop_process(self.proc, timeout, kill_timeout=timeout)
            return None
        self.proc.send_signal(signal.SIGTERM)
        return reap(self.proc, timeout)

    def restart(self, downtime: float) -> None:
        """Stopped, gone for `downtime` seconds, started again on the same port."""
        self.stop()
        self.sleep(downtime)
        self.start()
