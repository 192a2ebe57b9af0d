"""`Emitter("http://...", api_key=...)`: through the server API of a server without Redis
(real sockets on 127.0.0.1, users as clients: tests/support/api_app.py), and the transport's
kept connections against a server scripted to close them (tests/support/scripted_http.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from websock_actors import ApiRefusal, BackplaneUnavailable, ServerUnreachable
from websock_actors.emitter import Emitted, Emitter
from websock_actors.testing import ServerThread

from ..support.api_app import api_app
from ..support.scripted_http import Answer, ScriptedHttp
from ..support.users_app import closed_with, member, notice

pytestmark = pytest.mark.timeout(60)

KEY = "s3cret-api-key"
ROOT = Path(__file__).resolve().parents[2]


def http_url(server: ServerThread) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def api_server() -> Iterator[ServerThread]:
    with ServerThread(api_app(), api_key=KEY) as server:
        yield server


def test_broadcast_send_to_user_and_disconnect_user(api_server: ServerThread) -> None:
    ann1, ann2 = member(api_server, "ann", "lobby"), member(api_server, "ann")
    bob = member(api_server, "bob", "lobby")
    with Emitter(http_url(api_server), api_key=KEY) as emitter:
        done = emitter.broadcast("lobby", {"type": "notice", "text": "to the lobby"})
        assert done == Emitted(deliveries=2)  # nodes unknown over HTTP, plain rooms: no seq
        assert notice(ann1) == notice(bob) == "to the lobby"
        assert emitter.send_to_user("ann", {"type": "notice", "text": "to ann"}).deliveries == 2
        assert notice(ann1) == notice(ann2) == "to ann"
        assert emitter.disconnect_user("ann", 4003, "banned") == Emitted(closed=2)
        assert closed_with(ann1) == closed_with(ann2) == (4003, "banned")
        assert emitter.send_to_user("bob", {"type": "notice", "text": "still"}).deliveries == 1
    assert notice(bob) == "still"
    bob.close()


def test_a_wrong_key_is_a_401_refusal(api_server: ServerThread) -> None:
    with Emitter(http_url(api_server), api_key="wrong") as emitter, pytest.raises(ApiRefusal) as refused:
        emitter.broadcast("lobby", {"type": "notice", "text": "x"})
    assert refused.value.status == 401 and "Bearer" in str(refused.value.detail)


def test_a_message_that_fails_its_push_model_is_a_422_with_pydantics_errors(api_server: ServerThread) -> None:
    with Emitter(http_url(api_server), api_key=KEY) as emitter:
        with pytest.raises(ApiRefusal) as refused:
            emitter.broadcast("lobby", {"type": "notice"})
        assert refused.value.status == 422 and refused.value.errors[0]["loc"][-1] == "text"
        with pytest.raises(ApiRefusal) as refused:
            emitter.send_to_user("ann", {"type": "nope"})
        assert refused.value.status == 422
        # the connection is still good for the next request
        assert emitter.broadcast("lobby", {"type": "notice", "text": "ok"}).deliveries == 0


def test_a_body_over_the_bound_is_a_413_refusal() -> None:
    with ServerThread(api_app(), api_key=KEY, max_body_bytes=1000) as server, \
            Emitter(http_url(server), api_key=KEY) as emitter:  # fmt: skip
        with pytest.raises(ApiRefusal) as refused:
            emitter.broadcast("lobby", {"type": "notice", "text": "x" * 2000})
        assert refused.value.status == 413
        assert emitter.broadcast("lobby", {"type": "notice", "text": "small"}).deliveries == 0


def test_a_refused_port_is_unreachable_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        emitter = Emitter(f"http://127.0.0.1:{port}", api_key=KEY, timeout=1.0)
        started = time.monotonic()
        with pytest.raises(ServerUnreachable, match="unreachable"):
            emitter.broadcast("r", {"type": "notice", "text": "x"})
        assert time.monotonic() - started < 1.0


def test_a_server_that_never_answers_is_unreachable_within_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        emitter = Emitter(f"http://127.0.0.1:{silent.getsockname()[1]}", api_key=KEY, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(BackplaneUnavailable, match=r"no answer within 0\.5 s"):  # ServerUnreachable
            emitter.send_to_user("ann", {"type": "notice", "text": "x"})
        assert time.monotonic() - started < 0.5 + 1.0


def test_eight_threads_share_one_http_emitter(api_server: ServerThread) -> None:
    ann = member(api_server, "ann")
    emitter = Emitter(http_url(api_server), api_key=KEY)
    errors: list[BaseException] = []
    counts: list[int | None] = []

    def work(thread: int) -> None:
        try:
            for i in range(25):
                done = emitter.send_to_user("ann", {"type": "notice", "text": f"t{thread}-{i}"})
                counts.append(done.deliveries)
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert counts == [1] * 200
    got = sorted(notice(ann) for _ in range(200))
    assert got == sorted(f"t{t}-{i}" for t in range(8) for i in range(25))
    emitter.close()
    ann.close()


def test_the_answers_map_to_results_and_refusals() -> None:
    server = ScriptedHttp(
        Answer(body={"deliveries": 3, "seq": 7, "epoch": "e1"}),
        Answer(body={"duplicate": True}),
        Answer(status=429, body={"error": "API rate exceeded"}, headers=(("Retry-After", "3"),)),
        Answer(status=503, body={"error": "backplane unavailable: down"}),
    )
    with Emitter(server.url, api_key=KEY) as emitter:
        assert emitter.broadcast("r", {"type": "notice"}) == Emitted(deliveries=3, seq=7, epoch="e1")
        assert emitter.broadcast("r", {"type": "notice"}, idempotency_key="k").duplicate is True
        with pytest.raises(ApiRefusal) as refused:
            emitter.broadcast("r", {"type": "notice"})
        assert (refused.value.status, refused.value.retry_after) == (429, 3.0)
        with pytest.raises(ServerUnreachable, match="503"):
            emitter.broadcast("r", {"type": "notice"})
    assert server.connections == 1  # one kept-alive connection for the four
    _, path, headers, body = server.requests[1]
    assert path == "/_api/broadcast" and headers["idempotency-key"] == "k"
    assert headers["authorization"] == f"Bearer {KEY}" and body == b'{"room":"r","message":{"type":"notice"}}'
    assert "idempotency-key" not in server.requests[0][2]
    server.close()


def test_a_kept_connection_closed_while_idle_is_replaced_before_sending() -> None:
    server = ScriptedHttp(Answer(close=True), Answer(close=True), Answer())
    with Emitter(server.url, api_key=KEY) as emitter:
        for n in range(3):
            assert emitter.send_to_user("ann", {"type": "notice", "text": f"{n}"}).deliveries == 1
            if n < 2:
                server.wait_closed()
    assert server.connections == 3 and len(server.requests) == 3  # each sent once
    server.close()


def test_a_post_lost_after_sending_is_resent_only_with_an_idempotency_key() -> None:
    server = ScriptedHttp(Answer(drop=True), Answer(drop=True), Answer(body={"duplicate": True}))
    with Emitter(server.url, api_key=KEY) as emitter:
        with pytest.raises(ServerUnreachable, match="not sent again"):
            emitter.broadcast("r", {"type": "notice"})
        assert len(server.requests) == 1
        assert emitter.broadcast("r", {"type": "notice"}, idempotency_key="job-9").duplicate is True
    assert len(server.requests) == 3
    assert [r[2]["idempotency-key"] for r in server.requests[1:]] == ["job-9", "job-9"]
    server.close()


def test_an_idempotency_key_over_http_is_done_once(api_server: ServerThread) -> None:
    ann = member(api_server, "ann")
    with Emitter(http_url(api_server), api_key=KEY) as emitter:
        first = emitter.send_to_user("ann", {"type": "notice", "text": "once"}, idempotency_key="h-1")
        again = emitter.send_to_user("ann", {"type": "notice", "text": "once"}, idempotency_key="h-1")
        assert (first.deliveries, first.duplicate) == (1, False)
        assert again == Emitted(duplicate=True)
        emitter.send_to_user("ann", {"type": "notice", "text": "next"})
    assert [notice(ann), notice(ann)] == ["once", "next"]
    ann.close()


def test_over_http_the_emitter_imports_neither_gevent_nor_redis() -> None:
    """redis-py is an optional extra, and gevent is the server's: neither is needed here."""
    server = ScriptedHttp(Answer(body={"deliveries": 5}))
    code = (
        "import sys\n"
        "sys.modules['gevent'] = None\n"
        "sys.modules['redis'] = None\n"
        "from websock_actors import Emitter\n"
        f"done = Emitter({server.url!r}, api_key='k').broadcast('r', {{'type': 'notice'}})\n"
        "assert done.deliveries == 5, done\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)
    assert len(server.requests) == 1
    server.close()
