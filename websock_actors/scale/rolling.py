"""A rolling restart of `--workers N` (SIGHUP to the master): every worker replaced, one at
a time, by one that imports the application anew, so that the code on disk is served.

For each slot in turn: fork the new worker, wait until it serves (its ready line: it listens),
then drain the old one (DRAIN_SIGNAL: it closes each client with 1012, so that clients with
resumable sessions resume on the other workers) and go on with the next slot without waiting
for the drain to end. The new worker accepts on the old one's listener (scale/listeners.py):
no listener is closed, and no connection queued meanwhile is lost.

A new worker that cannot start (a syntax error in the new code, an exception at import) is
reported and the restart is abandoned: the old workers of that slot and of the slots after it
serve on, and the next SIGHUP tries again. A SIGHUP during a restart starts it over with the
workers not yet of the latest one. A draining worker still running the shutdown timeout
(plus a grace) after it was asked to leave is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .workers import _Child, _Master

__all__ = ["READY_TIMEOUT", "Roll"]

log = logging.getLogger("websock_actors")

READY_TIMEOUT = 60.0  # seconds for a new worker to serve before the restart gives up on it


class Roll:
    """The state of the master's rolling restart, stepped from its loop."""

    def __init__(self, master: _Master) -> None:
        self.master = master
        self.generation = 0  # SIGHUPs received: a worker forked since the last is up to date
        self.active = False
        self.incoming: int | None = None  # the pid of the new worker not serving yet
        self.ready_by = 0.0
        self.replaced = 0
        self.given_up: set[int] = set()  # pids of new workers killed for not starting

    def begin(self) -> None:
        from .workers import say

        self.generation += 1
        self.replaced = 0
        if not self.active:
            say(f"websock-actors: SIGHUP: replacing the {self.master.count} workers one at a time")
            self.master.notifier.reloading()  # systemd: READY=1 again once it is over
        self.active = True

    def step(self, now: float) -> None:
        """Kill the drained workers past their time; then, with no new worker on its way,
        fork the next slot's; with one, drain the old one once it serves."""
        self._kill_the_overdue(now)
        if not self.active:
            return
        children = self.master.children
        if self.incoming is not None:
            new = children.get(self.incoming)
            if new is None:  # reaped: exited() has dealt with it
                self.incoming = None
            elif new.ready:
                self.incoming = None
                self.replaced += 1
                for old in list(children.values()):
                    if old.index == new.index and old is not new and old.retiring is None:
                        self._drain(old, now)
            elif now > self.ready_by:
                log.error(
                    "worker %d (pid %d) of the restart not serving after %.0f s: killed;"
                    " the restart is abandoned, the old workers serve on",
                    new.index, new.pid, READY_TIMEOUT,
                )  # fmt: skip
                self._abandon(new)
                return
            else:
                return
        stale = [c for c in children.values() if c.generation < self.generation and c.retiring is None]
        if not stale:
            from .workers import say

            say(f"websock-actors: restart done: {self.replaced} workers replaced")
            self._end()
            return
        slot = min(stale, key=lambda child: child.index).index
        pid = self.master._spawn(slot, first=False, rolling=True)
        if pid is None:  # the fork failed (logged): the old ones serve on
            self._end()
            return
        self.incoming = pid
        self.ready_by = now + READY_TIMEOUT

    def exited(self, child: _Child, what: str, code: int) -> bool:
        """A worker ended outside a shutdown: True when it was ours (drained, or the new one
        that could not start), which the master then neither reports nor restarts."""
        if child.pid in self.given_up:
            self.given_up.discard(child.pid)
            self._keep_the_slot(child)
            return True
        if child.retiring is not None:
            if code != 0:
                log.warning("%s while draining", what)
            return True
        if child.pid == self.incoming and not child.ready:
            log.error("%s before it served: the restart is abandoned, the old workers serve on", what)
            self.incoming = None
            self._end()
            self._keep_the_slot(child)
            return True
        return False

    def _keep_the_slot(self, child: _Child) -> None:
        """The old worker of a slot whose replacement failed died meanwhile: restart it as any
        dead worker (with the code on disk: a broken one then backs off)."""
        master = self.master
        serving = (other for other in master.children.values() if other.retiring is None)
        if not any(other.index == child.index for other in serving):
            master.restarts[child.index] = time.monotonic() + master.delay

    def _end(self) -> None:
        """Done or abandoned: either way the workers serve (systemd hears READY=1)."""
        self.active = False
        self.master.notifier.ready()

    def _drain(self, old: _Child, now: float) -> None:
        from .workers import DRAIN_SIGNAL

        old.retiring = now + self.master.kill_after
        try:
            os.kill(old.pid, DRAIN_SIGNAL)
        except ProcessLookupError:
            pass

    def _abandon(self, new: _Child) -> None:
        """Kill the new worker that does not start; reaped, it is nobody's to restart."""
        self._end()
        self.incoming = None
        self.given_up.add(new.pid)
        try:
            os.kill(new.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _kill_the_overdue(self, now: float) -> None:
        for child in self.master.children.values():
            if child.retiring is not None and 0.0 < child.retiring < now:
                log.error(
                    "worker %d (pid %d) still draining %.0f s after it was replaced: killed",
                    child.index, child.pid, self.master.kill_after,
                )  # fmt: skip
                child.retiring = 0.0
                try:
                    os.kill(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
