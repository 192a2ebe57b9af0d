"""The edge of the server, over real sockets: authentication before the upgrade, rate limits,
per-IP caps, and trusted proxies (issue 12, parts 2-4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import gevent.event
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from examples.chat import app as chat_app
from websock_actors import App, AppRefusal, AuthRequest, Context, ErrorReply, Message, RateLimit
from websock_actors.typed.messages import to_json

from ..support.apps import RoomSequence, session_opened, unnumbered
from ..support.raw import (
    CLOSE,
    TEXT,
    RawClient,
    close_code,
    closed_unanswered,
    masked_frame,
    refuse,
    upgrade_request,
)

ROOT = Path(__file__).resolve().parents[2]


class Join(Message):
    type: Literal["join"]
    room: str


class Joined(Message):
    type: Literal["joined"] = "joined"
    room: str
    identity: Any = None


class Echo(Message):
    type: Literal["echo"]
    text: str = ""


class Echoed(Message):
    type: Literal["echoed"] = "echoed"
    text: str


class Other(Message):
    type: Literal["other"]


class WhoAmI(Message):
    type: Literal["whoami"]


class YouAre(Message):
    type: Literal["you_are"] = "you_are"
    address: list[Any]
    scheme: str


def send(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=5))
    return message


def recv_all(client: RawClient) -> tuple[list[dict[str, Any]], int | None]:
    """Every text frame until the server's close (answered), and the close code."""
    texts: list[dict[str, Any]] = []
    while True:
        op, payload = client.recv_frame()
        if op == TEXT:
            texts.append(json.loads(payload))
        elif op == CLOSE:
            client.send_frame(CLOSE, payload[:2])
            return texts, close_code(payload)


# -- 1. authentication ------------------------------------------------------------------------


def auth_app(handled: list[str], seen: list[AuthRequest]) -> App:
    app = App("auth")

    @app.handler
    def join(msg: Join, ctx: Context) -> Joined:
        handled.append(msg.room)
        ctx.join(msg.room)
        return Joined(room=msg.room, identity=ctx.identity)

    @app.authenticate
    def who(request: AuthRequest) -> dict[str, str] | None:
        seen.append(request)
        token = request.query.get("token", [""])[0] or request.cookies.get("session", "")
        if token == "banned":
            raise AppRefusal(403, "you are banned")
        if token == "broken":
            raise RuntimeError("the user database is down")
        if token == "ann-token":
            return {"user": "ann"}
        return None  # refused with 401

    return app


def test_no_identity_is_refused_with_401_before_the_upgrade(serve) -> None:
    handled: list[str] = []
    seen: list[AuthRequest] = []
    app = auth_app(handled, seen)
    server = serve(app)
    join = masked_frame(TEXT, json.dumps({"type": "join", "room": "r"}).encode())
    status, _, body = refuse(server.port, upgrade_request("/chat?token=wrong") + join)
    assert status == 401
    assert b"authentication required" in body
    assert handled == []  # no handler ran for the frame pipelined behind the refusal
    assert server.call(lambda: app.rooms.members("r")) == []  # nothing reached a room
    assert server.call(lambda: len(server.server.connections)) == 0
    assert [(r.path, r.query) for r in seen] == [("/chat", {"token": ["wrong"]})]
    assert seen[0].peer[0] == "127.0.0.1"


def test_refuse_answers_its_status_and_other_errors_answer_500(serve) -> None:
    handled: list[str] = []
    server = serve(auth_app(handled, []))
    status, _, body = refuse(server.port, upgrade_request("/?token=banned"))
    assert (status, body) == (403, b"you are banned\n")
    status, _, _ = refuse(server.port, upgrade_request("/?token=broken"))
    assert status == 500
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url, open_timeout=5)
    assert refused.value.response.status_code == 401
    assert handled == []


