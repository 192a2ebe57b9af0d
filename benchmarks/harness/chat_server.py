"""The chat demo as a server process of the hostile-client benchmarks (soak.py, under_attack.py):
its command (pinned to CPU 0), a hard wall-clock limit for the whole run, and a bounded stop.
They drive it from gevent without monkey-patching, so its waits are gevent's."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import gevent
import gevent.subprocess

from benchmarks.harness.ports import wait_for_port

__all__ = ["server_command", "start_server", "stop_server"]

ROOT = Path(__file__).resolve().parents[2]


def server_command(port: int, extra: list[str]) -> list[str]:
    script = ROOT / ".venv" / "bin" / "websock-actors"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "websock_actors"]
    command = [*base, "run", "examples.chat:app", "--port", str(port), "--no-patch", "--log-level", "INFO"]
    command += ["--rate-limit-per", "connection"]  # the benchmark's clients share one address
    command += extra
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]  # taskset execs: the PID stays the server's
    return command


def start_server(port: int, extra: list[str], log: Path, hard_limit: float) -> Any:
    """Start the chat server (its output to `log`) with a hard wall-clock limit for the whole
    run (then the server is killed and this process exits 3), move this process off the
    server's CPU, and wait for the port: the server process, or None when it did not start."""
    command = server_command(port, extra)
    with open(log, "wb") as log_file:  # the server writes to its own copy of the descriptor
        server = gevent.subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=gevent.subprocess.STDOUT)

    def on_alarm(signum: int, frame: Any) -> None:
        print(f"hard wall-clock limit of {hard_limit:.0f} s reached: killing the server", flush=True)
        try:
            os.kill(server.pid, signal.SIGKILL)
        except OSError:
            pass
        os._exit(3)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(hard_limit + 0.999))
    cpus = os.cpu_count() or 1
    if cpus > 1:  # this process off the server's CPU
        os.sched_setaffinity(0, set(range(1, cpus)))
    print(f"server: {' '.join(command)} (PID {server.pid}, log {log})", flush=True)
    if wait_for_port(port, 20, process=server, green=True, poll=0.1, connect_timeout=1) is not None:
        print("the server did not start; its log:\n" + log.read_text(errors="replace")[-3000:])
        if server.poll() is None:
            server.kill()
        return None
    return server


def stop_server(server: Any, budget: float) -> int | None:
    """SIGTERM, then wait up to `budget` seconds (at least 5, at most 30) for the graceful stop;
    a server still running then is killed. Its exit status, or None when it had to be killed."""
    if server.poll() is not None:
        return int(server.returncode)
    server.send_signal(signal.SIGTERM)
    budget = max(5.0, min(30.0, budget))
    try:
        return int(server.wait(timeout=budget))
    except gevent.subprocess.TimeoutExpired:
        print(f"the server did not stop within {budget:.0f} s of SIGTERM: killed", flush=True)
        server.kill()
        server.wait(timeout=5)
        return None
