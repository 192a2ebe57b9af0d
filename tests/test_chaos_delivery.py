"""A CI-sized chaos delivery run (benchmarks/chaos_delivery.py): 40 chat clients in 4 rooms on
two nodes and one Redis for 45 s while Redis is restarted, paused and its subscribers killed,
a node is killed, and clients are cut off.

Every acknowledged message must reach every member of its room once and in order, or its
loss must be reported to that member (room_lost, resumed.lost, restored: false). The run
starts its own redis-server; without one the test skips (fails with
WEBSOCK_ACTORS_REQUIRE_REDIS set), as the other Redis tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .support.redis_server import redis_server_executable

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "chaos_delivery.py"
FAULTS = ("pubsub_kill", "redis_restart", "redis_pause", "node_kill", "client_abort")
DURATION = 45  # seconds of saying; the run takes about 10 s more (start, drain, stop, check)


@pytest.mark.timeout(DURATION + 45)
def test_acknowledged_messages_arrive_or_their_loss_is_reported(tmp_path: Path) -> None:
    redis_server = redis_server_executable()
    out = tmp_path / "chaos.json"
    command = [sys.executable, str(SCRIPT), "--duration", str(DURATION), "--clients", "40", "--rooms", "4",
               "--seed", "1", "--json", str(out), "--redis-server", redis_server]  # fmt: skip
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    # The script bounds itself (a hard limit kills its processes); this bound is the test's own.
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=DURATION + 40)
    assert done.returncode == 0, f"the run broke ({done.returncode}):\n{done.stderr[-4000:]}"
    result = json.loads(out.read_text())
    shown = json.dumps(result, indent=1)[:20000]
    faults = result["faults"]
    assert all(faults[kind] >= 1 for kind in FAULTS), f"a fault was not applied: {faults}\n{shown}"
    assert result["acknowledged"] > 0, shown
    assert result["run"]["leftover_pids"] == [], shown
    assert result["run"]["driver_problems"] == [], shown
    assert result["run"]["stats"].get("client_queue_dropped", 0) == 0, shown
    assert (result["duplicates"], result["out_of_order"]) == (0, 0), shown
    assert result["gaps_unreported"] == 0, shown
