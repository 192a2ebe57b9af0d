"""A WSGI (Flask) app beside the typed WebSocket app on one port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

from websock_actors import WebSocketApp
from websock_actors.compat import WSGIMount

from ..support.raw import raw_exchange, status_of, upgrade_request

flask_app = pytest.importorskip("examples.flask_app")


def test_flask_serves_http_and_the_typed_app_serves_websockets(serve) -> None:
    server = serve(flask_app.app)
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(base + "/", timeout=5) as response:
        assert response.status == 200
        assert "Served by Flask" in response.read().decode()
    with urllib.request.urlopen(base + "/health", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "/nope", timeout=5)
    assert missing.value.code == 404  # Flask's own 404
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send(json.dumps({"type": "greet", "id": 1, "name": "Ada"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "greeting", "id": 1, "text": "Hello, Ada!"}


def test_upgrade_elsewhere_and_request_bodies_get_clear_errors(serve) -> None:
    server = serve(flask_app.app)
    assert status_of(raw_exchange(server.port, upgrade_request(path="/other"))) == 404
    post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    assert status_of(raw_exchange(server.port, post)) == 413


def echo_environ(environ: dict[str, object], start_response: object) -> list[bytes]:
    """A bare WSGI app that answers with the CGI variables it was given."""
    keys = ("REMOTE_ADDR", "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT")
    shown = {key: environ.get(key) for key in keys}
    shown["headers"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json")])  # type: ignore[operator]
    return [body]


def test_the_environ_has_the_peer_a_v6_host_and_no_spoofable_underscores(serve) -> None:
    server = serve(WSGIMount(echo_environ, WebSocketApp()))
    request = (
        b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\nX-Remote-User: alice\r\nX_Remote_User: admin\r\n\r\n"
    )
    answer = raw_exchange(server.port, request)
    assert status_of(answer) == 200
    shown = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert shown["REMOTE_ADDR"] == "127.0.0.1" and int(shown["REMOTE_PORT"]) > 0
    assert (shown["SERVER_NAME"], shown["SERVER_PORT"]) == ("::1", "8000")
    assert shown["headers"]["HTTP_X_REMOTE_USER"] == "alice"  # the underscore spelling is dropped
    head = raw_exchange(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    get = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    body = get.partition(b"\r\n\r\n")[2]
    assert head.endswith(b"\r\n\r\n") and f"Content-Length: {len(body)}".encode() in head


@pytest.mark.parametrize("value", [b"a\nb", b"a\rb", b"a\x00b", b"a\x7fb"])
def test_control_characters_in_header_values_get_400(serve, value: bytes) -> None:
    server = serve(WSGIMount(echo_environ, WebSocketApp()))
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: " + value + b"\r\n\r\n"
    assert status_of(raw_exchange(server.port, request)) == 400
