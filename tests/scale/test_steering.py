"""Per-IP caps that hold across `--workers` (issue 24, item 2): each client address is steered
to one worker by a reuseport BPF program (scale/steering.py), whose counts are then that
address's own. Real sockets: the server runs in a subprocess, clients connect from
127.0.0.x; `tests/support/pid_app.py` answers with its worker's PID.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage
from websockets.sync.client import ClientConnection, connect

from websock_actors.scale.steering import steering_program, worker_of

from ..support.raw import free_port
from ..support.waits import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_LINE = re.compile(r"websock-actors: worker (\d+) \(pid (\d+)\) serving")


class Run:
    """`websock-actors run tests.support.pid_app:app --workers 2 ...` and its output."""

    def __init__(self, port: int, proc: subprocess.Popen[str], stderr: IO[str]) -> None:
        self.port, self.proc, self.stderr = port, proc, stderr
        self.lines: list[str] = []
        self.workers: dict[int, int] = {}  # index -> pid
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = WORKER_LINE.match(line)
            if match:
                self.workers[int(match[1])] = int(match[2])

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def open(self, host: str) -> ClientConnection:
        """A WebSocket connection from `host` (a loopback address)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5, source_address=(host, 0))
        try:
            return connect(f"ws://127.0.0.1:{self.port}/", sock=sock, open_timeout=5, compression=None)
        except BaseException:
            sock.close()
            raise


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(*options: str, prelude: str = "") -> Run:
        port = free_port()
        code = f"{prelude}\nimport sys\nfrom websock_actors.cli import main\nsys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, "run", "tests.support.pid_app:app", "--port", str(port)]
        stderr = open(tmp_path / f"stderr-{len(runs)}.log", "w+")  # noqa: SIM115 (closed below)
        command += ["--workers", "2", *options]
        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        started = Run(port, proc, stderr)
        runs.append(started)
        wait_until(lambda: len(started.workers) == 2 or proc.poll() is not None, 20, "two workers")
        assert proc.poll() is None, started.log()
        return started

    yield start
    for started in runs:
        if started.proc.poll() is None:
            started.proc.send_signal(signal.SIGTERM)
            try:
                started.proc.wait(20)
            except subprocess.TimeoutExpired:
                started.proc.kill()
                started.proc.wait(10)
        started.stderr.close()


def pid_of(ws: ClientConnection) -> int:
    ws.send("pid?")
    return int(ws.recv(timeout=5))


def admitted(server: Run, host: str, count: int) -> int:
    """Open `count` connections from `host`, held until all are tried: how many were admitted."""
    with ExitStack() as stack:
        opened = 0
        for _ in range(count):
            try:
                ws = stack.enter_context(server.open(host))
                pid_of(ws)
            except (InvalidHandshake, InvalidMessage, ConnectionClosed, OSError):
                continue
            opened += 1
        return opened


@pytest.mark.timeout(60)
def test_one_address_meets_one_worker(run) -> None:
    server = run("--max-connections-per-ip", "100")
    for host in ("127.0.0.2", "127.0.0.1"):
        pids = set()
        for _ in range(20):
            with server.open(host) as ws:
                pids.add(pid_of(ws))
        assert pids == {server.workers[worker_of(host, 2)]}, (host, pids, server.workers)
    assert "cannot steer" not in server.log()


@pytest.mark.timeout(60)
def test_a_restarted_worker_serves_the_same_addresses(run) -> None:
    server = run("--max-connections-per-ip", "100")
    index = worker_of("127.0.0.2", 2)
    before = server.workers[index]
    os.kill(before, signal.SIGKILL)  # the master forks it again; the listener stays the master's
    wait_until(lambda: server.workers[index] != before, 20, "the worker to be restarted")
    with server.open("127.0.0.2") as ws:
        assert pid_of(ws) == server.workers[index]
    with server.open("127.0.0.1") as ws:
        assert pid_of(ws) == server.workers[3 - index]


@pytest.mark.timeout(60)
def test_the_connections_per_ip_cap_holds_across_workers(run) -> None:
    server = run("--max-connections-per-ip", "5")
    assert admitted(server, "127.0.0.2", 20) == 5
    assert admitted(server, "127.0.0.3", 20) == 5  # whichever worker it meets
    assert "Traceback" not in server.log()


@pytest.mark.timeout(60)
def test_the_handshake_rate_per_ip_holds_across_workers(run) -> None:
    server = run("--max-handshakes-per-ip", "5")
    started = time.monotonic()
    opened = 0
    for _ in range(20):
        try:
            with server.open("127.0.0.2") as ws:
                pid_of(ws)
        except (InvalidHandshake, InvalidMessage, ConnectionClosed, OSError):
            continue
        opened += 1
    elapsed = time.monotonic() - started
    assert 5 <= opened <= 5 + 5 * elapsed + 1, (opened, elapsed)  # the burst, then 5/s


@pytest.mark.timeout(60)
def test_without_the_program_the_workers_bind_as_before(run) -> None:
    # A kernel that refuses the program: one line says so, and the server serves all the same.
    refuse = "import websock_actors.scale.steering as s\ns.SO_ATTACH_REUSEPORT_CBPF = -1"
    server = run("--max-connections-per-ip", "5", prelude=refuse)
    with server.open("127.0.0.2") as ws:
        assert pid_of(ws) in server.workers.values()
    assert server.log().count("cannot steer client addresses to workers") == 1


def test_the_program_is_the_arithmetic_of_worker_of() -> None:
    program = steering_program(3)
    assert program[-2][3] == 3 and len(program) == 10
    assert {worker_of(f"10.0.{i}.{j}", 3) for i in range(4) for j in range(4)} == {1, 2, 3}
    assert worker_of("::ffff:127.0.0.2", 2) == worker_of("127.0.0.2", 2)
