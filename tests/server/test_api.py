"""The server API under /_api/ (typed/api.py): real sockets, http.client against a
ServerThread, the effects seen by real WebSocket clients.

Clients are users by `?user=NAME` and join rooms (tests/support/api_app.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from typing import Any

import pytest

from examples.echo import app as echo_app
from websock_actors import ConnectionClosed
from websock_actors.client import connect
from websock_actors.errors import ConfigurationError
from websock_actors.server import EndpointOptions, Server
from websock_actors.server.opening import MAX_KEPT_REQUESTS
from websock_actors.testing import ServerThread

from ..support.api_app import api_app
from ..support.raw import read_until_eof, split_response, upgrade_request
from ..support.users_app import member, notice
from ..support.waits import wait_until

pytestmark = pytest.mark.timeout(30)

KEY = "s3cret-api-key"
BROADCAST = "/_api/broadcast"


def call(
    server: ServerThread, method: str, path: str, body: Any = None, *, key: str | None = KEY,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """One API request: the status, the headers (lower-cased) and the JSON answer (or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        text = response.read()
        answer: Any = text.decode()
        if response.getheader("Content-Type", "").startswith("application/json"):
            answer = json.loads(text)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
    finally:
        conn.close()






def test_without_a_key_the_api_is_off_and_answers_404() -> None:
    with ServerThread(api_app()) as server:
        body = {"room": "r", "message": {"type": "notice", "text": "x"}}
        assert call(server, "POST", "/_api/broadcast", body)[0] == 404
        assert call(server, "GET", "/_api/presence?room=r")[0] == 404


def test_a_key_for_an_app_that_is_not_typed_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="needs a typed App"):
        Server(echo_app, endpoints=EndpointOptions(api_key=KEY))
    with pytest.raises(ConfigurationError, match="may not be empty"):
        EndpointOptions(api_key=" ")


def test_the_key_is_required_and_compared() -> None:
    with ServerThread(api_app(), api_key=KEY) as server:
        status, headers, _ = call(server, "GET", "/_api/presence?room=r", key=None)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert call(server, "GET", "/_api/presence?room=r", key="wrong")[0] == 401
        assert call(server, "GET", "/_api/presence?room=r", key=KEY + "x")[0] == 401
        assert call(server, "GET", "/_api/presence?room=r")[0] == 200


def test_bad_requests_get_clear_statuses() -> None:
    with ServerThread(api_app(), api_key=KEY) as server:
        status, headers, _ = call(server, "GET", "/_api/broadcast")
        assert status == 405 and headers["allow"] == "POST"
        assert call(server, "POST", "/_api/nothing", {})[0] == 404
        assert call(server, "POST", "/_api/broadcast", raw=b"{not json")[0] == 400
        assert call(server, "GET", "/_api/presence")[0] == 400  # no room
        status, _, answer = call(server, "POST", BROADCAST, {"room": "r", "message": {"type": "notice"}})
        assert status == 422 and answer["error"][0]["loc"][-1] == "text"  # pydantic's errors
        status, _, answer = call(server, "POST", BROADCAST, {"room": "r", "message": {"type": "nope"}})
        assert status == 422 and "nope" in json.dumps(answer)
        assert call(server, "POST", "/_api/broadcast", {"message": {"type": "notice", "text": "x"}})[0] == 422
        assert call(server, "POST", "/_api/disconnect_user", {"identity": "ann", "code": 999})[0] == 422


def test_a_body_over_the_bound_is_413_and_chunked_is_refused() -> None:
    with ServerThread(api_app(), api_key=KEY, max_body_bytes=1000) as server:
        big = {"room": "r", "message": {"type": "notice", "text": "x" * 2000}}
        assert call(server, "POST", "/_api/broadcast", big)[0] == 413
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /_api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )  # fmt: skip
            assert sock.recv(100).startswith(b"HTTP/1.1 411 ")


def test_a_body_sent_in_pieces_is_read_whole() -> None:
    with ServerThread(api_app(), api_key=KEY) as server:
        ann = member(server, "ann", "lobby")
        body = json.dumps({"room": "lobby", "message": {"type": "notice", "text": "pieces"}}).encode()
        head = f"POST /_api/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head.encode() + body[:10])
            sock.sendall(body[10:])
            answer = b""
            while b"}" not in answer:
                chunk = sock.recv(4096)
                assert chunk
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"deliveries":1' in answer
        assert notice(ann) == "pieces"
        ann.close()


