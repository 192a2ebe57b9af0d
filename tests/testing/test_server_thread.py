"""websock_actors.testing.ServerThread's hooks: a look at the server's state from the test's
thread, each read in the server's hub, and the plugin's `websock_server` fixture."""

from __future__ import annotations

import socket
import threading

import pytest
from websockets.sync.client import connect

from examples.echo import app as echo_app
from websock_actors import WebSocketApp
from websock_actors.testing import ServerThread

from ..support.waits import wait_until


def test_the_pytest_plugin_server_fixture(websock_server) -> None:
    server = websock_server(echo_app)
    assert isinstance(server, ServerThread) and server.url == f"ws://127.0.0.1:{server.port}/"
    with connect(server.url) as ws:
        ws.send('{"type": "x"}')
        assert ws.recv(timeout=5) == '{"type": "x"}'


def test_call_runs_in_the_servers_hub_and_raises_what_failed(websock_server) -> None:
    server = websock_server(WebSocketApp())
    assert server.call(threading.get_ident) != threading.get_ident()
    with pytest.raises(ZeroDivisionError):
        server.call(lambda: 1 // 0)


def test_actor_count_counts_handshaking_sockets_and_wait_all_gone_sees_them_leave(websock_server) -> None:
    server = websock_server(WebSocketApp(), handshake_timeout=30)
    assert server.actor_count() == 0
    assert server.wait_all_gone(0.1)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    wait_until(lambda: server.actor_count() == 2, 5, "two sockets in their handshake")
    assert not server.wait_all_gone(0.1)
    for sock in held:
        sock.close()
    assert server.wait_all_gone(5)
    assert server.actor_count() == 0


def test_open_per_ip_counts_admitted_connections_under_a_cap(websock_server) -> None:
    capped = websock_server(WebSocketApp(), max_connections_per_ip=5)
    uncapped = websock_server(WebSocketApp())
    assert capped.open_per_ip() == {}
    with connect(capped.url), connect(capped.url), connect(uncapped.url):
        assert capped.open_per_ip() == {"127.0.0.1": 2}
        assert uncapped.open_per_ip() == {}
    assert wait_until(lambda: capped.open_per_ip() == {}, 5, "the closed connections to leave")


def test_join_returns_once_a_stop_begun_in_the_hub_has_finished(websock_server) -> None:
    server = websock_server(WebSocketApp())
    assert not server.join(0.05)
    server.call(server.server.stop)
    assert server.join(10)
    assert server.server.stopped


def test_the_looks_need_a_started_thread() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        ServerThread(WebSocketApp()).actor_count()
