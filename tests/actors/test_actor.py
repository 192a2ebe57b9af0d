"""Actor and supervisor semantics, run on a gevent hub in the test's own thread."""

from __future__ import annotations

from typing import Any

import gevent
import pytest

from websock_actors import Actor, ActorRef, ActorStopped, MailboxFull, RestartPolicy, Supervisor


class Counter(Actor):
    def __init__(self) -> None:
        self.count = 0
        self.events: list[str] = []

    def on_start(self) -> None:
        self.events.append("start")

    def on_receive(self, message: Any) -> Any:
        if message == "inc":
            value = self.count
            gevent.sleep(0)  # a switch between read and write: safe, one message at a time
            self.count = value + 1
            return self.count
        if message == "boom":
            raise ValueError("boom")
        if message == "wait":
            gevent.sleep(0.05)
            return "waited"
        return self.count

    def on_stop(self) -> None:
        self.events.append("stop")


def test_ask_returns_the_reply_and_tell_returns_nothing() -> None:
    ref = Counter.start()
    assert ref.tell("inc") is None
    assert ref.ask("get", timeout=1) == 1
    future = ref.ask("inc", block=False)
    assert future.get(timeout=1) == 2
    ref.stop(timeout=1)
    assert ref.actor is not None and ref.actor.events == ["start", "stop"]


def test_messages_are_handled_one_at_a_time() -> None:
    ref = Counter.start()
    askers = [gevent.spawn(ref.ask, "inc", 5) for _ in range(200)]
    gevent.joinall(askers, timeout=5, raise_error=True)
    assert ref.ask("get", timeout=1) == 200
    assert sorted(g.value for g in askers) == list(range(1, 201))
    ref.stop(timeout=1)


def test_ask_reraises_the_handler_exception_in_the_caller() -> None:
    ref = Counter.start()
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom", timeout=1)
    # Without a supervisor the crashed actor stays stopped.
    assert ref.is_down
    with pytest.raises(ActorStopped):
        ref.tell("inc")


def test_stop_fails_pending_asks_with_a_clear_error() -> None:
    ref = Counter.start()
    first = ref.ask("wait", block=False)
    pending = [ref.ask("inc", block=False) for _ in range(3)]
    gevent.sleep(0)  # let the actor take the first message
    ref.stop(timeout=2)
    assert first.get(timeout=1) == "waited"  # the message being handled finishes
    for future in pending:
        with pytest.raises(ActorStopped):
            future.get(timeout=1)
    with pytest.raises(ActorStopped):
        ref.ask("get", timeout=1)


def test_bounded_mailbox_refuses_instead_of_blocking() -> None:
    class Tiny(Counter):
        mailbox_size = 2

    ref = Tiny.start()
    ref.tell("wait")
    gevent.sleep(0)
    ref.tell("inc")
    ref.tell("inc")
    with pytest.raises(MailboxFull):
        ref.tell("inc")
    ref.stop(timeout=2)


def test_supervisor_restarts_one_for_one_within_the_cap() -> None:
    sref: ActorRef[Supervisor] = Supervisor.start(RestartPolicy(max_restarts=2, within=60))
    supervisor = sref.actor
    assert supervisor is not None and supervisor.actor_ref is sref
    dead: list[Any] = []
    child = supervisor.supervise("counter", Counter, dead.append)
    other = supervisor.supervise("other", Counter, dead.append)
    assert child.ask("inc", timeout=1) == 1
    for restarts in (1, 2):
        with pytest.raises(ValueError):
            child.ask("boom", timeout=1)
        gevent.sleep(0.01)
        assert child.ask("get", timeout=1) == 0  # a fresh instance, the same reference
        assert supervisor.restarts == restarts
    third = child.ask("boom", block=False)
    child.tell("inc")
    child.tell("inc")
    with pytest.raises(ValueError):
        third.get(timeout=1)  # third crash within the window: it stays down
    gevent.sleep(0.01)
    assert child.is_down
    assert dead == ["inc", "inc"]  # what was queued behind the crash became dead letters
    with pytest.raises(ActorStopped):
        child.tell("inc")
    assert other.ask("inc", timeout=1) == 1  # one-for-one: the sibling is untouched
    sref.stop(timeout=2)
    assert other.is_down
