"""Users as addresses in one process: `send_to_user`, `ctx.send_to_user`, `disconnect_user`.

Real sockets on 127.0.0.1; clients are users by `?user=NAME` (tests/support/users_app.py).
"""

from __future__ import annotations

import pytest

from websock_actors.client import connect
from websock_actors.testing import ServerThread

from ..support.users_app import Notice, closed_with, notice, users_app
from ..support.users_app import member as user

pytestmark = pytest.mark.timeout(30)








def test_send_to_user_reaches_every_connection_of_the_user_and_nobody_else() -> None:
    app = users_app()
    with ServerThread(app) as server:
        ann1, ann2, bob = user(server, "ann"), user(server, "ann"), user(server, "bob")
        assert server.call(app.send_to_user, "ann", Notice(text="for ann")) == 2
        assert notice(ann1) == notice(ann2) == "for ann"
        assert server.call(app.send_to_user, "bob", Notice(text="marker")) == 1
        assert notice(bob) == "marker"  # not "for ann" before it
        ann2.close()
        assert server.call(app.send_to_user, "ann", Notice(text="one tab left")) == 1
        assert notice(ann1) == "one tab left"
        for ws in (ann1, bob):
            ws.close()


def test_a_handler_sends_to_a_user() -> None:
    with ServerThread(users_app()) as server:
        ann, bob = user(server, "ann"), user(server, "bob")
        bob.request({"type": "tell", "to": "ann", "text": "hello ann"})
        assert notice(ann) == "hello ann"
        ann.close()
        bob.close()


def test_unknown_user_gets_zero_and_bad_arguments_clear_errors() -> None:
    app = users_app(resume=False)
    with ServerThread(app) as server:
        assert server.call(app.send_to_user, "nobody", Notice(text="x")) == 0
        assert server.call(app.disconnect_user, "nobody") == 0
        with pytest.raises(TypeError, match="identity is a str or an int, not dict"):
            server.call(app.send_to_user, {"id": 1}, Notice(text="x"))
        with pytest.raises(TypeError, match="not bool"):
            server.call(app.disconnect_user, True)
        with pytest.raises(TypeError, match="pydantic model, not dict"):
            server.call(app.send_to_user, "ann", {"type": "notice"})
        with pytest.raises(ValueError):
            server.call(app.disconnect_user, "ann", 999)
        ann = user(server, "7")  # an int identity addresses as its text
        assert server.call(app.send_to_user, 7, Notice(text="seven")) == 1
        assert notice(ann) == "seven"
        ann.close()


@pytest.mark.parametrize("code", [4003, 1012])  # 1012: a code a resume would follow
def test_disconnect_user_closes_every_connection_and_their_resume_is_refused(code: int) -> None:
    app = users_app()
    with ServerThread(app) as server:
        ann1, ann2, bob = user(server, "ann"), user(server, "ann"), user(server, "bob")
        tokens = [ann1.session, ann2.session]
        assert None not in tokens
        assert server.call(app.disconnect_user, "ann", code, "kicked") == 2
        assert closed_with(ann1) == closed_with(ann2) == (code, "kicked")
        for token in tokens:
            with connect(f"{server.url}?user=ann") as again:
                answer = again.request({"type": "resume", "session": token, "rooms": {}})
                assert answer["restored"] is False, answer
        assert server.call(app.send_to_user, "bob", Notice(text="still here")) == 1
        assert notice(bob) == "still here"
        assert server.call(lambda: app.services.users.index.keys() == {"bob"})
        bob.close()
