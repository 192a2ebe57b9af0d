"""Restarts of a single-process server with the code on disk: SIGHUP re-executes it in place
(a drain with 1012, the listening socket handed over: no connection refused), and `--reload`
restarts it on each change to a `.py` file. Each in a subprocess, on an app file in a
temporary directory (tests/support/restarts.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from ..support.raw import free_port
from ..support.restarts import REPO_ROOT, ConnectLoop, ServerProcess, ask, write_app


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def _start(servers: list[ServerProcess], tmp_path: Path, *options: str) -> ServerProcess:
    """The server started; with --reload, its watcher too (the two lines in either order)."""
    write_app(tmp_path, "v1")
    server = ServerProcess(tmp_path, free_port(), (*options, "--no-patch"))
    servers.append(server)
    expected = {"serving restart_app:app on ws://"}
    if "--reload" in options:
        expected.add("--reload: watching")
    while expected:
        match = server.wait_for("|".join(expected))
        expected.discard(match[0])
    return server


def _reply_within(port: int, reply: str, seconds: float) -> tuple[str, int]:
    """Ask until the reply is `reply`, within `seconds` (refused or closed meanwhile: again)."""
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = ask(port, timeout=max(0.1, deadline - time.monotonic()))
        except (OSError, ConnectionClosed) as exc:
            last = exc
        else:
            if got[0] == reply:
                return got
            last = got
        time.sleep(0.02)  # a poll's pace, not a synchronisation: the deadline decides
    raise AssertionError(f"no {reply!r} within {seconds} s; last: {last!r}")


@pytest.mark.timeout(60)
def test_sighup_reexecutes_a_single_process_with_the_new_code(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _start(servers, tmp_path)
    reply, pid = ask(server.port)
    assert (reply, pid) == ("v1", server.proc.pid)
    loop = ConnectLoop(server.port)
    with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
        loop.start()
        try:
            write_app(tmp_path, "v2")
            server.proc.send_signal(signal.SIGHUP)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            server.wait_for(r"executing the new code")
            server.wait_for(r"serving restart_app:app on ws://")
            assert ask(server.port) == ("v2", server.proc.pid)  # the same process, the new code
        finally:
            loop.stop()
    assert loop.refused == 0 and not loop.failures, (loop.refused, loop.failures[:5])
    assert loop.replies and loop.replies[-1] == ("v2", server.proc.pid)
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0


@pytest.mark.timeout(60)
def test_sighup_with_a_broken_new_code_serves_on_with_the_old(
    servers: list[ServerProcess], tmp_path: Path
) -> None:
    server = _start(servers, tmp_path)
    write_app(tmp_path, "v2", broken=True)
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "does not start; serving on with the old one" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert "SyntaxError" in server.log()
    assert ask(server.port) == ("v1", server.proc.pid)


@pytest.mark.timeout(60)
def test_reload_serves_an_edited_app_within_3_s(servers: list[ServerProcess], tmp_path: Path) -> None:
    server = _start(servers, tmp_path, "--reload")
    assert ask(server.port)[0] == "v1"
    write_app(tmp_path, "v2")
    _reply_within(server.port, "v2", 3.0)
    server.wait_for(r"--reload: restart_app\.py changed: restarting")
    write_app(tmp_path, "v3", broken=True)  # a syntax error: the old code serves on
    server.wait_for(r"--reload: restart_app\.py changed: restarting")
    deadline = time.monotonic() + 20
    while "SyntaxError" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert ask(server.port)[0] == "v2"
    write_app(tmp_path, "v4")
    _reply_within(server.port, "v4", 3.0)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0


def _run(*options: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"{prelude}\nimport sys\nfrom websock_actors.cli import main\nsys.exit(main(sys.argv[1:]))"
    port = str(free_port())
    command = [sys.executable, "-c", code, "run", "tests.support.pid_app:app", "--port", port, *options]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)


def test_reload_with_workers_is_refused_in_one_line() -> None:
    done = _run("--reload", "--workers", "2")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: --reload serves from one process")


def test_reload_without_watchfiles_names_the_extra() -> None:
    done = _run("--reload", prelude="import sys\nsys.modules['watchfiles'] = None")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line == "error: --reload needs watchfiles: pip install 'websock-actors[reload]'"
