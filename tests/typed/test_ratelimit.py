"""Rate limits per client (typed/ratelimit.py): the identity, else the address, on real sockets.

A client's buckets outlive its connections, so reconnecting neither refills them nor resets
`close_after`; two addresses (127.0.0.1, 127.0.0.2) or two identities have buckets of their
own; joins have a limit of their own (`App(join_rate=...)`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from websock_actors import App, AppRefusal, AuthRequest, ConfigurationError, Context, Message, RateLimit
from websock_actors.testing import ServerThread

from ..support.apps import fresh_chat_app

pytestmark = pytest.mark.timeout(60)


class Echo(Message):
    type: Literal["echo"]


class Echoed(Message):
    type: Literal["echoed"] = "echoed"


def echo_app(limit: RateLimit, tokens: bool = False) -> App:
    app = App("limited")

    @app.handler(rate_limit=limit)
    def echo(msg: Echo, ctx: Context) -> Echoed:
        return Echoed()

    if tokens:

        @app.authenticate
        def who(request: AuthRequest) -> str:
            token = request.query.get("token", [""])[0]
            if token not in ("ann", "bob"):
                raise AppRefusal(401, "no token")
            return token

    return app


def open_ws(url: str, source: str = "127.0.0.1") -> ClientConnection:
    """A client whose socket comes from `source` (a loopback address)."""
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])), 5, (source, 0))
    return connect(url, sock=sock, proxy=None, compression=None, max_queue=None)


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection) -> dict[str, Any]:
    """The next message but for `session` (a copy of the chat without resumption still
    sends it: the session's rooms are kept all the same)."""
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=5))
        if message["type"] != "session":
            return message


def echo_codes(ws: ClientConnection, count: int) -> list[str]:
    """Send `count` echoes, return the kind of each answer ("echoed" or the error code)."""
    for i in range(count):
        send(ws, type="echo", id=i)
    answers = [recv(ws) for _ in range(count)]
    return [a.get("code", a["type"]) for a in answers]


def closed_with(ws: ClientConnection) -> int | None:
    """The close code the server sent, once it closed."""
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=5)
    return ws.close_code


# -- reconnecting refills nothing ------------------------------------------------------------


def test_a_reconnect_loop_gets_no_more_say_than_burst_plus_rate(serve: Callable[..., ServerThread]) -> None:
    app = fresh_chat_app(resume=False, limits=True)  # say: 5 a second, 20 at once
    say_limit = app.type_rate_limits["say"]
    assert (say_limit.rate, say_limit.burst) == (5, 20)
    server = serve(app)
    accepted = refused = 0
    per_connection = 5
    started = time.monotonic()
    for n in range(40):  # a new connection every 5 `say`
        with open_ws(server.url) as ws:
            send(ws, type="join", id="j", room="lobby", name=f"spammer{n}")
            send(ws, type="say", id=0, room="lobby", text="spam")  # queued behind the join
            for i in range(1, per_connection):
                send(ws, type="say", id=i, room="lobby", text="spam")
            answers = 0
            while answers < per_connection:
                message = recv(ws)
                if message.get("id") == "j":
                    assert message["type"] == "joined", message
                elif message["type"] == "said":
                    accepted += 1
                    answers += 1
                elif message["type"] == "error":
                    assert message["code"] == "rate_limited", message
                    assert message["retry_after_ms"] > 0
                    refused += 1
                    answers += 1
    elapsed = time.monotonic() - started
    bound = say_limit.capacity + say_limit.rate * elapsed
    assert accepted <= bound, (accepted, refused, elapsed)
    assert refused > 0


def test_close_after_carries_over_a_reconnect(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(RateLimit(rate=0.1, burst=2, close_after=4)))
    with open_ws(server.url) as first:
        assert echo_codes(first, 4) == ["echoed"] * 2 + ["rate_limited"] * 2
    with open_ws(server.url) as second:
        # Two more refused in a row make four: the connection is closed.
        for i in range(2):
            send(second, type="echo", id=i)
        assert [recv(second)["code"] for _ in range(2)] == ["rate_limited"] * 2
        assert closed_with(second) == 1008


def test_per_connection_buckets_refill_on_reconnect(serve: Callable[..., ServerThread]) -> None:
    """`rate_limit_per="connection"` (for load tests whose users share one address): each
    connection spends its own buckets, as before limits followed the client."""
    app = echo_app(RateLimit(rate=0.1, burst=2))
    app.rate_limit_per = "connection"
    server = serve(app)
    for _ in range(2):
        with open_ws(server.url) as ws:
            assert echo_codes(ws, 3) == ["echoed"] * 2 + ["rate_limited"]


