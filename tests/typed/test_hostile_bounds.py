"""What a hostile client can make the server keep stays within the policy's bounds (docs/design.md,
"Bounds"): the CI-sized sibling of benchmarks/hostile_bounds.py, which measures memory and CPU.

- One connection cycling join and leave of distinct rooms leaves at most `retained_rooms`
  histories behind: in process (counted in the stream the rooms opened, and the limit's
  metric rises), and in Redis (`ZCARD wsa:retained` and the rooms' `wsa:seq:*` keys), where
  every history key expires after the retention.
- A join into a big room on a RedisBackplane answers the room's presence from the node's
  own copy: Redis's ZRANGE calls do not grow with the joins.

The replay bound of a resume has its regression test in tests/scale/test_delivery.py
(`test_replay_is_bounded`). Real sockets on 127.0.0.1, the chat demo (a fresh copy per
server), a real redis-server (`shared_redis`).
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest

from websock_actors import RedisBackplane
from websock_actors.client import ClientConnection, connect
from websock_actors.testing import ServerThread

from ..support.apps import fresh_chat_app as chat_app
from ..support.redis_server import SharedRedis
from ..support.waits import wait_until

pytestmark = pytest.mark.timeout(60)

CAP = 20  # retained_rooms: small, so that a few hundred rooms cycle through it many times
# history_ttl (s). In process: long enough that even a slow machine empties more than CAP
# rooms within it (the cap, not the retention, must be what drops them); in Redis: the
# shortest expiry it takes (whole seconds), where the cap is checked on the retained set.
LOCAL_RETENTION = 3.0
RETENTION = 1.0


@pytest.fixture
def started() -> Iterator[list[ServerThread]]:
    """Servers the test starts (appended to the list), stopped after it."""
    servers: list[ServerThread] = []
    yield servers
    for server in servers:
        server.stop()


def cycle(ws: ClientConnection, room: str) -> None:
    """Join and leave `room`, each waiting for its answer: the demo broadcasts member_joined
    and member_left, so the room gets a history that outlives its last member."""
    assert ws.request({"type": "join", "room": room, "name": "churner"})["type"] == "joined"
    assert ws.request({"type": "leave", "room": room})["type"] == "left"


def limit_hits(port: int, limit: str) -> float:
    """`websock_limit_hits_total{limit=...}` from GET /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf'^websock_limit_hits_total\{{limit="{limit}"\}} (\S+)$', text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


def redis_keys(redis: SharedRedis, pattern: str) -> list[bytes]:
    keys: list[bytes] = redis.command("KEYS", pattern)
    return keys


def command_calls(redis: SharedRedis, command: str) -> int:
    """Calls of `command` so far (INFO commandstats)."""
    stats = redis.command("INFO", "commandstats").decode()
    match = re.search(rf"^cmdstat_{command}:calls=(\d+),", stats, re.MULTILINE)
    return int(match.group(1)) if match else 0


# -- room churn: at most retained_rooms histories ---------------------------------------------


def test_room_churn_keeps_at_most_retained_rooms_histories_in_process(started: list[ServerThread]) -> None:
    app = chat_app(history_ttl=LOCAL_RETENTION, retained_rooms=CAP)
    server = ServerThread(app, metrics=True, ping_interval=None).start()
    started.append(server)
    assert app.resumption is not None and app.resumption.numbered is not None
    stream = app.resumption.numbered.stream

    def histories() -> int:
        return server.call(lambda: len(stream.logs))  # type: ignore[attr-defined]

    kept: list[int] = []
    with connect(server.url, max_queue=0) as ws:
        for i in range(10 * CAP):
            cycle(ws, f"c{i}")
            if i % 10 == 9:
                kept.append(histories())
        # every room is empty after its cycle: the cap holds whatever the rooms' names
        assert max(kept) <= CAP, kept
        assert kept[-1] == CAP, kept  # the cap, not the retention, was what dropped them
        hits = limit_hits(server.port, "retained_rooms")
        assert hits > 0
        assert hits == app.metrics()["websock_limit_hits_total"]["retained_rooms"]

        # After the retention, the next room that empties takes the expired histories with it.
        def swept() -> bool:
            cycle(ws, "poke")
            return histories() <= 1

        wait_until(swept, LOCAL_RETENTION + 5, "the histories to go after their retention")


def test_room_churn_keeps_at_most_retained_rooms_histories_in_redis(
    shared_redis: SharedRedis, started: list[ServerThread]
) -> None:
    app = chat_app(history_ttl=RETENTION, retained_rooms=CAP)
    app.use_backplane(RedisBackplane(shared_redis.url))
    server = ServerThread(app, ping_interval=None).start()
    started.append(server)
    retained: list[int] = []
    with connect(server.url, max_queue=0) as ws:
        for i in range(5 * CAP):
            cycle(ws, f"c{i}")
            if i % 10 == 9:
                retained.append(int(shared_redis.command("ZCARD", "wsa:retained")))
                # a room dropped by the cap has its keys deleted; the others wait for their expiry
                assert len(redis_keys(shared_redis, "wsa:seq:*")) <= CAP
                assert len(redis_keys(shared_redis, "wsa:history:*")) <= CAP
    assert max(retained) <= CAP, retained
    assert retained[-1] == CAP, retained
    wait_until(
        lambda: not redis_keys(shared_redis, "wsa:seq:*") and not redis_keys(shared_redis, "wsa:history:*"),
        RETENTION + 10,
        "every room's history keys to expire after the retention",
    )
    assert int(shared_redis.command("ZCARD", "wsa:retained")) <= CAP


# -- joins into a big room: presence from the node's copy -------------------------------------


@pytest.mark.timeout(90)
def test_joins_into_a_big_room_do_not_read_its_presence_from_redis(
    shared_redis: SharedRedis, started: list[ServerThread]
) -> None:
    members = 200
    joins = 50
    app = chat_app()
    app.use_backplane(RedisBackplane(shared_redis.url))
    server = ServerThread(app, ping_interval=None).start()
    started.append(server)
    conns: list[ClientConnection] = []
    try:
        # Nobody reads the members' sockets: the member_joined frames wait in the kernel's
        # buffers (max_queue=0 drops them if a request ever reads them).
        for i in range(members):
            ws = connect(server.url, max_queue=0)
            conns.append(ws)
            joined = ws.request({"type": "join", "room": "big", "name": f"m{i}"})
            assert len(joined["members"]) == i + 1
        # the node read the room's presence once, when it subscribed to the room
        assert command_calls(shared_redis, "zrange") >= 1
        before = command_calls(shared_redis, "zrange")
        with connect(server.url, max_queue=0) as churner:
            for i in range(joins):
                joined = churner.request({"type": "join", "room": "big", "name": f"churner{i}"})
                assert len(joined["members"]) == members + 1, joined["members"][-3:]
                assert joined["members"][-1] == f"churner{i}"
                assert churner.request({"type": "leave", "room": "big"})["type"] == "left"
        after = command_calls(shared_redis, "zrange")
        # One read at most could come from elsewhere (a heartbeat's resync after a hiccup);
        # one per join would be `joins`.
        assert after - before <= 1, (before, after)
    finally:
        for ws in conns:
            ws.abort()