def test_each_endpoint_does_what_it_says() -> None:
    with ServerThread(api_app(), api_key=KEY) as server:
        ann1, ann2 = member(server, "ann", "lobby"), member(server, "ann")
        bob = member(server, "bob", "lobby")
        status, _, answer = call(server, "GET", "/_api/presence?room=lobby")
        assert status == 200 and answer == {"room": "lobby", "presence": ["ann", "bob"]}
        message = {"type": "notice", "text": "to the lobby"}
        status, _, answer = call(server, "POST", "/_api/broadcast", {"room": "lobby", "message": message})
        assert (status, answer) == (200, {"deliveries": 2})
        assert notice(ann1) == notice(bob) == "to the lobby"
        message = {"type": "notice", "text": "to ann"}
        body = {"identity": "ann", "message": message}
        status, _, answer = call(server, "POST", "/_api/send_to_user", body)
        assert (status, answer) == (200, {"deliveries": 2})
        assert notice(ann1) == notice(ann2) == "to ann"
        status, _, answer = call(
            server, "POST", "/_api/disconnect_user", {"identity": "ann", "code": 4003, "reason": "bye"}
        )
        assert (status, answer) == (200, {"closed": 2})
        for ws in (ann1, ann2):
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=5)
            assert (ws.close_code, ws.close_reason) == (4003, "bye")
        bob.request({"type": "tell", "to": "nobody", "text": "-"})  # bob is still connected
        bob.close()


def test_past_the_rate_429_with_retry_after() -> None:
    with ServerThread(api_app(), api_key=KEY, api_rate=0.5, api_burst=3) as server:
        statuses = [call(server, "GET", "/_api/presence?room=r")[0] for _ in range(3)]
        assert statuses == [200, 200, 200]
        status, headers, _ = call(server, "GET", "/_api/presence?room=r")
        assert status == 429 and int(headers["retry-after"]) >= 1
        assert call(server, "GET", "/_api/presence?room=r", key="wrong")[0] == 401  # not counted first


# -- keep-alive: one connection carries many requests ----------------------------------------


def api_request(
    method: str, path: str, body: Any = None, *, key: str | None = KEY, extra: str = "",
    version: str = "HTTP/1.1",
) -> bytes:  # fmt: skip
    """A raw API request; `extra` adds header lines ending in CRLF."""
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} {version}\r\nHost: x\r\n{extra}"
    if key is not None:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


