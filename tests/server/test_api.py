"""The server API under /_api/ (typed/api.py): real sockets, http.client against a
ServerThread, the effects seen by real WebSocket clients.

Clients are users by `?user=NAME` and join rooms (tests/support/api_app.py).
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

import pytest

from examples.echo import app as echo_app
from websock_actors import ConnectionClosed
from websock_actors.errors import ConfigurationError
from websock_actors.server import EndpointOptions, Server
from websock_actors.testing import ServerThread

from ..support.api_app import api_app
from ..support.users_app import member, notice

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