def test_an_identity_admits_and_is_ctx_identity(serve) -> None:
    handled: list[str] = []
    seen: list[AuthRequest] = []
    server = serve(auth_app(handled, seen))
    with connect(server.url + "?token=ann-token") as ws:
        send(ws, type="join", id=1, room="lobby")
        assert recv(ws) == {"type": "joined", "id": 1, "room": "lobby", "identity": {"user": "ann"}}
    cookie = {"Cookie": "theme=dark; session=ann-token", "X-Extra": "yes"}
    with connect(server.url, additional_headers=cookie) as ws:
        send(ws, type="join", id=2, room="lobby")
        assert recv(ws)["identity"] == {"user": "ann"}
    assert seen[1].cookies == {"theme": "dark", "session": "ann-token"}
    assert seen[1].headers.get("x-extra") == "yes"
    assert handled == ["lobby", "lobby"]


def test_refuse_takes_401_or_403_only() -> None:
    assert AppRefusal(403, "no").status == 403
    with pytest.raises(ValueError):
        AppRefusal(404, "no")


def test_plain_http_is_not_authenticated(serve) -> None:
    app = auth_app([], [])
    app.page("/health", "ok", "text/plain")
    server = serve(app)
    status, _, body = refuse(server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, body) == (200, b"ok")


