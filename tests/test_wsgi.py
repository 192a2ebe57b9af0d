"""A WSGI (Flask) app beside the typed WebSocket app on one port."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

from .helpers import raw_exchange, status_of, upgrade_request

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
