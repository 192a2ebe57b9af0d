"""`websock-actors emit` in a subprocess: against a real server's API (no Redis), and
straight into a real redis-server shared by two nodes. Exit status 0 done, 1 refused,
2 usage, 3 unreachable; the result as one JSON line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from websock_actors.testing import ServerThread

from ..support.api_app import api_app
from ..support.apps import two_nodes_on
from ..support.users_app import closed_with, member, notice, users_app

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
KEY = "cli-api-key"
NOTICE = json.dumps({"type": "notice", "text": "from cron"})


def emit(*argv: str, key: str | None = KEY) -> tuple[int, Any, str]:
    """Run `websock-actors emit ARGV`: its exit status, its JSON line (or None), its stderr."""
    env = {k: v for k, v in os.environ.items() if k != "WEBSOCK_ACTORS_API_KEY"}
    env["PYTHONPATH"] = str(ROOT)
    if key is not None:
        env["WEBSOCK_ACTORS_API_KEY"] = key
    done = subprocess.run(
        [sys.executable, "-m", "websock_actors", "emit", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert len(lines) <= 1, done.stdout
    return done.returncode, json.loads(lines[0]) if lines else None, done.stderr


@pytest.fixture
def api_server() -> Iterator[ServerThread]:
    with ServerThread(api_app(), api_key=KEY) as server:
        yield server


def test_emit_through_the_api(api_server: ServerThread, tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{api_server.port}"
    ann, bob = member(api_server, "ann", "lobby"), member(api_server, "bob")
    status, done, _ = emit("--api", api, "broadcast", "lobby", NOTICE)
    assert (status, done["deliveries"], done["nodes"]) == (0, 1, None)
    assert notice(ann) == "from cron"
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    from_file = ("--api", api, "--api-key-file", str(key_file))
    status, done, _ = emit(*from_file, "send-to-user", "bob", NOTICE, key=None)
    assert (status, done["deliveries"]) == (0, 1)
    assert notice(bob) == "from cron"
    status, done, _ = emit("--api", api, "disconnect-user", "bob", "--code", "4003", "--reason", "banned")
    assert (status, done["closed"]) == (0, 1)
    assert closed_with(bob) == (4003, "banned")
    ann.close()


def test_refused_usage_and_unreachable_exit_statuses(api_server: ServerThread) -> None:
    api = f"http://127.0.0.1:{api_server.port}"
    status, done, err = emit("--api", api, "broadcast", "lobby", NOTICE, key="wrong")
    assert (status, done) == (1, None) and "401" in err and "Traceback" not in err
    status, _, err = emit("--api", api, "broadcast", "lobby", '{"type": "notice"}')
    assert status == 1 and "422" in err and "text" in err
    assert emit("--api", api, "broadcast", "lobby", "{not json")[0] == 2
    status, _, err = emit("--api", api, "broadcast", "lobby", NOTICE, key=None)
    assert status == 2 and "WEBSOCK_ACTORS_API_KEY" in err
    assert emit("broadcast", "lobby", NOTICE)[0] == 2  # neither --redis nor --api
    assert emit("--api", api, "disconnect-user", "ann", "--code", "1005")[0] == 2
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, not listening: refused
        status, _, err = emit("--api", f"http://127.0.0.1:{probe.getsockname()[1]}", "broadcast", "r", NOTICE)
    assert status == 3 and "unreachable" in err
    assert emit("--redis", "redis://127.0.0.1:1/0", "--timeout", "1", "broadcast", "r", NOTICE)[0] == 3


def test_emit_through_redis_reaches_a_user_on_two_nodes(shared_redis: Any) -> None:
    with two_nodes_on(shared_redis.url, users_app) as (a, b):
        ann_a, ann_b = member(a, "ann"), member(b, "ann")
        status, done, _ = emit("--redis", shared_redis.url, "--idempotency-key", "cron-1",
                               "send-to-user", "ann", NOTICE)  # fmt: skip
        assert (status, done["nodes"], done["duplicate"]) == (0, 2, False)
        assert notice(ann_a) == notice(ann_b) == "from cron"
        status, done, _ = emit("--redis", shared_redis.url, "--idempotency-key", "cron-1",
                               "send-to-user", "ann", NOTICE)  # fmt: skip
        assert (status, done["duplicate"]) == (0, True)
        marker = json.dumps({"type": "notice", "text": "marker"})
        assert emit("--redis", shared_redis.url, "send-to-user", "ann", marker)[0] == 0
        assert notice(ann_a) == notice(ann_b) == "marker"  # not the duplicate before it
        status, done, _ = emit("--redis", shared_redis.url, "disconnect-user", "ann", "--code", "4001")
        assert (status, done["nodes"]) == (0, 2)
        assert closed_with(ann_a) == closed_with(ann_b) == (4001, "")
