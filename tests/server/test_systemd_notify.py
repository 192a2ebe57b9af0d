"""sd_notify (server/systemd_notify.py): what a `Type=notify` unit's systemd receives.

The test plays systemd: it binds a unix datagram socket (a path, or an abstract "@" name),
passes it as $NOTIFY_SOCKET and reads the datagrams with the sender's credentials
(SO_PASSCRED), as systemd does to enforce `NotifyAccess=main`. The server is a real
`websock-actors run` subprocess, alone and with `--workers 2`.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from websock_actors.server.systemd_notify import Notifier

from ..support.raw import RawClient, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
UCRED = struct.Struct("3i")  # pid, uid, gid


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)

    def receive(self, timeout: float = 20.0) -> tuple[str, int]:
        """The next message and the pid of its sender."""
        self.sock.settimeout(timeout)
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = UCRED.unpack(payload[: UCRED.size])[0]
        return data.decode(), pid

    def nothing_more(self) -> bool:
        self.sock.settimeout(0)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[FakeSystemd, str]]:
    path = str(tmp_path / "notify.sock")
    fake = FakeSystemd(path)
    yield fake, path
    fake.close()


def test_ready_reloading_stopping_reach_a_path_socket(systemd: tuple[FakeSystemd, str]) -> None:
    fake, path = systemd
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert fake.receive() == ("READY=1", os.getpid())
    assert not notifier.ready()  # once per start
    assert notifier.reloading()
    message, _ = fake.receive()
    fields = dict(line.split("=", 1) for line in message.split("\n"))
    assert fields["RELOADING"] == "1"
    sent_at = int(fields["MONOTONIC_USEC"])  # CLOCK_MONOTONIC, in µs
    assert abs(sent_at - time.monotonic_ns() // 1000) < 5_000_000
    assert notifier.ready()  # the reload is over
    assert fake.receive()[0] == "READY=1"
    assert notifier.status("draining\n3 connections")
    assert fake.receive()[0] == "STATUS=draining 3 connections"
    assert notifier.stopping()
    assert fake.receive()[0] == "STOPPING=1"
    assert fake.nothing_more()


def test_an_abstract_socket_is_reached_by_its_at_name() -> None:
    name = f"websock-actors-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    try:
        assert Notifier(f"@{name}").stopping()
        assert fake.receive() == ("STOPPING=1", os.getpid())
    finally:
        fake.close()


def test_without_a_socket_nothing_is_sent_and_nothing_raises(tmp_path: Path) -> None:
    assert not Notifier.from_environ({}).enabled
    assert not Notifier.from_environ({}).ready()
    gone = Notifier(str(tmp_path / "nobody-listens.sock"))  # systemd gone: ENOENT
    assert gone.enabled and not gone.ready() and not gone.stopping()
    assert not Notifier("relative/path").enabled  # neither a path nor @name: ignored


def _listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:port (each worker has its own, with SO_REUSEPORT)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if row[1] == wanted and row[3] == "0A")  # 0A: LISTEN


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [1, 2])
def test_run_says_ready_once_listening_and_stopping_on_sigterm(
    systemd: tuple[FakeSystemd, str], tmp_path: Path, workers: int
) -> None:
    fake, path = systemd
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", "tests.support.pid_app:app"]
    command += ["--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    env = {**os.environ, "NOTIFY_SOCKET": path, "PYTHONPATH": str(REPO_ROOT)}
    with open(tmp_path / "out.log", "w+") as out:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            message, sender = fake.receive()
            assert message == "READY=1", message
            assert sender == proc.pid  # the main process: systemd's NotifyAccess=main
            assert _listeners(port) == workers  # every worker listens by now
            with RawClient(port) as client:  # and serves
                client.send_text("who")
                client.recv_frame()
            proc.send_signal(signal.SIGTERM)
            assert fake.receive() == ("STOPPING=1", proc.pid)
            assert proc.wait(timeout=30) == 0
            assert fake.nothing_more()  # no worker spoke to systemd
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.seek(0)
            print(out.read())
