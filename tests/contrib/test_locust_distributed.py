"""The Locust user distributed: `--processes 2`, and `--master` with two `--worker` processes on
loopback, against the chat demo served in this process (Locust in subprocesses: it
monkey-patches the process it runs in). Request stats are added up on the master by Locust;
the pushes ride on its worker -> master stats reports, and only the master writes
`<prefix>_pushes.csv`.
"""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest

from websock_actors.testing import ServerThread

from ..support.apps import fresh_chat_app

ROOT = Path(__file__).resolve().parents[2]
CHAT = str(ROOT / "locustfiles" / "chat.py")
USERS = 20
ROOM_SIZE = 5

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chat_run(url: str, csv_prefix: Path) -> list[str]:
    """The options of a headless chat run (the master's, or the only process's)."""
    return [
        "--headless", "--host", url, "--csv", str(csv_prefix), "--only-summary",
        "-u", str(USERS), "-r", str(USERS), "-t", "4s",
        "--room-size", str(ROOM_SIZE), "--think-time", "0.2",  # says under the chat's 5/s limit
    ]  # fmt: skip


class Locusts:
    """Locust processes started by a test, each writing to its own log; all gone at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = []
        self.forked: list[psutil.Process] = []  # the workers --processes forked, once seen

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.directory / f"{name}.log"
        out = open(log, "wb")  # noqa: SIM115  # closed in stop()
        process = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", CHAT, "--loglevel", "WARNING", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.processes.append((process, log, out))
        return process

    def finish(self, process: subprocess.Popen[bytes], timeout: float = 60) -> str:
        """Wait for `process` to exit (at most `timeout` s); its output; it must exit 0."""
        process.wait(timeout)
        output = self.output(process)
        assert process.returncode == 0, output
        return output

    def output(self, process: subprocess.Popen[bytes]) -> str:
        for started, log, out in self.processes:
            if started is process:
                out.flush()
                return log.read_text(errors="replace")
        raise KeyError(process)

    def children(self, process: subprocess.Popen[bytes]) -> list[int]:
        """The pids of the processes `process` forked (remembered, to be ended with it)."""
        children = psutil.Process(process.pid).children()
        self.forked.extend(child for child in children if child not in self.forked)
        return [child.pid for child in children]

    def stop(self) -> None:
        for child in self.forked:
            if child.is_running():  # psutil: False if its pid went to another process since
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
        for process, _, out in self.processes:
            if process.poll() is None:
                # Still running (a failed test): its forked workers go too, then itself.
                for child in psutil.Process(process.pid).children(recursive=True):
                    try:
                        child.kill()
                    except psutil.NoSuchProcess:
                        pass
                process.kill()
                process.wait(10)
            out.close()


@pytest.fixture
def locusts(tmp_path: Path) -> Iterator[Locusts]:
    started = Locusts(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def server_peers(server: ServerThread) -> set[int]:
    """The client ports of the server's open connections."""
    assert server.server is not None
    connections = server.server.connections
    return server.call(lambda: {conn.address[1] for conn in connections.values()})


def ports_to(pid: int, port: int) -> set[int]:
    """The local ports of process `pid`'s TCP connections to 127.0.0.1:`port`."""
    return {
        conn.laddr.port
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    }


def connections_by_worker(server: ServerThread, workers: Callable[[], list[int]]) -> dict[int, set[int]]:
    """Once every user is connected: the server's connections, by the worker process holding
    the client end. Every connection is some worker's."""
    wait_for(lambda: len(server_peers(server)) == USERS, 20, f"{USERS} connections on the server")
    peers = server_peers(server)
    by_worker = {pid: ports_to(pid, server.port) for pid in workers()}
    assert set().union(*by_worker.values()) == peers, (peers, by_worker)
    return by_worker


def check_chat_results(csv_prefix: Path, output: str) -> None:
    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        stats = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    for name in ("connect", "join", "say"):
        row = stats[("WS", name)]
        assert int(row["Request Count"]) > 0, (name, output)
        assert int(row["Failure Count"]) == 0, (name, output)
    assert int(stats[("WS", "connect")]["Request Count"]) == USERS, output  # from every worker
    assert int(stats[("", "Aggregated")]["Failure Count"]) == 0, output
    with open(f"{csv_prefix}_pushes.csv", newline="") as f:
        pushes = {row["Type"]: int(row["Count"]) for row in csv.DictReader(f)}
    assert "said" not in pushes and "session" not in pushes, pushes
    assert all(count > 0 for count in pushes.values()), pushes
    # Each `say` is heard by the whole room (ROOM_SIZE members, the sayer too, but for the
    # few who are between a leave and their next join): about 4.7 pushes per say from the
    # workers together, about half that if one worker's counts were missing or clobbered.
    says = int(stats[("WS", "say")]["Request Count"])
    assert pushes["message"] >= 3 * says, (pushes, says)
    assert "pushes received: message" in output, output


def test_processes(serve: Callable[..., ServerThread], locusts: Locusts, tmp_path: Path) -> None:
    server = serve(fresh_chat_app())  # without its limits: the users share one address
    port = free_port()
    master = locusts.start(
        "master",
        *chat_run(server.url, tmp_path / "chat"),
        "--processes", "2",
        # the master of --processes binds *:5557 unless told; its children connect to --master-port
        "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port), "--master-port", str(port),
    )  # fmt: skip

    by_worker = connections_by_worker(server, lambda: locusts.children(master))
    assert len(by_worker) == 2 and all(by_worker.values()), by_worker
    assert not ports_to(master.pid, server.port)  # the master runs no users
    output = locusts.finish(master)
    check_chat_results(tmp_path / "chat", output)


def test_master_and_workers(serve: Callable[..., ServerThread], locusts: Locusts, tmp_path: Path) -> None:
    server = serve(fresh_chat_app())
    port = free_port()
    master = locusts.start(
        "master",
        *chat_run(server.url, tmp_path / "chat"),
        "--master", "--expect-workers", "2", "--expect-workers-max-wait", "30",
        "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
    )  # fmt: skip
    # Each worker gets a --csv prefix of its own: it still writes no pushes file.
    workers = []
    for i in range(2):
        worker = locusts.start(
            f"worker{i}", "--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
            "--csv", str(tmp_path / f"worker{i}"),
        )  # fmt: skip
        workers.append(worker)
    by_worker = connections_by_worker(server, lambda: [worker.pid for worker in workers])
    assert all(by_worker.values()), by_worker  # both worker processes connected users
    assert not ports_to(master.pid, server.port)
    output = locusts.finish(master)
    worker_outputs = [locusts.finish(worker, timeout=30) for worker in workers]
    check_chat_results(tmp_path / "chat", output)
    for i, worker_output in enumerate(worker_outputs):
        assert not (tmp_path / f"worker{i}_pushes.csv").exists()
        assert "pushes received" not in worker_output, worker_output
