"""Child processes of a benchmark: started pinned to a CPU, read line by line, stopped by PID
with bounded waits (SIGTERM, then SIGKILL), reaped with their resource usage."""

from __future__ import annotations

import ctypes
import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "ChildProcess", "Failed", "ServerProcess", "die_with_parent", "measured", "pinned", "raise_fd_limit",
    "reap", "stop_process", "try_reap"
]

ROOT = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1


class Failed(Exception):
    """A run that did not complete: the scenario failed (`result`: its figures, when it ran)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


def measured(
    what: str,
    run: Callable[[], dict[str, Any]],
    summary: Callable[[dict[str, Any]], str],
    unmeasured: dict[str, Any],
) -> tuple[dict[str, Any], bool]:
    """One run of a benchmark's scenario: its figures and whether it failed (then a
    `Failed`'s figures, or `unmeasured`, with the error). A line on stderr either way: `what`,
    then `summary(result)` or the failure, and the run's seconds."""
    begun = time.monotonic()
    try:
        result = run()
    except Failed as exc:
        result = exc.result if exc.result is not None else dict(unmeasured)
        result["error"] = str(exc)
        print(f"{what}: FAILED: {exc}", file=sys.stderr, flush=True)
        return result, True
    print(f"{what}: {summary(result)} ({time.monotonic() - begun:.1f} s)", file=sys.stderr, flush=True)
    return result, False


def pinned(cpus: int | str | None, command: list[str]) -> list[str]:
    """`command` under taskset on `cpus` (None: anywhere); taskset execs: the PID is the command's."""
    return command if cpus is None else ["taskset", "-c", str(cpus), *command]


def raise_fd_limit(wanted: int | None = None) -> int:
    """Raise the soft limit of open files to `wanted` (None: the hard limit); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else min(hard, max(soft, wanted))
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def die_with_parent() -> None:
    """In a child before exec: SIGKILL when the driver dies, so a killed run leaves no process."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def stop_process(
    process: Any, timeout: float, sig: int = signal.SIGTERM, kill_timeout: float = 5.0
) -> int | None:
    """Send `sig` to `process` (a Popen, subprocess's or gevent's) after SIGCONT (a stopped
    process cannot exit) and wait up to `timeout` s; then SIGKILL. Its exit status, None when
    it had to be killed."""
    if process.poll() is not None:
        return int(process.returncode)
    process.send_signal(signal.SIGCONT)
    process.send_signal(sig)
    try:
        return int(process.wait(timeout=timeout))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=kill_timeout)
        return None


def try_reap(process: subprocess.Popen[bytes]) -> tuple[int, Any] | None:
    """(exit status, resource usage) of `process` (ours) once it has ended, else None."""
    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
    if not pid:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage


def reap(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
    """Wait for `process` up to `timeout` (then kill it); its exit status and resource usage."""
    deadline = time.monotonic() + timeout
    while (done := try_reap(process)) is None:
        if time.monotonic() > deadline:
            process.kill()
        time.sleep(0.1)
    return done


class ChildProcess:
    """A process of ours (cwd: the repository root) whose output lines threads read into queues."""

    def __init__(
        self, name: str, command: list[str], *, stderr: IO[bytes] | None = None, stdin: bool = False
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.PIPE,
            text=True,
        )
        self.lines: dict[str, queue.Queue[str | None]] = {"stdout": queue.Queue()}
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._readers = [self._reader("stdout", self.proc.stdout)]
        if stderr is None:
            self.lines["stderr"] = queue.Queue()
            self._readers.append(self._reader("stderr", self.proc.stderr))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _reader(self, stream: str, pipe: Any) -> threading.Thread:
        def read() -> None:
            for line in pipe:
                self.lines[stream].put(line.rstrip("\n"))
            self.lines[stream].put(None)

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def expect(self, stream: str, prefix: str, timeout: float) -> str:
        """The next line of `stream` starting with `prefix` (other lines are kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines[stream].get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise Failed(f"{self.name}: no {prefix!r} within {timeout:.0f} s") from None
            if line is None:
                self.lines[stream].put(None)
                raise Failed(f"{self.name} ended (status {self.proc.wait(5)}) before {prefix!r}")
            self.seen[stream].append(line)
            if line.startswith(prefix):
                return line

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`: the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for thread in self._readers:
            thread.join(2)
        return self.proc.returncode


class ServerProcess(ChildProcess):
    """A server of benchmarks/apps (or hostile_app.py) speaking the `serving` line protocol:
    `PORT <n>` once it listens, `STATS <json>` on SIGUSR1. Its stderr goes to `log`; it is
    appended to `started` (a watchdog's list of processes to kill) before it is waited for."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log: Path,
        start_timeout: float = 30.0,
        started: list[Any] | None = None,
    ) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        super().__init__(name, command, stderr=self._log)
        if started is not None:
            started.append(self)
        self.port = int(self.expect("stdout", "PORT ", start_timeout).split()[1])
        self.url = f"ws://127.0.0.1:{self.port}/"

    def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGUSR1)
        return self.read_stats(timeout)

    def read_stats(self, timeout: float) -> dict[str, Any]:
        """The next STATS line."""
        stats: dict[str, Any] = json.loads(self.expect("stdout", "STATS ", timeout)[6:])
        return stats

    def stop(self, timeout: float = 10.0) -> int:
        status = super().stop(timeout)
        self._log.close()
        return status
