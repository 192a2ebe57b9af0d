"""What the hostile-client benchmarks (soak.py, under_attack.py) need to run the chat server as
a process of their own and watch it: a free port, the command (pinned to CPU 0), waiting for it
to listen, its fds and memory from /proc."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import gevent.subprocess

ROOT = Path(__file__).resolve().parent.parent


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(port: int, extra: list[str]) -> list[str]:
    script = ROOT / ".venv" / "bin" / "websock-actors"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "websock_actors"]
    command = [*base, "run", "examples.chat:app", "--port", str(port), "--no-patch", "--log-level", "INFO"]
    command += extra
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]  # taskset execs: the PID stays the server's
    return command


def wait_for_port(port: int, server: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            gevent.socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            gevent.sleep(0.1)
    return False


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_status(pid: int, key: str) -> int:
    """A kB figure of /proc/PID/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


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
    if not wait_for_port(port, server, 20):
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