@pytest.fixture
def chat_with_tokens() -> Any:
    """The chat example under the CLI, in token mode (CHAT_TOKENS only in the child's environment)."""
    env = {**os.environ, "CHAT_TOKENS": "ann:s3cret,bob:hunter2", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "websock_actors", "run", "examples.chat:app"]
    command += ["--port", "0", "--no-patch"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "websock-actors: serving examples.chat:app on ws://127.0.0.1:PORT/"
        assert "serving" in line, line
        yield line.strip().rsplit(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_chat_token_mode_under_the_cli(chat_with_tokens: str) -> None:
    url = chat_with_tokens
    assert "CHAT_TOKENS" not in os.environ
    for bad in ("", "?token=wrong", "?token=s3cret2"):
        with pytest.raises(InvalidStatus) as refused:
            connect(url + bad, open_timeout=5)
        assert refused.value.response.status_code == 401
    with connect(url + "?token=s3cret") as ann, connect(url + "?token=hunter2") as bob:
        session_opened(recv(ann))
        session_opened(recv(bob))
        send(ann, type="join", id=1, room="lobby", name="mallory")  # the token decides the name
        assert recv(ann) == {"type": "joined", "id": 1, "room": "lobby", "members": ["ann"]}
        send(bob, type="join", id=2, room="lobby", name="ann")
        assert recv(bob) == {"type": "joined", "id": 2, "room": "lobby", "members": ["ann", "bob"]}
        assert unnumbered(recv(ann)) == {"type": "member_joined", "room": "lobby", "name": "bob"}
        send(bob, type="say", room="lobby", text="hi")
        assert unnumbered(recv(ann))["name"] == "bob"


# -- 2. rate limits ---------------------------------------------------------------------------


def limited_app(**options: Any) -> App:
    app = App("limited", rate_limit=options.pop("total", None))

    @app.handler(rate_limit=options.pop("echo", None))
    def echo(msg: Echo, ctx: Context) -> Echoed:
        return Echoed(text=msg.text)

    @app.handler
    def other(msg: Other, ctx: Context) -> None:
        return None

    return app


def test_total_limit_answers_rate_limited_with_retry_after(serve) -> None:
    server = serve(limited_app(total=RateLimit(rate=0.5, burst=3)))
    with connect(server.url) as ws:
        for i in range(5):
            send(ws, type="echo", id=i, text=str(i))
        replies = [recv(ws) for _ in range(5)]
        assert [r["type"] for r in replies] == ["echoed"] * 3 + ["error"] * 2
        for i, reply in enumerate(replies[3:], start=3):
            assert (reply["id"], reply["code"]) == (i, "rate_limited")
            assert 0 < reply["retry_after_ms"] <= 2000
        send(ws, type="nope", id="x")  # still open; the total limit counts every message
        assert recv(ws)["code"] == "rate_limited"


def test_a_per_type_limit_leaves_other_types_alone(serve) -> None:
    server = serve(limited_app(echo=RateLimit(rate=0.1, burst=2)))
    with connect(server.url) as ws:
        for i in range(3):
            send(ws, type="echo", id=i)
            send(ws, type="other", id=f"o{i}")
        replies = [recv(ws) for _ in range(6)]
    assert [(r["type"], r["id"]) for r in replies] == [
        ("echoed", 0), ("ack", "o0"), ("echoed", 1), ("ack", "o1"), ("error", 2), ("ack", "o2")
    ]
    assert "'echo' messages" in replies[4]["detail"]


def test_close_after_closes_with_1008(serve) -> None:
    server = serve(limited_app(total=RateLimit(rate=0.1, burst=1, close_after=3)))
    with RawClient(server.port) as client:
        frames = [masked_frame(TEXT, json.dumps({"type": "echo", "id": i}).encode()) for i in range(6)]
        client.sock.sendall(b"".join(frames))
        texts, code = recv_all(client)
    assert code == 1008
    assert [t.get("code", t["type"]) for t in texts] == ["echoed"] + ["rate_limited"] * 3


def test_an_accepted_message_resets_the_count_in_a_row(serve) -> None:
    server = serve(limited_app(echo=RateLimit(rate=0.1, burst=1, close_after=2)))
    with connect(server.url) as ws:
        for message in ("echo", "echo", "other", "echo", "other"):
            send(ws, type=message, id=message)
        codes = [recv(ws).get("code") for _ in range(5)]
        # Rejected, accepted, rejected: never two in a row, so still open.
        assert codes == [None, "rate_limited", None, "rate_limited", None]


def test_error_replies_leave_out_retry_after_when_none() -> None:
    plain = json.loads(to_json(ErrorReply(code="x")))
    assert plain == {"type": "error", "code": "x", "detail": "", "errors": []}
    limited = json.loads(to_json(ErrorReply(id=1, code="rate_limited", retry_after_ms=5)))
    assert limited["retry_after_ms"] == 5 and limited["id"] == 1


def test_the_chat_refuses_a_burst_of_2000_says(serve) -> None:
    server = serve(chat_app)
    with RawClient(server.port) as client:
        join = {"type": "join", "id": "j", "room": "lobby", "name": "ann"}
        says = [{"type": "say", "id": i, "room": "lobby", "text": "spam"} for i in range(2000)]
        client.sock.sendall(b"".join(masked_frame(TEXT, json.dumps(m).encode()) for m in [join, *says]))
        texts, code = recv_all(client)
    session_opened(texts.pop(0))
    kinds = [t.get("code", t["type"]) for t in texts]
    assert kinds[0] == "joined"
    said, limited = kinds.count("said"), kinds.count("rate_limited")
    assert 20 <= said < 40  # the burst of 20, and what 5 a second adds meanwhile
    seq = RoomSequence()  # each `say` taken is one message to the room, numbered in turn
    assert [seq(t)["text"] for t in texts if t["type"] == "message"] == ["spam"] * said
    assert limited == 200  # then the close (1008) after 200 in a row
    assert code == 1008
    first = next(t for t in texts if t.get("code") == "rate_limited")
    assert first["id"] >= 20 and first["retry_after_ms"] > 0


# -- 3. per-IP caps -----------------------------------------------------------------------------


def echo_app() -> App:
    app = App("echo")

    @app.handler
    def whoami(msg: WhoAmI, ctx: Context) -> YouAre:
        return YouAre(address=list(ctx.address), scheme=ctx.scheme)

    return app


def test_connections_per_ip_are_capped_at_accept_time(serve) -> None:
    # The peer is known when its socket is accepted: refused then, closed before a byte is read
    # (tests/server/test_admission.py has the rest); 429 is for a trusted proxy's clients.
    server = serve(echo_app(), max_connections_per_ip=2)
    with RawClient(server.port), RawClient(server.port):
        assert closed_unanswered(server.port, upgrade_request())
        assert server.open_per_ip() == {"127.0.0.1": 2}


def test_handshakes_per_second_per_ip_are_capped_at_accept_time(serve) -> None:
    server = serve(echo_app(), max_handshakes_per_second_per_ip=2)
    with RawClient(server.port), RawClient(server.port):
        assert closed_unanswered(server.port, upgrade_request())


def test_a_proxied_client_beyond_the_handshake_rate_gets_429(serve) -> None:
    server = serve(echo_app(), forwarded_allow_ips=["127.0.0.1"], max_handshakes_per_second_per_ip=2)
    forwarded = "X-Forwarded-For: 203.0.113.7\r\n"
    with RawClient(server.port, extra=forwarded), RawClient(server.port, extra=forwarded):
        status, headers, body = refuse(server.port, upgrade_request(extra=forwarded))
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert b"too many handshakes" in body


# -- 4. trusted proxies ------------------------------------------------------------------------


def whoami(url: str, headers: dict[str, str]) -> tuple[list[Any], str]:
    with connect(url, additional_headers=headers) as ws:
        send(ws, type="whoami", id=1)
        reply = recv(ws)
    return reply["address"], reply["scheme"]


FORWARDED = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3", "X-Forwarded-Proto": "https"}


def test_forwarded_headers_are_honoured_from_an_allowed_proxy(serve) -> None:
    server = serve(echo_app(), forwarded_allow_ips=["127.0.0.1", "10.0.0.0/8"])
    # The right-most address that is not a trusted proxy: 198.51.100.1 could be forged.
    assert whoami(server.url, FORWARDED) == (["203.0.113.7", 0], "wss")
    assert whoami(server.url, {"X-Forwarded-For": "203.0.113.9"}) == (["203.0.113.9", 0], "ws")
    address, scheme = whoami(server.url, {})
    assert address[0] == "127.0.0.1" and scheme == "ws"
    anyone = serve(echo_app(), forwarded_allow_ips=["*"])
    assert whoami(anyone.url, FORWARDED) == (["198.51.100.1", 0], "wss")  # "*": the left-most


@pytest.mark.parametrize("allowed", [None, ["10.0.0.1"]])
def test_forwarded_headers_are_ignored_from_other_peers(serve, allowed: list[str] | None) -> None:
    server = serve(echo_app(), forwarded_allow_ips=allowed)
    address, scheme = whoami(server.url, FORWARDED)
    assert address[0] == "127.0.0.1" and scheme == "ws"


def test_per_ip_caps_count_the_forwarded_client(serve) -> None:
    server = serve(echo_app(), forwarded_allow_ips=["127.0.0.1"], max_connections_per_ip=1)
    first, second = ("X-Forwarded-For: 203.0.113.7\r\n", "X-Forwarded-For: 203.0.113.8\r\n")
    with RawClient(server.port, extra=first), RawClient(server.port, extra=second):
        status, _, _ = refuse(server.port, upgrade_request(extra=first))
        assert status == 429
        opened = server.open_per_ip()
    assert opened == {"203.0.113.7": 1, "203.0.113.8": 1}


def test_a_closed_connection_no_longer_counts_against_its_ip(serve) -> None:
    app = echo_app()
    gone: list[gevent.event.Event] = []

    @app.on_disconnect
    def left(ctx: Context) -> None:
        gone[-1].set()  # the server forgets the connection right after, without yielding

    server = serve(app, max_connections_per_ip=1)
    for _ in range(3):
        gone.append(gevent.event.Event())
        with RawClient(server.port) as client:  # refused with 429 if the last one still counted
            client.send_close(1000)
            assert close_code(client.recv_until(CLOSE)) == 1000
            client.expect_eof()
        assert server.call(gone[-1].wait, 5)
        assert server.open_per_ip() == {}


def test_refused_authentications_count_against_the_handshake_rate(serve) -> None:
    handled: list[str] = []
    seen: list[AuthRequest] = []
    server = serve(auth_app(handled, seen), max_handshakes_per_second_per_ip=2)
    # Two guesses are refused by the app (401); the third is refused before the app sees it.
    assert refuse(server.port, upgrade_request(path="/?token=guess1"))[0] == 401
    assert refuse(server.port, upgrade_request(path="/?token=guess2"))[0] == 401
    assert closed_unanswered(server.port, upgrade_request(path="/?token=guess3"))
    assert len(seen) == 2 and handled == []


def test_authentication_sees_the_client_behind_a_trusted_proxy(serve) -> None:
    seen: list[AuthRequest] = []
    server = serve(auth_app([], seen), forwarded_allow_ips=["127.0.0.1"])
    forwarded = "X-Forwarded-For: 203.0.113.7\r\n"
    assert refuse(server.port, upgrade_request(path="/?token=nope", extra=forwarded))[0] == 401
    assert seen[-1].peer == ("203.0.113.7", 0)
