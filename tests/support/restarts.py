"""For the restart tests (tests/scale/test_rolling.py, tests/cli/test_restart.py): an app file
in a temporary directory whose reply names its version and the serving PID, the server run on
it in a subprocess with its output read line by line, and a client loop that connects over and
over meanwhile, counting refused connections."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

__all__ = ["ConnectLoop", "ServerProcess", "ask", "write_app"]

REPO_ROOT = Path(__file__).resolve().parents[2]

APP = '''import os
import time
from websock_actors import WebSocketApp

app = WebSocketApp()


@app.on_message
def reply(conn, message):
    if message.startswith("spin "):  # the CPU held that long: the process accepts nothing
        end = time.monotonic() + float(message.split()[1])
        while time.monotonic() < end:
            pass
    conn.send("{reply} " + str(os.getpid()))
'''


def write_app(directory: Path, reply: str, *, broken: bool = False) -> Path:
    """`directory/restart_app.py` answering every message with "REPLY PID" ("spin SECONDS"
    first holds the CPU that long), with a syntax error when `broken`; written whole, then
    renamed over the old one, as an editor saves."""
    path = directory / "restart_app.py"
    text = APP.format(reply=reply) + ("\ndef broken(:\n" if broken else "")
    temporary = directory / ".restart_app.py.tmp"
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def ask(port: int, timeout: float = 5.0) -> tuple[str, int]:
    """One connection, one message: the (reply, pid) that answered."""
    with connect(f"ws://127.0.0.1:{port}/", open_timeout=timeout, compression=None) as ws:
        ws.send("which?")
        reply, pid = str(ws.recv(timeout=timeout)).split()
    return reply, int(pid)


@dataclass
class ServerProcess:
    """`websock-actors run restart_app:app --port PORT ...` in `directory`."""

    directory: Path
    port: int
    options: tuple[str, ...]
    prelude: str = ""
    env: dict[str, str] = field(default_factory=dict)
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        main = "import sys\nfrom websock_actors.cli import main\nsys.exit(main(sys.argv[1:]))"
        code = f"{self.prelude}\n{main}"
        port = str(self.port)
        command = [sys.executable, "-c", code, "run", "restart_app:app", "--port", port, *self.options]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **self.env}
        self.stderr = open(self.directory / "stderr.log", "w+")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            command, cwd=self.directory, env=env, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        stream = self.proc.stdout
        assert stream is not None

        def pump() -> None:
            for line in stream:
                self.lines.put(line.rstrip("\n"))
            self.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Read output lines until one matches `pattern` (searched)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                failure = f"no line matching {pattern!r} in {timeout} s: {self.seen}\n{self.log()}"
                raise AssertionError(failure) from None
            if line is None:
                raise AssertionError(f"the server ended before {pattern!r}: {self.seen}\n{self.log()}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def log(self) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()


class ConnectLoop(threading.Thread):
    """Connects, asks and closes, over and over until stopped: the replies, and the failures
    by kind. A connection closed by a drain (1012) is a normal event, not a failure."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.halt = threading.Event()
        self.replies: list[tuple[str, int]] = []
        self.refused = 0
        self.drained = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.replies.append(ask(self.port))
            except ConnectionRefusedError:
                self.refused += 1
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 1012:
                    self.drained += 1
                else:
                    self.failures.append(repr(exc))
            except Exception as exc:  # a reset, a timeout: what a client would see as failing
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self.halt.set()
        self.join(15)
