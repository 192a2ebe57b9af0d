"""A redis-server of a benchmark's own (redis_broadcast.py, scale_chat.py): its command line on a
loopback port without persistence, and the wait until it answers PING."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def redis_command(binary: str, port: int, workdir: Path) -> list[str]:
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
