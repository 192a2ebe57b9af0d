"""Actors on gevent: one greenlet each, a bounded mailbox, messages handled one at a time.

    ref = Counter.start()
    ref.tell("inc")                  # returns nothing
    ref.ask("get", timeout=1.0)      # the reply, or the handler's exception re-raised
    future = ref.ask("get", block=False)
    ref.stop()                       # pending asks fail with ActorStopped

An exception in `on_receive` crashes the actor: an asker gets the exception, the actor's
`on_failure` runs, and its supervisor (if any) decides whether a fresh instance takes
over the same mailbox. Without a supervisor a crashed actor stays stopped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import gevent
import gevent.event

from ..errors import ActorStopped, MailboxFull

__all__ = ["Actor", "ActorRef"]

A = TypeVar("A", bound="Actor")


class Actor:
    """Subclass and override the hooks. State on `self` needs no locks.

    `actor_ref` is the actor's own reference (set before `on_start`), to hand to others.
    """

    mailbox_size = 1000
    actor_ref: ActorRef[Any]

    def on_start(self) -> None:
        """Runs in the actor's greenlet before the first message (and after each restart)."""

    def on_receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an `ask`."""
        return None

    def on_stop(self) -> None:
        """Runs in the actor's greenlet after the last message."""

    def on_failure(self, exc: BaseException) -> None:
        """Runs after `on_receive` raised, before the supervisor decides about a restart."""

    @classmethod
    def start(cls: type[A], *args: Any, **kwargs: Any) -> ActorRef[A]:
        """Create the actor and run it in a new greenlet; returns its reference."""
        ref: ActorRef[A] = ActorRef(lambda: cls(*args, **kwargs))
        ref.spawn()
        return ref


class _Envelope:
    __slots__ = ("message", "reply")

    def __init__(self, message: Any, reply: gevent.event.AsyncResult[Any] | None) -> None:
        self.message = message
        self.reply = reply


_STOP = _Envelope(None, None)


class ActorRef(Generic[A]):
    """The handle other greenlets use: the only way to reach an actor."""

    def __init__(self, factory: Callable[[], A], name: str | None = None) -> None:
        self.name = name
        self.factory = factory
        self.actor: A | None = None
        self.on_crash: Callable[[ActorRef[A], BaseException], None] | None = None
        self._mailbox: deque[_Envelope] = deque()
        self._wakeup = gevent.event.Event()
        self._greenlet: gevent.Greenlet[Any, Any] | None = None
        self._stopping = False
        self._down = False  # stopped for good: no instance will run again

    def __repr__(self) -> str:
        return f"<ActorRef {self.name or self.factory}>"

    @property
    def is_alive(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    @property
    def is_down(self) -> bool:
        """True once the actor is stopped for good."""
        return self._down

    @property
    def pending(self) -> int:
        return len(self._mailbox)

    # -- talking to the actor ---------------------------------------------------------

    def tell(self, message: Any) -> None:
        """Queue a message; raises MailboxFull or ActorStopped instead of blocking."""
        self._post(_Envelope(message, None))

    def ask(self, message: Any, timeout: float | None = None, block: bool = True) -> Any:
        """Send and wait for the reply (re-raising the handler's exception); `block=False` gives a future."""
        reply: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()
        self._post(_Envelope(message, reply))
        if not block:
            return reply
        return reply.get(timeout=timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the message being handled; pending asks fail with ActorStopped."""
        if self._down:
            return
        self._stopping = True
        self._mailbox.appendleft(_STOP)
        self._wakeup.set()
        if self._greenlet is not None and gevent.getcurrent() is not self._greenlet:
            self._greenlet.join(timeout)

    def _post(self, envelope: _Envelope) -> None:
        if self._down or self._stopping:
            raise ActorStopped(f"{self!r} is stopped")
        if len(self._mailbox) >= self._mailbox_size():
            raise MailboxFull(f"{self!r} has {len(self._mailbox)} messages waiting")
        self._mailbox.append(envelope)
        self._wakeup.set()

    def _mailbox_size(self) -> int:
        return self.actor.mailbox_size if self.actor is not None else Actor.mailbox_size

    # -- the actor's greenlet -----------------------------------------------------------

    def spawn(self) -> None:
        """Run a fresh instance on this mailbox: the first start, or a supervisor's restart."""
        actor = self.actor = self.factory()
        actor.actor_ref = self
        self._greenlet = gevent.spawn(self._loop, actor)

    def _loop(self, actor: A) -> None:
        try:
            actor.on_start()
        except Exception as exc:
            self._crashed(actor, exc)
            return
        mailbox = self._mailbox
        while True:
            while not mailbox:
                self._wakeup.clear()
                self._wakeup.wait()
            envelope = mailbox.popleft()
            if envelope is _STOP:
                break
            try:
                result = actor.on_receive(envelope.message)
            except Exception as exc:
                if envelope.reply is not None:
                    envelope.reply.set_exception(exc)
                self._crashed(actor, exc)
                return
            if envelope.reply is not None:
                envelope.reply.set(result)
        self._finish(actor)

    def _crashed(self, actor: A, exc: BaseException) -> None:
        try:
            actor.on_failure(exc)
        finally:
            if self.on_crash is not None:
                self.on_crash(self, exc)
            else:
                self._finish(actor)

    def _finish(self, actor: A | None) -> None:
        """Stopped for good: run on_stop, fail what is still queued."""
        self._down = True
        try:
            if actor is not None:
                actor.on_stop()
        finally:
            self.give_up(ActorStopped(f"{self!r} stopped"))

    def give_up(self, error: Exception) -> list[Any]:
        """Down for good: no instance runs again. Pending asks fail with `error`; the told
        messages still queued are returned (dead letters)."""
        self._down = True
        letters = []
        while self._mailbox:
            envelope = self._mailbox.popleft()
            if envelope is _STOP:
                continue
            if envelope.reply is not None:
                envelope.reply.set_exception(error)
            else:
                letters.append(envelope.message)
        return letters
