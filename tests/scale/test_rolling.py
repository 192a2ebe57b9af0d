"""SIGHUP to the master of `--workers 2`: a rolling restart. Every worker is replaced by one
running the code on disk, while a client loop connects meanwhile and is never refused; a new
code that does not import is reported, and the old workers serve on."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.raw import free_port
from ..support.restarts import ConnectLoop, ServerProcess, ask, write_app

WORKER = r"worker (\d+) \(pid (\d+)\) serving"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    write_app(tmp_path, "v1")
    process = ServerProcess(tmp_path, free_port(), ("--workers", "2", "--no-patch"))
    yield process
    process.stop()


def _workers(server: ServerProcess, count: int = 2) -> dict[int, int]:
    """The next `count` worker lines: {index: pid}."""
    found: dict[int, int] = {}
    while len(found) < count:
        match = server.wait_for(WORKER)
        found[int(match[1])] = int(match[2])
    return found


def _restarted(server: ServerProcess) -> dict[int, int]:
    """Read until the rolling restart is done and both new workers said they serve (in
    either order: a worker tells the master it serves before it prints so): {index: pid}."""
    found: dict[int, int] = {}
    done = False
    while not done or len(found) < 2:
        match = server.wait_for(rf"{WORKER}|restart done: (\d+) workers replaced")
        if match[3] is not None:
            assert match[3] == "2", match[0]
            done = True
        else:
            found[int(match[1])] = int(match[2])
    return found


def _stopped(server: ServerProcess, workers: dict[int, int]) -> None:
    """Until each of `workers` said it stopped (a drained worker accepts until its drain
    begins, a little after the master said the restart was done)."""
    for index, pid in workers.items():
        line = f"worker {index} (pid {pid}) stopped"
        if not any(line in seen for seen in server.seen):
            server.wait_for(re.escape(line))


def _served_by(port: int, pids: set[int], reply: str, tries: int = 400) -> None:
    """Connect until each of `pids` has answered; every answer is `reply` from one of them."""
    answered: set[int] = set()
    for _ in range(tries):
        got, pid = ask(port)
        assert (got, pid in pids) == (reply, True), (got, pid, pids)
        answered.add(pid)
        if answered == pids:
            return
    raise AssertionError(f"only {answered} of {pids} answered in {tries} connections")


@pytest.mark.timeout(90)
def test_sighup_replaces_every_worker_with_the_new_code(server: ServerProcess, tmp_path: Path) -> None:
    old = _workers(server)
    _served_by(server.port, set(old.values()), "v1")
    loop = ConnectLoop(server.port)
    loop.start()
    try:
        write_app(tmp_path, "v2")
        server.proc.send_signal(signal.SIGHUP)
        new = _restarted(server)
        assert not set(new.values()) & set(old.values())
        _stopped(server, old)
        _served_by(server.port, set(new.values()), "v2")  # every worker now: the new code
    finally:
        loop.stop()
    assert loop.refused == 0 and not loop.failures, (loop.refused, loop.failures[:5])
    assert {reply for reply, _ in loop.replies} == {"v1", "v2"}, len(loop.replies)  # it ran across
    print(f"during the restart: {len(loop.replies)} answered, {loop.drained} closed with 1012")
    assert loop.replies[-1][0] == "v2", loop.replies[-5:]
    for pid in old.values():  # drained and gone (reaped by the master)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"old worker {pid} still there"
    assert server.proc.poll() is None
    assert "Traceback" not in server.log()


@pytest.mark.timeout(60)
def test_the_new_worker_takes_over_the_old_ones_socket(server: ServerProcess, tmp_path: Path) -> None:
    """While the replaced worker 1 cannot accept (its CPU held by a handler), connections the
    kernel hands to its listening socket are served by its replacement, with the new code:
    the socket is the same. With a socket of its own, the old worker's would queue them until
    it closes it (and resets them) or accepts them just to drain them."""
    from contextlib import ExitStack

    from websockets.sync.client import connect

    old = _workers(server)
    with ExitStack() as stack:
        for _ in range(200):  # a connection to the first worker replaced: worker 1
            held = stack.enter_context(connect(f"ws://127.0.0.1:{server.port}/", compression=None))
            held.send("which?")
            if int(str(held.recv(timeout=5)).split()[1]) == old[1]:
                break
            held.close()
        held.send("spin 6")  # worker 1 accepts nothing for 6 s (nor drains)
        began = time.monotonic()
        write_app(tmp_path, "v2")
        server.proc.send_signal(signal.SIGHUP)
        new = _restarted(server)
        _stopped(server, {2: old[2]})  # worker 1 cannot even begin its drain
        answers = [ask(server.port) for _ in range(40)]
        assert time.monotonic() - began < 5.5, "too slow to tell: worker 1 spun no longer"
    assert {reply for reply, _ in answers} == {"v2"}, answers
    assert {pid for _, pid in answers} <= set(new.values())


@pytest.mark.timeout(90)
def test_a_new_code_that_does_not_import_leaves_the_old_workers_serving(
    server: ServerProcess, tmp_path: Path
) -> None:
    old = _workers(server)
    write_app(tmp_path, "v2", broken=True)
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "the restart is abandoned" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    log = server.log()
    assert "SyntaxError" in log
    assert log.count("SyntaxError: ") == 1, log  # reported once
    assert server.proc.poll() is None
    _served_by(server.port, set(old.values()), "v1")  # the old workers, both, serve on
    assert all(os.path.exists(f"/proc/{pid}") for pid in old.values())

    write_app(tmp_path, "v3")  # fixed: the next SIGHUP goes through
    server.proc.send_signal(signal.SIGHUP)
    new = _restarted(server)
    _stopped(server, old)
    _served_by(server.port, set(new.values()), "v3")


@pytest.mark.timeout(60)
def test_a_worker_drained_for_a_restart_closes_its_clients_with_1012(server: ServerProcess) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    old = _workers(server)
    with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
        ws.send("which?")
        assert int(str(ws.recv(timeout=5)).split()[1]) in old.values()
        server.proc.send_signal(signal.SIGHUP)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    _restarted(server)


@pytest.mark.timeout(60)
def test_steered_addresses_stay_on_their_slot_across_a_restart(tmp_path: Path) -> None:
    """With a per-IP cap the master steers each address to one slot's socket (steering.py):
    the replacement of that slot's worker accepts on the same socket, so 127.0.0.1 still
    meets one worker, the new one of the slot it was steered to."""
    from websock_actors.scale.steering import worker_of

    write_app(tmp_path, "v1")
    options = ("--workers", "2", "--no-patch", "--max-connections-per-ip", "50")
    server = ServerProcess(tmp_path, free_port(), options)
    try:
        old = _workers(server)
        slot = worker_of("127.0.0.1", 2)
        assert {ask(server.port) for _ in range(10)} == {("v1", old[slot])}
        write_app(tmp_path, "v2")
        server.proc.send_signal(signal.SIGHUP)
        new = _restarted(server)
        _stopped(server, old)
        assert {ask(server.port) for _ in range(10)} == {("v2", new[slot])}
        assert "cannot steer" not in server.log()
    finally:
        server.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [2, 1])
def test_systemd_hears_reloading_then_ready(tmp_path: Path, workers: int) -> None:
    """`Type=notify` with `ExecReload=kill -HUP`: RELOADING=1 when the restart begins, READY=1
    when the new code serves, both from the main pid (the master, or the process re-executed)."""
    from ..server.test_systemd_notify import FakeSystemd

    address = str(tmp_path / "notify.sock")
    fake = FakeSystemd(address)
    write_app(tmp_path, "v1")
    options = ("--workers", str(workers), "--no-patch")
    server = ServerProcess(tmp_path, free_port(), options, env={"NOTIFY_SOCKET": address})
    try:
        main = server.proc.pid
        assert fake.receive() == ("READY=1", main)
        write_app(tmp_path, "v2")
        server.proc.send_signal(signal.SIGHUP)
        message, sender = fake.receive()
        assert (message.split("\n")[0], sender) == ("RELOADING=1", main)
        assert fake.receive() == ("READY=1", main)
        assert ask(server.port)[0] == "v2"
    finally:
        server.stop()
        fake.close()
