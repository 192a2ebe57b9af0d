"""The Redis fixtures themselves (tests/support/redis_server.py): a real redis-server per test, and
the shared one."""

from __future__ import annotations

import socket

import pytest
import redis

from .redis_server import RedisReplyError, RedisServer, SharedRedis, refuses


def test_starts_and_answers(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.command("PING") == "PONG"
    assert redis_server.command("SET", "key", "value") == "OK"
    assert redis_server.command("GET", "key") == b"value"
    assert redis_server.command("CONFIG", "GET", "save") == [b"save", b""]
    assert redis_server.command("CONFIG", "GET", "appendonly") == [b"appendonly", b"no"]
    with pytest.raises(RedisReplyError, match="unknown command"):
        redis_server.command("NO-SUCH-COMMAND")
    # redis-py (the backplane's client) talks to it too.
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.get("key") == b"value"
    finally:
        client.close()
    assert "Ready to accept connections" in redis_server.output()


def test_restart_keeps_the_port_and_forgets_the_data(redis_server: RedisServer) -> None:
    port, pid = redis_server.port, redis_server.pid
    redis_server.command("SET", "key", "value")
    redis_server.restart()
    assert (redis_server.port, redis_server.url) == (port, f"redis://127.0.0.1:{port}/0")
    assert redis_server.pid != pid
    assert redis_server.command("PING") == "PONG"
    assert redis_server.command("GET", "key") is None  # nothing persisted


def test_kill_makes_the_port_refuse_and_restart_brings_it_back(redis_server: RedisServer) -> None:
    port = redis_server.port
    # A client connected when it dies: the restart must bind the port all the same.
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"PING\r\n")
    assert client.recv(7) == b"+PONG\r\n"  # accepted and served
    redis_server.kill()
    assert client.recv(1) == b""  # the dead server's kernel closed it
    client.close()  # the server's end of it now waits in TIME_WAIT on the port
    assert not redis_server.running
    assert refuses(port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    redis_server.restart()
    assert redis_server.port == port and redis_server.command("PING") == "PONG"


def test_client_kill_pubsub(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe("room")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        assert redis_server.command("PUBLISH", "room", "hi") == 1
        assert redis_server.client_kill_pubsub() == 1
        assert redis_server.command("PUBSUB", "NUMSUB", "room") == [b"room", 0]
        assert redis_server.client_kill_pubsub() == 0
    finally:
        pubsub.close()
        client.close()


def test_stop_then_restart(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert refuses(redis_server.port)
    redis_server.restart()
    assert redis_server.command("PING") == "PONG"


@pytest.mark.parametrize("turn", [1, 2])
def test_the_shared_redis_is_empty_for_every_test(shared_redis: SharedRedis, turn: int) -> None:
    assert shared_redis.command("DBSIZE") == 0  # the other turn's key is gone
    assert shared_redis.command("SET", f"turn-{turn}", "x") == "OK"
    with pytest.raises(RuntimeError, match="shared"):
        shared_redis.kill()
    assert shared_redis.command("PING") == "PONG"


def test_without_redis_server_it_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    from . import redis_server as module

    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    monkeypatch.setattr(module.os.path, "isfile", lambda path: False)
    monkeypatch.delenv(module.REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        module.redis_server_executable()
    monkeypatch.setenv(module.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="WEBSOCK_ACTORS_REQUIRE_REDIS is set"):
        module.redis_server_executable()
