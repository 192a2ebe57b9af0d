"""Users as addresses across nodes: two servers on one real redis-server, a user's
connections on both, `send_to_user` and `disconnect_user` sent from either.

Clients are users by `?user=NAME` (tests/support/users_app.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from websock_actors import App
from websock_actors.client import connect
from websock_actors.testing import ServerThread

from ..support.apps import two_nodes_on
from ..support.users_app import Notice, closed_with, notice, users_app
from ..support.users_app import member as user
from ..support.waits import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def two_nodes(shared_redis: Any) -> Iterator[tuple[ServerThread, ServerThread]]:
    """Two servers of the users app (with resumption) on the shared Redis."""
    with two_nodes_on(shared_redis.url, users_app) as nodes:
        yield nodes


def app_of(server: ServerThread) -> App:
    app = server.app
    assert isinstance(app, App)
    return app


def test_send_to_user_reaches_both_nodes_and_nobody_else(
    two_nodes: tuple[ServerThread, ServerThread],
) -> None:
    a, b = two_nodes
    ann_a, ann_b, bob_b = user(a, "ann"), user(b, "ann"), user(b, "bob")
    # from a node with one of ann's connections: 1 here, 1 through Redis
    assert a.call(app_of(a).send_to_user, "ann", Notice(text="for ann")) == 1
    assert notice(ann_a) == notice(ann_b) == "for ann"
    # from a node without any of bob's connections: none here, and bob gets it
    assert a.call(app_of(a).send_to_user, "bob", Notice(text="marker")) == 0
    assert notice(bob_b) == "marker"  # and not "for ann" before it
    # a handler on node b reaches ann's tab on node a, once (no echo of its own publish)
    bob_b.request({"type": "tell", "to": "ann", "text": "from bob"})
    assert notice(ann_a) == notice(ann_b) == "from bob"
    a.call(app_of(a).send_to_user, "ann", Notice(text="next"))
    assert notice(ann_a) == notice(ann_b) == "next"
    for ws in (ann_a, ann_b, bob_b):
        ws.close()


def test_disconnect_user_closes_both_nodes_and_their_resume_is_refused(
    two_nodes: tuple[ServerThread, ServerThread],
) -> None:
    a, b = two_nodes
    ann_a, ann_b, bob_b = user(a, "ann"), user(b, "ann"), user(b, "bob")
    tokens = [ann_a.session, ann_b.session]
    assert None not in tokens
    assert a.call(app_of(a).disconnect_user, "ann", 1012, "kicked") == 1
    assert closed_with(ann_a) == closed_with(ann_b) == (1012, "kicked")
    for token in tokens:
        for server in (a, b):
            with connect(f"{server.url}?user=ann") as again:
                answer = again.request({"type": "resume", "session": token, "rooms": {}})
                assert answer["restored"] is False, answer
    assert a.call(app_of(a).send_to_user, "bob", Notice(text="still here")) == 0
    assert notice(bob_b) == "still here"
    bob_b.close()


def test_a_node_listens_to_a_user_only_while_it_has_a_connection(
    two_nodes: tuple[ServerThread, ServerThread],
) -> None:
    a, _ = two_nodes
    backplane: Any = app_of(a).rooms
    channels = backplane.user_channels
    channels.subscriber.linger = 0.0
    ann = user(a, "ann")
    assert a.call(lambda: set(channels.subscriber.subscribed)) == {"ann"}
    ann.close()
    wait_until(lambda: not a.call(lambda: set(channels.subscriber.subscribed)), 5, "unsubscribed")


def test_disconnect_user_from_another_node_ends_a_session_in_grace(
    two_nodes: tuple[ServerThread, ServerThread],
) -> None:
    a, b = two_nodes
    ann_a, ann_b = user(a, "ann"), user(a, "ann")
    tokens = [ann_a.session, ann_b.session]
    assert None not in tokens
    channels = app_of(a).rooms.user_channels  # type: ignore[attr-defined]
    channels.subscriber.linger = 0.0  # only the session in grace keeps the channel
    ann_a.abort()  # the transports are gone: the sessions wait on node a for their resume
    ann_b.abort()
    graces = app_of(a).resumption.graces  # type: ignore[union-attr]
    wait_until(lambda: a.call(lambda: len(graces.running)) == 2, 5, "both in their grace")
    assert a.call(lambda: set(channels.subscriber.subscribed)) == {"ann"}  # still listened to
    assert b.call(app_of(b).disconnect_user, "ann", 4003, "kicked") == 0  # none open anywhere
    wait_until(lambda: not a.call(lambda: graces.running), 5, "the graces ended on node a")
    wait_until(lambda: not a.call(lambda: set(channels.subscriber.subscribed)), 5, "ann's channel let go")
    for token in tokens:
        for server in (a, b):
            with connect(f"{server.url}?user=ann") as again:
                answer = again.request({"type": "resume", "session": token, "rooms": {}})
                assert answer["restored"] is False, answer
