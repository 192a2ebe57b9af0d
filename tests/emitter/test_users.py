"""`Emitter.send_to_user` and `disconnect_user` over Redis: from a process without gevent,
a user's connections on two nodes (tests/support/users_app.py) on one real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from websock_actors.client import connect
from websock_actors.emitter import Emitter
from websock_actors.testing import ServerThread

from ..support.apps import two_nodes_on
from ..support.elsewhere import emit_elsewhere
from ..support.users_app import closed_with, notice, users_app
from ..support.users_app import member as user

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def two_nodes(shared_redis: Any) -> Iterator[tuple[ServerThread, ServerThread]]:
    with two_nodes_on(shared_redis.url, users_app) as nodes:
        yield nodes


def test_send_to_user_reaches_both_nodes_and_nobody_else(two_nodes, shared_redis) -> None:
    a, b = two_nodes
    ann_a, ann_b, bob_b = user(a, "ann"), user(b, "ann"), user(b, "bob")
    done = emit_elsewhere(shared_redis.url, "send_to_user", "ann", {"type": "notice", "text": "for ann"})
    assert done["nodes"] == 2 and done["deliveries"] is None and not done["duplicate"]
    assert notice(ann_a) == notice(ann_b) == "for ann"
    # bob got nothing: the next thing he reads is the marker sent after
    marker = emit_elsewhere(shared_redis.url, "send_to_user", "bob", {"type": "notice", "text": "marker"})
    assert marker["nodes"] == 1 and notice(bob_b) == "marker"
    nobody = emit_elsewhere(shared_redis.url, "send_to_user", "nobody", {"type": "notice", "text": "-"})
    assert nobody["nodes"] == 0
    for ws in (ann_a, ann_b, bob_b):
        ws.close()


def test_an_int_identity_addresses_its_decimal_text(two_nodes, shared_redis) -> None:
    a, _ = two_nodes
    ws = user(a, "42")
    with Emitter(shared_redis.url) as emitter:
        assert emitter.send_to_user(42, {"type": "notice", "text": "int"}).nodes == 1
        assert notice(ws) == "int"
        with pytest.raises(TypeError, match="str or an int"):
            emitter.send_to_user(True, {"type": "notice", "text": "bool"})
    ws.close()


def test_disconnect_user_closes_both_nodes_and_their_resume_is_refused(two_nodes, shared_redis) -> None:
    a, b = two_nodes
    ann_a, ann_b, bob_b = user(a, "ann"), user(b, "ann"), user(b, "bob")
    tokens = [ann_a.session, ann_b.session]
    assert None not in tokens
    done = emit_elsewhere(shared_redis.url, "disconnect_user", "ann", 4003, "banned")
    assert done["nodes"] == 2
    assert closed_with(ann_a) == closed_with(ann_b) == (4003, "banned")
    for token in tokens:
        with connect(f"{b.url}?user=ann") as again:
            answer = again.request({"type": "resume", "session": token, "rooms": {}})
            assert answer["restored"] is False, answer
    with Emitter(shared_redis.url) as emitter:
        assert emitter.send_to_user("bob", {"type": "notice", "text": "still here"}).nodes == 1
    assert notice(bob_b) == "still here"
    bob_b.close()


def test_a_bad_code_or_reason_is_refused_before_publishing() -> None:
    emitter = Emitter("redis://127.0.0.1:1/0", timeout=0.5)  # nothing listens: a publish would raise
    with pytest.raises(ValueError, match="may not be sent"):
        emitter.disconnect_user("ann", 1005)
    with pytest.raises(ValueError, match="123 bytes"):
        emitter.disconnect_user("ann", 4000, "x" * 124)
    with pytest.raises(TypeError):
        emitter.disconnect_user("ann", "4000")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idempotency key"):
        emitter.disconnect_user("ann", idempotency_key="x" * 201)
    with pytest.raises(ValueError, match="idempotency key"):
        emitter.send_to_user("ann", {"type": "notice"}, idempotency_key="line\nbreak")


def test_an_idempotency_key_sends_to_a_user_once(two_nodes, shared_redis) -> None:
    a, b = two_nodes
    ann_a, ann_b = user(a, "ann"), user(b, "ann")
    with Emitter(shared_redis.url) as emitter:
        first = emitter.send_to_user("ann", {"type": "notice", "text": "once"}, idempotency_key="u-1")
        again = emitter.send_to_user("ann", {"type": "notice", "text": "once"}, idempotency_key="u-1")
        assert (first.nodes, first.duplicate) == (2, False)
        assert (again.nodes, again.duplicate) == (0, True)
        emitter.send_to_user("ann", {"type": "notice", "text": "next"})
        assert [notice(ann_a), notice(ann_a)] == [notice(ann_b), notice(ann_b)] == ["once", "next"]
        kicked = emitter.disconnect_user("ann", 4001, "bye", idempotency_key="k-1")
        assert kicked.nodes == 2
        assert emitter.disconnect_user("ann", 4001, "bye", idempotency_key="k-1").duplicate
    assert closed_with(ann_a) == closed_with(ann_b) == (4001, "bye")
