"""Liveness of the `--workers` processes: each worker's hub stamps the time, the master reads it.

A worker whose hub does not run (a handler spinning the CPU without yielding, a blocking call
under `--no-patch`) still holds its listening socket, so the kernel keeps handing it new
connections that nobody accepts; it neither dies nor answers. Its hub is what must be
watched, not the process.

The board is one anonymous shared mapping made by the master before it forks: a slot of one
8-byte float per worker index, holding the `time.monotonic()` (system-wide on Linux and macOS,
so comparable between processes) at which that worker's hub last ran a timer. Chosen over a
pipe because a heartbeat then costs the worker no system call and the master no wake-up: the
master reads the slots on the tick it already has, and a master that lags cannot fill a pipe
and block a worker writing to it. An aligned 8-byte store is one instruction on the platforms
served, so a slot is never read half-written.

The master counts a worker's silence only over time it ran itself: after a terminal's Ctrl-Z
and `fg`, or a paused virtual machine, every process was frozen alike, and none is to blame.

The timer is a watcher of the hub's loop whose callback runs in the hub itself: no greenlet,
no switch, and it runs exactly when the hub does, which is the point.
"""

from __future__ import annotations

import mmap
import struct
import time
from typing import Any

import gevent

__all__ = ["DEFAULT_WORKER_TIMEOUT", "Heartbeat", "LivenessBoard"]

DEFAULT_WORKER_TIMEOUT = 30.0  # seconds of silence before the master replaces a worker

_SLOT = struct.Struct("d")
_MASTER_GAP = 1.0  # the master's ticks this much further apart than usual: it was frozen too


class LivenessBoard:
    """One time stamp per worker index (from 1), shared by the master and its workers."""

    def __init__(self, count: int, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"the worker timeout must be above 0, not {timeout}")
        self.timeout = timeout
        # Several beats per timeout, so that a late one or two do not look like silence.
        self.interval = min(1.0, timeout / 4)
        self._slots = mmap.mmap(-1, _SLOT.size * (count + 1))  # anonymous, MAP_SHARED: inherited
        self._last_tick = self._since = time.monotonic()  # the master's

    def stamp(self, index: int, now: float | None = None) -> None:
        _SLOT.pack_into(self._slots, _SLOT.size * index, time.monotonic() if now is None else now)

    def tick(self, now: float) -> None:
        """The master's check begins: after a gap in them, silence counts from `now`."""
        if now - self._last_tick > self.interval + _MASTER_GAP:
            self._since = now
        self._last_tick = now

    def silent_for(self, index: int, now: float) -> float:
        """Seconds since worker `index` last stamped its slot (or the master came back)."""
        (stamped,) = _SLOT.unpack_from(self._slots, _SLOT.size * index)
        return float(now - max(stamped, self._since))

    def close(self) -> None:
        self._slots.close()


class Heartbeat:
    """In a worker: stamps its slot every `board.interval` seconds from its hub's loop."""

    def __init__(self, board: LivenessBoard, index: int) -> None:
        self.board = board
        self.index = index
        self._timer: Any = None

    def start(self) -> None:
        if self._timer is not None:
            return
        self.board.stamp(self.index)
        interval = self.board.interval
        self._timer = gevent.get_hub().loop.timer(interval, interval)
        self._timer.ref = False  # the heartbeat alone keeps no loop running
        self._timer.start(self._beat)

    def _beat(self) -> None:
        self.board.stamp(self.index)
