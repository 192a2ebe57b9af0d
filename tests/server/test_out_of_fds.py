"""Out of file descriptors (issue 24, item 7): a server under a low open-files limit warns at
start, logs the failed accepts one line a second at most with the remedy (no traceback),
pauses accepting, and serves again once descriptors are free.

The server runs in a subprocess whose RLIMIT_NOFILE is set to 64 before it starts; the test
holds silent sockets open until the server's accepts fail, then lets them go.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.sync.client import connect

from ..support.raw import free_port, wait_listening
from ..support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64
PRELUDE = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, {LIMIT}))
from websock_actors.cli import main
sys.exit(main(sys.argv[1:]))
"""
FAILED_ACCEPT = "cannot accept connections"


@pytest.mark.timeout(60)
def test_out_of_file_descriptors_is_one_line_a_second_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "stderr.log"
    command = [sys.executable, "-c", PRELUDE, "run", "tests.support.pid_app:app", "--port", str(port)]
    with open(log_path, "w+") as log, ExitStack() as stack:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
        try:
            wait_listening(port, proc)

            def logged() -> str:
                return log_path.read_text()

            wait_until(lambda: "ulimit -n" in logged(), 10, "the start-up warning")
            assert "max_connections 10000 is above what the open-files limit allows" in logged()
            started = time.monotonic()
            for _ in range(2 * LIMIT):  # more than the server has descriptors for
                stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            wait_until(lambda: FAILED_ACCEPT in logged(), 10, "the failed accepts to be logged")
            stack.close()  # the server's actors see EOF and free their descriptors
            deadline = time.monotonic() + 10
            while True:  # served again: a full exchange with a fresh client
                try:
                    with connect(f"ws://127.0.0.1:{port}/", open_timeout=2, compression=None) as ws:
                        ws.send("pid?")
                        assert int(ws.recv(timeout=2)) > 0
                    break
                except Exception:  # refused or timed out while the descriptors are still taken
                    if time.monotonic() > deadline:
                        raise
            elapsed = time.monotonic() - started
            text = logged()
            assert "Traceback" not in text and "OSError" not in text, text
            lines = [line for line in text.splitlines() if FAILED_ACCEPT in line]
            assert 1 <= len(lines) <= elapsed + 1, (len(lines), elapsed, text)
            assert "raise the open-files limit (ulimit -n, now 64) or lower --max-connections" in lines[0]
        finally:
            proc.terminate()
            proc.wait(20)


def test_the_soft_limit_is_raised_when_the_hard_one_allows() -> None:
    # In a subprocess: the limit is the process's own.
    code = (
        "import resource\n"
        "from websock_actors.server.acceptor import FD_HEADROOM, check_open_files\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "check_open_files(1000)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FD_HEADROOM)\n"
    )
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"the hard open-files limit ({hard}) is too low to raise the soft one to")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1000"
