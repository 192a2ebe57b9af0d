"""The CI-sized sibling of benchmarks/redis_cluster_broadcast.py: its --quick run (20 rooms of
4 members over two nodes, 10 numbered says per room) through one Redis, and through a Redis
Cluster of 3 masters and 3 replicas once the nodes accept `redis+cluster://` URLs.

Every delivery must come once and in order, and the figures the benchmark quotes must be
there: CPU seconds of every Redis process, Redis commands per broadcast, one publish per
broadcast. The load generator is benchmarks/rooms_load.js (Node and `ws`): without node the
test skips (fails with WEBSOCK_ACTORS_REQUIRE_NODE=1, as CI sets), and `npm ci` installs
benchmarks/node_modules when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.redis_cluster_broadcast import cluster_unsupported

from ..support.redis_cluster import executables as cluster_executables
from ..support.redis_server import redis_server_executable

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SCRIPT = BENCH / "redis_cluster_broadcast.py"
REQUIRED = os.environ.get("WEBSOCK_ACTORS_REQUIRE_NODE") == "1"
ROOMS, MEMBERS, SAYS = 20, 4, 10  # what --quick runs

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def load_generator() -> None:
    """node, and benchmarks/node_modules (installed from the lock file when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or (not (BENCH / "node_modules" / "ws").is_dir() and npm is None):
        message = "node and npm are needed for benchmarks/rooms_load.js"
        if REQUIRED:
            pytest.fail(f"{message}, and WEBSOCK_ACTORS_REQUIRE_NODE is set", pytrace=False)
        pytest.skip(message)
    if not (BENCH / "node_modules" / "ws").is_dir():
        assert npm is not None
        command = [npm, "ci", "--no-audit", "--no-fund"]
        done = subprocess.run(command, cwd=BENCH, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            message = f"npm ci in benchmarks/ failed:\n{done.stdout}\n{done.stderr}"
            if REQUIRED:
                pytest.fail(message)
            pytest.skip(message)


def run_quick(scenario: str, tmp_path: Path, *tools: str) -> dict[str, Any]:
    """The benchmark's --quick run of `scenario`; its one run's figures."""
    out = tmp_path / "figures.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--scenarios", scenario, "--json", str(out),
               "--max-seconds", "110", *tools]  # fmt: skip
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    # The script bounds itself (--max-seconds; its processes die with it); this bound is ours.
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=130)
    shown = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"the run failed ({done.returncode}):\n{shown}"
    runs = json.loads(out.read_text())["runs"][scenario]
    assert len(runs) == 1 and "error" not in runs[0], runs
    run: dict[str, Any] = runs[0]
    return run


def check_deliveries(run: dict[str, Any]) -> None:
    expected = ROOMS * MEMBERS * SAYS
    assert (run["expected"], run["delivered"], run["missing"]) == (expected, expected, 0), run
    wrong = (run["members_short"], run["members_over"], run["out_of_order"], run["foreign"])
    assert wrong == (0, 0, 0, 0), run
    assert run["other_frames"] == {}, run
    assert run["broadcasts"] == ROOMS * SAYS
    assert run["deliveries_per_s"] > 0 and run["p99_ms"] >= run["p50_ms"] > 0


def publishes(calls: dict[str, int]) -> int:
    return calls.get("publish", 0) + calls.get("spublish", 0)


def test_single_redis(tmp_path: Path, load_generator: None) -> None:
    run = run_quick("single", tmp_path, "--redis-server", redis_server_executable())
    check_deliveries(run)
    assert set(run["cpu_s"]) == {"redis", "A", "B"}
    assert all(seconds >= 0 for seconds in run["cpu_s"].values())
    commands = run["redis_commands"]["redis"]
    assert publishes(commands) == run["broadcasts"], commands  # one PUBLISH per broadcast
    per_broadcast = sum(commands.values()) / run["broadcasts"]
    assert run["commands_per_broadcast"] == pytest.approx(per_broadcast, abs=0.001)
    assert "info" not in commands and "replconf" not in commands  # ours, and replication's
    assert run["counters"]["A"]["published"] + run["counters"]["B"]["published"] == run["broadcasts"]


def test_cluster(tmp_path: Path, load_generator: None) -> None:
    if (why := cluster_unsupported()) is not None:
        pytest.skip(why)
    server, cli = cluster_executables()
    run = run_quick("cluster", tmp_path, "--redis-server", server, "--redis-cli", cli)
    check_deliveries(run)
    names = {"m1", "m2", "m3", "r1", "r2", "r3"}
    assert set(run["cpu_s"]) == names | {"A", "B"}
    masters = {name: run["redis_commands"][name] for name in ("m1", "m2", "m3")}
    # Sharded: each room's publish goes to its own master, and the rooms spread over them.
    assert sum(publishes(calls) for calls in masters.values()) == run["broadcasts"], masters
    assert sum(1 for calls in masters.values() if publishes(calls)) >= 2, masters
    assert sum(1 for name in ("m1", "m2", "m3") if run["redis_keys"][name]) >= 2, run["redis_keys"]
    assert run["master_commands_per_broadcast"] <= run["commands_per_broadcast"]
