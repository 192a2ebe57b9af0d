"""GET /healthz and /readyz on the WebSocket's port: liveness, and readiness that follows the
server's draining and the Redis backplane's connection (a real redis-server)."""

from __future__ import annotations

import threading

import pytest

from examples.echo import app as echo_app
from websock_actors import ConfigurationError, RedisBackplane, Server

from ..support.apps import fresh_chat_app as chat_app
from ..support.raw import RawClient, refuse
from ..support.waits import wait_until


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    status, _, body = refuse(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return status, body


def test_live_and_ready(serve) -> None:
    server = serve(echo_app)
    assert get(server.port, "/healthz") == (200, b"ok\n")
    assert get(server.port, "/readyz") == (200, b"ok\n")
    assert get(server.port, "/readyz", "HEAD")[0] == 200
    assert get(server.port, "/healthz?verbose=1")[0] == 200
    assert get(server.port, "/readyz", "POST")[0] != 200  # only GET and HEAD are health checks


def test_not_ready_while_draining(serve) -> None:
    server = serve(echo_app)
    stubborn = RawClient(server.port)  # never answers the close: the drain waits for it
    stopping = threading.Thread(target=server.call, args=(server.server.stop, 3.0), kwargs={"timeout": 10})
    stopping.start()
    try:
        wait_until(lambda: server.call(server.server.not_ready), 5, "the drain to start")
        assert server.call(server.server.not_ready) == "draining: the server is shutting down"
    finally:
        stubborn.sock.close()
        stopping.join(15)


def test_ready_follows_the_backplane(serve, redis_server) -> None:
    app = chat_app()
    backplane = RedisBackplane(redis_server.url)
    app.use_backplane(backplane)
    server = serve(app)
    wait_until(lambda: backplane.connected, 5, "the backplane to connect")
    assert get(server.port, "/readyz")[0] == 200
    redis_server.kill()
    wait_until(lambda: not backplane.connected, 5, "the backplane to notice")
    status, body = get(server.port, "/readyz")
    assert (status, body) == (503, b"the rooms' backplane (Redis) is unavailable\n")
    assert get(server.port, "/healthz")[0] == 200  # alive all the same
    redis_server.restart()
    wait_until(lambda: get(server.port, "/readyz")[0] == 200, 15, "ready again")


def test_health_can_be_turned_off(serve) -> None:
    server = serve(echo_app, health=False)
    assert get(server.port, "/healthz")[0] == 426  # a plain GET to a WebSocket endpoint


def test_the_servers_backplane_option() -> None:
    with pytest.raises(ConfigurationError, match="typed App"):
        Server(echo_app, backplane=RedisBackplane())
    app, backplane = chat_app(), RedisBackplane()
    Server(app, backplane=backplane)
    assert app.rooms is backplane and app.has_backplane