def test_rate_limit_per_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="rate_limit_per"):
        App("x", rate_limit_per="address")  # type: ignore[arg-type]


def test_the_cli_sets_rate_limit_per(tmp_path: Any) -> None:
    """`websock-actors run --rate-limit-per connection` gives each connection its buckets."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "websock_actors", "run", "tests.typed.test_ratelimit:cli_app", "--port", "0",
         "--no-patch", "--rate-limit-per", "connection"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ws://" in line, line
        url = line.strip().rsplit(" ", 1)[1]
        for _ in range(2):
            with open_ws(url) as ws:
                assert echo_codes(ws, 3) == ["echoed"] * 2 + ["rate_limited"]
    finally:
        proc.terminate()
        proc.wait(10)


cli_app = echo_app(RateLimit(rate=0.1, burst=2))


# -- who a client is -------------------------------------------------------------------------


def test_addresses_have_buckets_of_their_own(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(RateLimit(rate=0.1, burst=2)))
    with open_ws(server.url, "127.0.0.1") as ws:
        assert echo_codes(ws, 3) == ["echoed", "echoed", "rate_limited"]
    with open_ws(server.url, "127.0.0.1") as again, open_ws(server.url, "127.0.0.2") as other:
        assert echo_codes(again, 1) == ["rate_limited"]  # the same address: the same bucket
        assert echo_codes(other, 3) == ["echoed", "echoed", "rate_limited"]


def test_identities_have_buckets_of_their_own(serve: Callable[..., ServerThread]) -> None:
    server = serve(echo_app(RateLimit(rate=0.1, burst=2), tokens=True))
    with open_ws(server.url + "?token=ann") as ann:
        assert echo_codes(ann, 3) == ["echoed", "echoed", "rate_limited"]
    with open_ws(server.url + "?token=ann") as ann, open_ws(server.url + "?token=bob") as bob:
        assert echo_codes(ann, 1) == ["rate_limited"]
        assert echo_codes(bob, 2) == ["echoed", "echoed"]  # same address, another identity


# -- joins -----------------------------------------------------------------------------------


def test_join_churn_beyond_the_join_limit_is_rate_limited(serve: Callable[..., ServerThread]) -> None:
    app = fresh_chat_app(resume=False, limits=True)
    app.rate_limit = None  # only the join limit
    app.join_rate = join_rate = RateLimit(rate=5, burst=10)
    server = serve(app)
    with open_ws(server.url) as member:
        send(member, type="join", id="m", room="big", name="member")
        assert recv(member)["type"] == "joined"
        joined = refused = 0
        started = time.monotonic()
        for _ in range(6):  # the churner reconnects: its joins are counted all the same
            with open_ws(server.url) as churner:
                for i in range(10):
                    send(churner, type="join", id=f"j{i}", room="big", name="churner")
                    send(churner, type="leave", id=f"l{i}", room="big")
                answers = 0
                while answers < 20:
                    answer = recv(churner)
                    if answer["type"] in ("member_joined", "member_left"):
                        continue  # its own joins, told to it
                    answers += 1
                    if answer["type"] == "joined":
                        joined += 1
                    elif answer.get("code") == "rate_limited":
                        assert answer["id"].startswith("j") and answer["retry_after_ms"] > 0, answer
                        refused += 1
        elapsed = time.monotonic() - started
    assert joined <= join_rate.capacity + join_rate.rate * elapsed, (joined, refused, elapsed)
    assert refused >= 60 - joined > 0


# -- the table of clients --------------------------------------------------------------------


def test_a_client_is_forgotten_once_full_again_and_the_table_is_capped() -> None:
    from websock_actors.typed.ratelimit import ClientLimits, ClientTable

    table = ClientTable(max_idle=2)
    limit = RateLimit(rate=1, burst=5)
    limits: list[ClientLimits] = []
    for n in range(3):
        client = table.acquire(("address", f"10.0.0.{n}"), limit, {}, None)
        assert client.take(None) is None  # one token short of full: kept for a second
        limits.append(client)
    for client in limits:
        table.release(client)
    assert list(table.idle) == [("address", "10.0.0.1"), ("address", "10.0.0.2")]  # capped
    assert table.acquire(("address", "10.0.0.2"), limit, {}, None) is limits[2]  # kept
    table.sweep(time.monotonic() + 2)  # both full again by then
    assert not table.idle
    full = table.acquire(("address", "10.0.0.9"), limit, {}, None)
    table.release(full)  # never used: not kept
    assert not table.idle