class RawHttp:
    """A raw socket speaking HTTP/1.1: requests written as they are, answers read by their
    Content-Length (so an answer that closes the connection is told from one that does not)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small writes go at once
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the server closed the connection; unread: {self.buffer[:200]!r}"
        self.buffer += chunk

    def answer(self) -> tuple[int, dict[str, str], Any]:
        """The next answer: status, headers (lower-cased names), the JSON body."""
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, headers, _ = split_response(head + b"\r\n\r\n")
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, json.loads(body) if body.startswith(b"{") else body

    def closed(self) -> bool:
        """Whether the server closes the connection with nothing more sent (a socket timeout
        propagates: the connection stayed open)."""
        rest = self.buffer + read_until_eof(self.sock)
        assert rest == b"", rest[:200]
        return True

    def close(self) -> None:
        self.sock.close()


def test_fifty_requests_on_one_connection_are_each_answered() -> None:
    with ServerThread(api_app(), api_key=KEY) as server:
        ann = member(server, "ann", "lobby")
        http = RawHttp(server.port)
        texts = [f"n{i}" for i in range(50)]
        requests = [
            api_request("POST", BROADCAST, {"room": "lobby", "message": {"type": "notice", "text": text}})
            if i % 2 else api_request("GET", "/_api/presence?room=lobby")
            for i, text in enumerate(texts)
        ]  # fmt: skip
        http.send(b"".join(requests[:20]))  # pipelined: 20 in one write, none lost
        answers = [http.answer() for _ in range(20)]
        for request in requests[20:]:  # then one at a time, the body in two writes
            http.send(request[:-7])
            http.send(request[-7:])
            answers.append(http.answer())
        assert [status for status, _, _ in answers] == [200] * 50
        assert all(headers["connection"] == "keep-alive" for _, headers, _ in answers)
        assert [body for _, _, body in answers[1::2]] == [{"deliveries": 1}] * 25
        assert answers[0][2] == {"room": "lobby", "presence": ["ann"]}
        assert [notice(ann) for _ in range(25)] == texts[1::2]  # each broadcast once, in order
        assert server.actor_count() == 2  # ann's and the one API connection
        http.close()
        ann.close()


def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    with ServerThread(api_app(), api_key=KEY) as server:
        http = RawHttp(server.port)
        http.send(api_request("GET", "/_api/presence?room=r"))
        assert http.answer()[1]["connection"] == "keep-alive"
        http.send(api_request("GET", "/_api/presence?room=r", extra="Connection: close\r\n"))
        status, headers, _ = http.answer()
        assert (status, headers["connection"]) == (200, "close")
        assert http.closed()
        for extra, kept in (("", False), ("Connection: keep-alive\r\n", True)):
            http = RawHttp(server.port)
            http.send(api_request("GET", "/_api/presence?room=r", extra=extra, version="HTTP/1.0"))
            assert http.answer()[1]["connection"] == ("keep-alive" if kept else "close")
            if kept:
                http.send(api_request("GET", "/_api/presence?room=r", version="HTTP/1.0"))
                assert http.answer()[1]["connection"] == "close"
            assert http.closed()


def test_an_idle_kept_connection_is_closed_after_the_handshake_timeout() -> None:
    with ServerThread(api_app(), api_key=KEY, handshake_timeout=0.5) as server:
        http = RawHttp(server.port)
        http.send(api_request("GET", "/_api/presence?room=r"))
        status, headers, _ = http.answer()
        assert (status, headers["keep-alive"]) == (200, "timeout=1")
        http.send(api_request("GET", "/_api/presence?room=r"))  # a second one is still read
        assert http.answer()[0] == 200
        started = time.monotonic()
        assert http.closed()  # closed without a word (no 408 to a request never sent)
        assert 0.3 < time.monotonic() - started < 5
        assert server.wait_all_gone()


def test_a_kept_connection_may_upgrade_after_its_requests() -> None:
    with ServerThread(api_app(), api_key=KEY, max_handshakes=1) as server:
        http = RawHttp(server.port)
        http.send(api_request("GET", "/_api/presence?room=r"))
        assert http.answer()[1]["connection"] == "keep-alive"
        http.send(upgrade_request("/?user=ann"))
        while b"\r\n\r\n" not in http.buffer:
            http._read()
        assert http.buffer.startswith(b"HTTP/1.1 101 ")
        assert server.call(lambda: len(server.server.connections)) == 1  # type: ignore[union-attr]
        bob = member(server, "bob")  # the one slot is free
        admission = server.server.admission  # type: ignore[union-attr]
        assert server.call(lambda: admission.handshaking) == 0  # given back once, not twice
        bob.close()
        http.close()


def test_a_stopping_server_closes_an_idle_kept_connection_at_once() -> None:
    server = ServerThread(api_app(), api_key=KEY).start()
    try:
        http = RawHttp(server.port)
        http.send(api_request("GET", "/_api/presence?room=r"))
        assert http.answer()[1]["connection"] == "keep-alive"
        started = time.monotonic()
        server.stop()
        assert http.closed() and time.monotonic() - started < 3  # not after the idle timeout
    finally:
        server.stop()


def test_framing_errors_and_a_wrong_key_close_the_connection() -> None:
    with ServerThread(api_app(), api_key=KEY, max_body_bytes=1000) as server:
        big = {"room": "r", "message": {"type": "notice", "text": "x" * 2000}}
        wrong_key = api_request("GET", "/_api/presence?room=r", key="wrong")
        for bad, status in ((api_request("POST", BROADCAST, big), 413), (wrong_key, 401)):
            http = RawHttp(server.port)
            http.send(api_request("GET", "/_api/presence?room=r"))
            assert http.answer()[0] == 200  # kept alive
            http.send(bad)
            answered, headers, _ = http.answer()
            assert (answered, headers["connection"]) == (status, "close")
            assert http.closed()
        http = RawHttp(server.port)  # an answer with a body that is not read: the same
        http.send(api_request("POST", BROADCAST, {"room": "r", "message": {}}))  # 422: read whole
        assert http.answer()[1]["connection"] == "keep-alive"
        http.send(b"POST /_api/broadcast HTTP/1.1\r\nContent-Length: x\r\n\r\n")
        assert http.answer()[0] == 400
        assert http.closed()


def test_idle_kept_connections_hold_no_handshake_slot() -> None:
    with ServerThread(api_app(), api_key=KEY, max_handshakes=2) as server:
        kept = []
        for _ in range(4):  # one after the other: two slots, each given back after its answer
            http = RawHttp(server.port)
            http.send(api_request("GET", "/_api/presence?room=r"))
            assert http.answer()[1]["connection"] == "keep-alive"
            kept.append(http)
        ann = member(server, "ann", "lobby")  # an upgrade still finds a slot
        admission = server.server.admission  # type: ignore[union-attr]
        assert server.call(lambda: admission.handshaking) == 0
        for http in kept:  # and the kept ones are still served
            http.send(api_request("GET", "/_api/presence?room=lobby"))
            assert http.answer()[2] == {"room": "lobby", "presence": ["ann"]}
            http.close()
        ann.close()


def test_a_connection_carries_at_most_max_kept_requests() -> None:
    with ServerThread(api_app(), api_key=KEY, api_rate=1e9, api_burst=10**6) as server:
        http = RawHttp(server.port, timeout=30)
        one = api_request("GET", "/_api/presence?room=r")
        sender = threading.Thread(target=http.send, args=(one * (MAX_KEPT_REQUESTS + 5),), daemon=True)
        sender.start()
        connections = [http.answer()[1]["connection"] for _ in range(MAX_KEPT_REQUESTS)]
        assert connections[:-1] == ["keep-alive"] * (MAX_KEPT_REQUESTS - 1) and connections[-1] == "close"
        with contextlib.suppress(ConnectionResetError):  # the 5 past the bound are not answered
            http.buffer = b""
            assert http.closed()
        http.close()


# -- numbered rooms, idempotency keys, sessions in grace ------------------------------------


def test_a_numbered_room_answers_seq_and_epoch_a_plain_room_deliveries_only() -> None:
    with ServerThread(api_app(resume=True), api_key=KEY) as server:
        ann = member(server, "ann", "lobby")
        answers = []
        for text in ("one", "two"):
            body = {"room": "lobby", "message": {"type": "notice", "text": text}}
            status, _, answer = call(server, "POST", BROADCAST, body)
            assert status == 200 and answer.keys() == {"deliveries", "seq", "epoch"}, answer
            answers.append(answer)
            got = ann.recv_json(timeout=5)
            assert (got["text"], got["seq"], got["epoch"]) == (text, answer["seq"], answer["epoch"])
        assert answers[0]["deliveries"] == 1 and answers[1]["seq"] == answers[0]["seq"] + 1
        assert answers[0]["epoch"] == answers[1]["epoch"] != ""
        ann.close()
    with ServerThread(api_app(), api_key=KEY) as server:
        body = {"room": "lobby", "message": {"type": "notice", "text": "plain"}}
        assert call(server, "POST", BROADCAST, body)[2] == {"deliveries": 0}


def keyed(server: ServerThread, path: str, body: Any, key: str) -> tuple[int, Any]:
    http = RawHttp(server.port)
    try:
        http.send(api_request("POST", path, body, extra=f"Idempotency-Key: {key}\r\n"))
        status, _, answer = http.answer()
        return status, answer
    finally:
        http.close()


def test_an_idempotency_key_is_done_once() -> None:
    with ServerThread(api_app(), api_key=KEY) as server:
        ann, bob = member(server, "ann", "lobby"), member(server, "bob")
        once = {"room": "lobby", "message": {"type": "notice", "text": "once"}}
        assert keyed(server, BROADCAST, {"room": "lobby", "message": {}}, "k1")[0] == 422  # not taken
        assert keyed(server, BROADCAST, once, "k1") == (200, {"deliveries": 1})
        assert keyed(server, BROADCAST, once, "k1") == (200, {"duplicate": True})
        assert keyed(server, BROADCAST, once, "k2") == (200, {"deliveries": 1})
        assert notice(ann) == notice(ann) == "once"  # k1's, then k2's
        to_ann = {"identity": "ann", "message": {"type": "notice", "text": "marker"}}
        assert keyed(server, "/_api/send_to_user", to_ann, "k3") == (200, {"deliveries": 1})
        assert keyed(server, "/_api/send_to_user", to_ann, "k3") == (200, {"duplicate": True})
        assert notice(ann) == "marker"  # and no repeat of "once" before it
        kick = {"identity": "bob", "code": 4001}
        assert keyed(server, "/_api/disconnect_user", kick, "k4") == (200, {"closed": 1})
        assert keyed(server, "/_api/disconnect_user", kick, "k4") == (200, {"duplicate": True})
        assert keyed(server, BROADCAST, once, "x" * 201)[0] == 400
        assert keyed(server, BROADCAST, once, "x" * 200) == (200, {"deliveries": 1})
        assert notice(ann) == "once"
        with pytest.raises(ConnectionClosed):
            while True:
                bob.recv(timeout=5)
        ann.close()


def test_disconnect_user_ends_a_session_in_its_grace() -> None:
    app = api_app(resume=True)
    with ServerThread(app, api_key=KEY) as server:
        ann, bob = member(server, "ann", "lobby"), member(server, "bob", "lobby")
        token = ann.session
        assert token is not None
        ann.abort()  # the transport is gone: the session waits for its resume
        graces = app.resumption.graces  # type: ignore[union-attr]
        wait_until(lambda: server.call(lambda: len(graces.running)) == 1, 5, "ann's session in its grace")
        status, _, answer = call(server, "POST", "/_api/disconnect_user", {"identity": "ann"})
        assert (status, answer) == (200, {"closed": 0})
        assert not server.call(lambda: graces.running)  # ended by the answer, not later
        with connect(f"{server.url}?user=ann") as again:
            answer = again.request({"type": "resume", "session": token, "rooms": {}})
            assert answer["restored"] is False, answer
        status, _, answer = call(server, "GET", "/_api/presence?room=lobby")
        assert answer["presence"] == ["bob"]  # she left the room at once, not after the grace
        bob.close()
