"""A prefork master: `websock-actors run MODULE:ATTR --workers N`, one port on every core.

N processes serve one port, a gevent hub each: each worker accepts on its slot's listener
(scale/listeners.py) and imports the app itself after the fork, so that a replacement runs the
code on disk; the first starts alone, so that an app that cannot start is reported once. The
master serves nothing: it restarts a worker that died (backing off while they keep dying) or
whose loop stopped running (scale/worker_liveness.py), forwards SIGTERM and SIGINT (1001 to
each client) and waits for the workers; SIGHUP replaces them one at a time (scale/rolling.py).

The master forks before any hub, greenlet or connection exists, and stays a plain process:
a hub in it would be copied into every worker, half-alive. The command line may have
monkey-patched the standard library: every blocking call here is the original one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import gevent
from gevent import monkey

from ..server.systemd_notify import Notifier
from .cpu_quota import available_cpus
from .listeners import prepare_listener
from .rolling import Roll
from .worker_liveness import DEFAULT_WORKER_TIMEOUT, Heartbeat, LivenessBoard

__all__ = ["DRAIN_SIGNAL", "RESTART_SIGNAL", "SHUTDOWN_SIGNALS", "Worker", "parse_workers"]
__all__ += ["prepare_listener", "run_workers", "say"]

log = logging.getLogger("websock_actors")

SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_SIGNAL = signal.SIGHUP  # to the master: replace every worker, one at a time
DRAIN_SIGNAL = signal.SIGUSR2  # to one worker: close every client with 1012 and exit (replaced)

RESTART_DELAY = 0.1  # seconds before restarting a worker that died; doubled while they die fast
MAX_RESTART_DELAY = 10.0
STABLE_AFTER = 5.0  # a worker that lived this long resets the backoff
KILL_GRACE = 15.0  # beyond the shutdown timeout: the workers' actors, then SIGKILL

# The originals, whatever the command line patched.
_fork: Callable[[], int] = monkey.get_original("os", "fork")
_waitpid: Callable[[int, int], tuple[int, int]] = monkey.get_original("os", "waitpid")
_select: Any = monkey.get_original("select", "select")
_signal: Any = monkey.get_original("signal", "signal")
_set_wakeup_fd: Any = monkey.get_original("signal", "set_wakeup_fd")


def say(line: str, stream: TextIO | None = None) -> None:
    """Print one line in one write: the workers share the master's stdout, and with
    PYTHONUNBUFFERED `print` writes the text and its newline apart, so lines would mix."""
    stream = sys.stdout if stream is None else stream
    stream.write(line + "\n")
    stream.flush()


def parse_workers(value: str) -> int:
    """`--workers`: a count of at least 1, or "auto" (one per CPU this process may use)."""
    if value == "auto":
        return available_cpus()  # the affinity mask and the cgroup's CPU quota (cpu_quota.py)
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"expected a number of workers or 'auto', not {value!r}") from None
    if count < 1:
        raise ValueError(f"needs at least 1 worker, not {count}")
    return count


@dataclass
class Worker:
    """What a worker process knows of itself, handed to its serving function after the fork."""

    index: int  # from 1; a restarted worker keeps its slot's index
    listener: socket.socket | None  # its slot's listener (or the one shared); None: bind one
    master: int  # the master's pid
    _ready_fd: int = field(repr=False)
    early_signals: list[int] = field(default_factory=list)
    _heartbeat: Heartbeat | None = field(default=None, repr=False)

    @property
    def orphaned(self) -> bool:
        """The master is gone (killed with SIGKILL, say): nobody would stop or restart us."""
        return os.getppid() != self.master

    @property
    def stop_requested(self) -> bool:
        """A shutdown signal came before the serving function installed its own handlers."""
        return bool(self.early_signals)

    @property
    def drain_requested(self) -> bool:
        """The early signal asked for a drain (1012: this worker is being replaced)."""
        return DRAIN_SIGNAL in self.early_signals

    def ready(self) -> None:
        """Tell the master this worker is serving (a worker that dies before it, in the first
        round, stops the whole server: its configuration cannot work). From now on its hub
        also tells the master it runs, when the master watches for stuck workers."""
        if self._heartbeat is not None:
            self._heartbeat.start()
        try:
            os.write(self._ready_fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass


@dataclass
class _Child:
    index: int
    pid: int
    started: float
    first: bool  # of the first round: dying before ready stops everything
    generation: int = 0  # rolling restarts (SIGHUP) begun before it was forked
    ready: bool = False
    silenced: bool = False  # killed for its silence, not reaped yet
    retiring: float | None = None  # replaced: draining, to be killed after this time


def run_workers(
    count: int,
    serve: Callable[[Worker], int],
    *,
    listener: socket.socket | None = None,
    listeners: list[socket.socket] | None = None,
    shutdown_timeout: float = 10.0,
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
) -> int:
    """Fork `count` workers running `serve(worker)` (its return value is the worker's exit
    code), keep them running until a shutdown signal, then stop them; the exit code.

    `listeners`: one per worker slot, kept open by the master (scale/listeners.py); else
    `listener`, shared; else each worker binds its own. A worker whose event loop has not
    run for `worker_timeout` seconds once it served is killed and replaced (0: never)."""
    if not hasattr(os, "fork"):
        raise SystemExit("error: --workers needs os.fork (a POSIX system)")
    if worker_timeout < 0:
        raise ValueError(f"worker_timeout must be 0 (off) or more, not {worker_timeout}")
    liveness = LivenessBoard(count, worker_timeout) if worker_timeout > 0 else None
    if listeners is not None and len(listeners) != count:
        raise ValueError(f"{len(listeners)} listeners for {count} workers")
    return _Master(count, serve, listener, shutdown_timeout, liveness, listeners).run()


class _Master:
    def __init__(
        self,
        count: int,
        serve: Callable[[Worker], int],
        listener: socket.socket | None,
        shutdown_timeout: float,
        liveness: LivenessBoard | None = None,
        listeners: list[socket.socket] | None = None,
    ) -> None:
        self.pid = os.getpid()
        self.count = count
        self.serve = serve
        self.listener = listener
        self.listeners = listeners
        self.roll = Roll(self)
        self.kill_after = shutdown_timeout + KILL_GRACE
        self.liveness = liveness
        self.children: dict[int, _Child] = {}  # by pid
        self.restarts: dict[int, float] = {}  # slot index -> when to restart it
        self.delay = RESTART_DELAY
        self.stopping: int | None = None  # the shutdown signal
        self.deadline = 0.0
        self.failed = False  # a worker exited non-zero in the shutdown, or was killed
        self.waiting_first: list[int] = []  # slots to fork once the first worker serves
        self.boot_failure = False  # a worker of the first round died before it served
        self._saved: dict[int, Any] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        self._ready_buffer = b""
        self.notifier = Notifier.from_environ()  # systemd's Type=notify: READY=1, STOPPING=1
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.set_blocking(fd, False)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> int:
        watched: tuple[int, ...] = (*SHUTDOWN_SIGNALS, RESTART_SIGNAL, signal.SIGCHLD)
        for signum in watched:
            self._saved[signum] = _signal(signum, _record)
        old_wakeup = _set_wakeup_fd(self._wake_w)
        try:
            say(f"websock-actors: master (pid {self.pid}) starting {self.count} workers")
            self._spawn(1, first=True)  # alone: an app that cannot start is reported once
            self.waiting_first = list(range(2, self.count + 1))
            while self.children or (self.stopping is None and self.restarts):
                self._wait()
                self._read_ready()
                self._reap()
                if self.stopping is None:
                    self._first_round()
                    self._restart_due()
                    self._kill_the_silent()
                    self.roll.step(time.monotonic())
                elif time.monotonic() > self.deadline:
                    self._kill_the_rest()
        finally:
            _set_wakeup_fd(old_wakeup)
            for signum, handler in self._saved.items():
                _signal(signum, handler)
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                os.close(fd)
            if self.liveness is not None:
                self.liveness.close()
        if self.boot_failure:
            return 1
        say("websock-actors: stopped")
        return 1 if self.failed else 0

    def _wait(self) -> None:
        """Sleep until a signal, a worker's ready line, or the next restart or deadline."""
        timeout = 1.0  # a safety net: SIGCHLD and the wakeup fd are what wake us
        if self.liveness is not None:  # and the workers' liveness, read on this tick
            timeout = min(timeout, self.liveness.interval)
        now = time.monotonic()
        if self.stopping is not None:
            timeout = min(timeout, max(0.0, self.deadline - now))
        elif self.roll.active:  # its deadlines, and the draining workers'
            timeout = min(timeout, 0.1)
        elif self.restarts:
            timeout = min(timeout, max(0.0, min(self.restarts.values()) - now))
        readable, _, _ = _select([self._wake_r, self._ready_r], [], [], timeout)
        if self._wake_r in readable:
            try:
                received = os.read(self._wake_r, 4096)
            except BlockingIOError:
                received = b""
            for signum in received:
                if signum in SHUTDOWN_SIGNALS:
                    self._shutdown(signum)
                elif signum == RESTART_SIGNAL and self.stopping is None:
                    self.roll.begin()

    def _read_ready(self) -> None:
        """The workers' "pid" lines: each writes one, in one write, once it serves."""
        while True:
            try:
                data = os.read(self._ready_r, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            self._ready_buffer += data
        *lines, self._ready_buffer = self._ready_buffer.split(b"\n")
        for line in lines:
            child = self.children.get(int(line))
            if child is not None:
                child.ready = True
        serving = [child for child in self.children.values() if child.ready]
        if self.stopping is None and len(serving) == self.count and not self.roll.active:
            self.notifier.ready()  # every worker listens (sent once)

    def _reap(self) -> None:
        for pid, child in list(self.children.items()):
            try:
                done, status = _waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler of the app's)
                done, status = pid, 0
            if done == 0:
                continue
            del self.children[pid]
            self._exited(child, os.waitstatus_to_exitcode(status))

    def _exited(self, child: _Child, code: int) -> None:
        what = f"worker {child.index} (pid {child.pid}) {_exit_reason(code)}"
        if self.stopping is not None:
            if code != 0 and not self.boot_failure:  # a boot failure was reported already
                self.failed = True
                log.warning("%s during the shutdown", what)
            return
        self._read_ready()  # it may have said it was ready just before dying
        if self.roll.exited(child, what, code):
            return  # a drained worker, or its replacement that could not start
        if any(other.index == child.index and other.retiring is None for other in self.children.values()):
            log.warning("%s; its replacement serves its slot", what)
            return
        if child.first and not child.ready:
            log.error("%s before it served: stopping", what)
            self.boot_failure = True
            self._shutdown(signal.SIGTERM)
            return
        now = time.monotonic()
        if now - child.started >= STABLE_AFTER:
            self.delay = RESTART_DELAY
        log.warning("%s; restarting it in %.1f s", what, self.delay)
        self.restarts[child.index] = now + self.delay
        self.delay = min(self.delay * 2, MAX_RESTART_DELAY)

    def _first_round(self) -> None:
        """The other workers of the first round, once the first one serves."""
        if self.waiting_first and any(child.ready for child in self.children.values()):
            for index in self.waiting_first:
                self._spawn(index, first=True)
            self.waiting_first = []

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, when in sorted(self.restarts.items()):
            if when <= now:
                del self.restarts[index]
                self._spawn(index, first=False)

    def _kill_the_silent(self) -> None:
        """SIGKILL each serving worker whose hub has been silent for the timeout; it is then
        reaped and restarted as any dead worker. No SIGTERM first: a stuck hub cannot run its
        handler, and one that came back would start a graceful stop that takes longer still.
        Its clients see their connections drop, and reconnect (or resume) on another worker."""
        if self.liveness is None:
            return
        now = time.monotonic()
        self.liveness.tick(now)
        for child in self.children.values():
            if not child.ready or child.silenced or child.retiring is not None:
                continue
            silent = self.liveness.silent_for(child.index, now)
            if silent < self.liveness.timeout:
                continue
            child.silenced = True
            log.warning(
                "worker %d (pid %d) silent for %.1f s (--worker-timeout %g): its event loop is"
                " stuck (a handler that never yields?); killing it",
                child.index, child.pid, silent, self.liveness.timeout,
            )
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _shutdown(self, signum: int) -> None:
        """Forward the signal to every worker (again, on a second one)."""
        if self.stopping is None:
            self.notifier.stopping()
            self.stopping = signum
            self.deadline = time.monotonic() + self.kill_after
            self.restarts.clear()
        for pid in self.children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _kill_the_rest(self) -> None:
        for child in self.children.values():
            what = f"worker {child.index} (pid {child.pid})"
            log.error("%s still running %.0f s after the shutdown began: killed", what, self.kill_after)
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.failed = True
        self.deadline = time.monotonic() + 5.0  # then reap them

    # -- forking -------------------------------------------------------------------------

    def _spawn(self, index: int, *, first: bool, rolling: bool = False) -> int | None:
        """Fork a worker for slot `index`: its pid, or None when the fork failed."""
        sys.stdout.flush()  # or the child would print the master's buffered output again
        sys.stderr.flush()
        if self.liveness is not None:
            self.liveness.stamp(index)  # not the stamps of the process it replaces
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, tuple(self._saved))  # until the child is set up
        try:
            pid = _fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            log.error("cannot fork worker %d: %s", index, exc)
            if not rolling:  # a rolling restart gives up instead (the old one serves)
                self.restarts[index] = time.monotonic() + self.delay
                self.delay = min(self.delay * 2, MAX_RESTART_DELAY)
            return None
        if pid == 0:
            self._child(index, blocked)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.children[pid] = _Child(index, pid, time.monotonic(), first, self.roll.generation)
        return pid

    def _child(self, index: int, blocked: Any) -> None:
        code = 1
        try:
            _set_wakeup_fd(-1)
            for fd in (self._wake_r, self._wake_w, self._ready_r):
                os.close(fd)
            heartbeat = None if self.liveness is None else Heartbeat(self.liveness, index)
            listener = self.listener
            if self.listeners is not None:  # its slot's; the master keeps the others open
                listener = self.listeners[index - 1]
                for other in self.listeners:
                    if other is not listener:
                        other.close()
            worker = Worker(index, listener, self.pid, self._ready_w, _heartbeat=heartbeat)
            for signum, handler in self._saved.items():
                _signal(signum, handler)

            def early(signum: int, frame: Any) -> None:
                worker.early_signals.append(signum)

            for signum in (*SHUTDOWN_SIGNALS, DRAIN_SIGNAL):  # until the worker's hub installs its own
                _signal(signum, early)
            # A closed terminal's SIGHUP reaches the whole group: the master's restart is the answer.
            _signal(RESTART_SIGNAL, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            gevent.reinit()  # a no-op unless importing the app started a hub
            code = self.serve(worker)
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


def _record(signum: int, frame: Any) -> None:
    """The master's handler: the signal's number also goes to the wakeup fd, which is read."""


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    say(str(exc.code), sys.stderr)
    return 1


def _exit_reason(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was killed by {name}"
