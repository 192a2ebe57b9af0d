"""The shared runner: one greenlet reads and answers for every ready connection of a loop turn.

For an app that lets its handler run outside the connection's actor (`Application.shared`,
the typed App's default), the read watcher of a parked actor calls `Runner.on_readable` in
the hub. That queues the connection, and once per turn of the event loop the runner's
greenlet does `read_and_deliver` (inline.py) for every queued connection: two greenlet
switches per turn, not two per connection woken.

The turn's run starts right after the last read watcher's callback of that turn, before the
hub's queue of callbacks (a watcher of the lowest priority, fed the event): so a sender's
next messages are read before the wakes of the members its last broadcast mailed, which
then write both at once, as they would if the sender's actor had read them.

The runner is a greenlet, not the hub, so a handler may wait (a Redis call, an `ask`, a
write to a full socket). While it waits, the runner belongs to that connection: the hub starts
a new runner at once for the others queued in that turn (and the next turns use it), and the
one that waited finishes its connection and ends.
A connection whose handler waits is not queued again (its read watcher is stopped, and
started again when its handler is done), so its messages keep their order; mail for it waits
in its bounded mailbox, as it would for a busy actor. What a runner may not do for the actor
(close, fail, the rest of a blocked write) is handed to the actor in a callback of the hub.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final, cast
from weakref import WeakKeyDictionary

from gevent import getcurrent
from gevent.hub import Hub
from greenlet import GreenletExit, greenlet

from .inline import STAY, Handoff, read_and_deliver
from .transport import HANDOFF, NOT_WAITING, WAIT_READ

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Runner", "runner_for"]

_FED: Final = 0x01000000  # libev's EV_CUSTOM: an event fed by the program, not a poll

_switch = greenlet.switch
_runners: WeakKeyDictionary[Hub, Runner] = WeakKeyDictionary()


def runner_for(hub: Hub) -> Runner:
    """The hub's runner, made at its first use."""
    runner = _runners.get(hub)
    if runner is None:
        runner = _runners[hub] = Runner(hub)
    return runner


class Runner:
    """The ready connections of one hub and the greenlet that serves them (see the module)."""

    __slots__ = ("_after_reads", "_greenlet", "_hub", "_idle", "_ready", "_scheduled")

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._ready: deque[Connection] = deque()
        self._greenlet: Any = None
        self._idle = False  # the runner waits for work, not inside a handler
        self._scheduled = False
        # Never started: fed once per turn with work, it runs after every watcher of a higher
        # priority that the turn's poll made pending (see the module).
        loop: Any = hub.loop  # (types-gevent lacks MINPRI and a watcher's feed)
        self._after_reads: Any = loop.check(ref=False, priority=loop.MINPRI)

    def on_readable(self, conn: Connection) -> None:
        """The read watcher's callback, in the hub: queue `conn` for this turn's run."""
        if conn._wait_state != WAIT_READ:
            # Queued already, or its handler waits in a runner: the level-triggered watcher
            # would call again every turn; started again once the handler is done.
            conn._read_watcher.stop()
            return
        conn._wait_state = NOT_WAITING  # mail need not wake the actor: the runner sends it
        self._ready.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._after_reads.feed(_FED, self._resume)

    def _resume(self) -> None:
        """In the hub, once per turn with work, after its reads: switch into the runner (a new
        one if the last waits inside a handler). The switch comes back here once the runner
        is idle, or when a handler waits; then the connections still queued get a new runner
        at once: they may have no other read to wake them, and they must not wait for it."""
        self._scheduled = False
        while self._ready:
            runner = self._greenlet
            if runner is None or not self._idle:
                runner = self._greenlet = greenlet(self._run, self._hub)
            self._idle = False
            runner.switch()

    def _run(self) -> None:
        me = getcurrent()
        ready = self._ready
        while True:
            # One ready connection per pass, served in the loop itself (a call less per read).
            while ready:
                if self._greenlet is not me:
                    return  # it waited in a handler and another runner took over: end
                conn = ready.popleft()
                if conn._finished:
                    continue  # closed while queued
                context = conn._context  # the actor's contextvars (set in on_connect): the handler's too
                if context is not None:
                    base = me.gr_context
                    me.gr_context = context
                try:
                    what = read_and_deliver(conn, me)
                except GreenletExit:
                    raise  # the runner is being collected (its hub gone): end as asked
                except BaseException as exc:  # a gevent.Timeout out of a handler: never into the hub
                    what = RuntimeError(f"{exc!r} out of a message handler")
                finally:
                    if context is not None:
                        me.gr_context = base
                if what is STAY and (conn._outbox or conn._abort_reason is not None or conn._closing):
                    what = None  # mail, a close or an abort came while it was queued: the actor sees to it
                if conn._finished:
                    continue  # its actor ended while its handler waited
                if what is STAY:
                    conn._wait_state = WAIT_READ
                    watcher = conn._read_watcher
                    if not watcher.active:  # stopped while its handler waited
                        watcher.start(self.on_readable, conn)
                    continue
                # The actor takes over, switched into by the hub: a switch from here would leave
                # this runner parked behind the actor.
                conn._wait_state = NOT_WAITING
                conn._read_watcher.stop()
                conn._handoff = cast(Handoff, what)
                self._hub.loop.run_callback(_hand_off, conn)
            if self._greenlet is not me:
                return
            self._idle = True
            _switch(self._hub)


def _hand_off(conn: Connection) -> None:
    if conn._finished:
        return
    actor = conn._greenlet
    if actor is None:
        conn._revive(HANDOFF)  # dormant: a new greenlet
    else:
        actor.switch(HANDOFF)

