"""The browser client library (websock_actors/static/client.js) against the real server, in Node.

`node --test` runs clients/js/test/*.test.mjs with the `ws` package as the WebSocket: the
servers of tests/support/js_app.py run here (one with a 120 s resume window, one with
0.5 s), the outage test starts its own on a real Redis. Skipped without Node, unless
WEBSOCK_ACTORS_REQUIRE_NODE=1 (CI sets it); `npm ci` runs first when node_modules is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from websock_actors.testing import ServerThread

from ..support.js_app import js_app
from ..support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "clients" / "js"
NODE, NPM = shutil.which("node"), shutil.which("npm")
REQUIRED = os.environ.get("WEBSOCK_ACTORS_REQUIRE_NODE") == "1"
if REQUIRED and not (NODE and NPM):
    raise RuntimeError("the Node tests are required but node or npm is missing")

pytestmark = [pytest.mark.skipif(not NODE, reason="node is not installed"), pytest.mark.timeout(180)]


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """clients/js/node_modules, installed from the lock file (`npm ci`) when missing."""
    modules = PACKAGE / "node_modules"
    if not (modules / "ws").is_dir():
        if NPM is None:
            pytest.skip("npm is not installed")
        command = [NPM, "ci", "--no-audit", "--no-fund"]
        done = subprocess.run(command, cwd=PACKAGE, capture_output=True, text=True)
        if done.returncode != 0:
            message = f"npm ci failed:\n{done.stdout}\n{done.stderr}"
            if REQUIRED:
                pytest.fail(message)
            pytest.skip(message)
    return modules


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A Redis of its own for the outage test, or None without redis-server (that test skips)."""
    try:
        server: RedisServer = request.getfixturevalue("redis_server")
    except pytest.skip.Exception:
        yield None
        return
    yield server.url


def test_the_library_in_node(node_modules: Path, redis_url: str | None) -> None:
    assert NODE is not None
    with ServerThread(js_app()) as main, ServerThread(js_app(window=0.5)) as short:
        env = {
            **os.environ,
            "WSA_URL": main.url,
            "WSA_SHORT_URL": short.url,
            "WSA_PYTHON": sys.executable,
            "WSA_ROOT": str(ROOT),
        }
        if redis_url is not None:
            env["WSA_REDIS_URL"] = redis_url
        files = sorted(str(path) for path in (PACKAGE / "test").glob("*.test.mjs"))
        done = subprocess.run(
            [NODE, "--test", "--test-reporter=tap", *files],
            cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=150,
        )  # fmt: skip
    if done.returncode != 0:
        print(done.stdout)
        print(done.stderr, file=sys.stderr)
    assert done.returncode == 0, "node --test failed: its output is above"
    skipped = "# skipped 0" if redis_url is not None else "# skipped 1"
    assert skipped in done.stdout, done.stdout  # the outage test ran where Redis is
