"""Where a `--redis` URL (scale/redis_urls.py) becomes gevent connections: `connector(url)`,
and everything a backplane talks to Redis with: `RedisClients.of(url, ...)`.

For `redis+cluster://` the clients route by slot (scale/redis_cluster_io.py,
redis_cluster_subscriber.py) over one `ClusterMap`, and rooms are named with hash tags
(scale/redis_keys.py); for the other kinds, one server's clients.

For `redis://` a connection to the one server. For `redis+sentinel://` a
`SentinelMasterConnection`: every new connection asks the sentinels (the one that answered
last first) for the master's address, then checks with ROLE that the server is the master.
A failover is thus followed by reconnecting: the old master's connections break (or get
READONLY, which scale/redis_io.py treats as broken), and the next ones go to the new one.
redis-py's own Sentinel pool is not used here for the reasons of redis_io.py (threading
locks, sleeping retries); the Emitter, outside gevent, uses it (redis_urls.sync_client).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigurationError
from .redis_cluster import ClusterMap
from .redis_cluster_io import ClusterCommandPool, ClusterPublisher
from .redis_cluster_subscriber import ClusterSubscriber
from .redis_io import (
    MAX_BACKOFF,
    REDIS_FAILURES,
    CommandPool,
    Commands,
    Connect,
    GeventRedisConnection,
    Publisher,
    Publishes,
    Waitable,
    error_text,
)
from .redis_keys import Keyspace
from .redis_subscriber import Subscriber
from .redis_urls import RedisTarget, parse_redis_url

__all__ = [
    "SENTINEL_BACKOFF", "MakeSubscriber", "RedisClients", "SentinelMasterConnection", "Subscribes",
    "connection_options", "connector", "reconnect_backoff",
]  # fmt: skip

# The longest pause between reconnects through Sentinel: an attempt first asks a sentinel,
# which is cheap, and a failover is over in seconds; the nodes should not sleep through
# most of a backoff step after it.
SENTINEL_BACKOFF = 1.0


class SentinelMasterConnection(GeventRedisConnection):
    """A connection to the master the sentinels name now, checked with ROLE once connected
    (a sentinel may not have seen the failover yet): one that is not the master fails like
    a refused connection, and its owner tries again later."""

    def __init__(self, *, sentinels: list[tuple[str, int]], master: str, **kwargs: Any) -> None:
        super().__init__(host="", **kwargs)
        self.sentinels = sentinels  # shared by the connections of one URL: who answered is first
        self.master = master

    def _connect(self) -> Any:
        self.host, self.port = self._locate()
        return super()._connect()

    def on_connect_check_health(self, check_health: bool = True) -> None:
        """After the handshake (AUTH, SELECT): the role. redis-py's `connect` calls this
        one (not `on_connect`), and disconnects when it raises."""
        super().on_connect_check_health(check_health=check_health)
        self.send_command("ROLE")
        role = self.read_response()
        if not role or role[0] != b"master":
            raise redis.ConnectionError(f"{self.host}:{self.port} is not the master of {self.master!r} yet")

    def _locate(self) -> tuple[str, int]:
        failures = []
        for address in list(self.sentinels):
            sentinel = GeventRedisConnection(
                host=address[0], port=address[1], socket_connect_timeout=self.socket_connect_timeout,
                socket_timeout=self.socket_connect_timeout, retry=Retry(NoBackoff(), 0), protocol=2,
            )  # fmt: skip
            try:
                sentinel.send_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
                reply = sentinel.read_response()
            except REDIS_FAILURES as exc:
                failures.append(f"{address[0]}:{address[1]}: {error_text(exc)}")
                continue
            finally:
                sentinel.disconnect()
            if reply:
                self.sentinels.remove(address)
                self.sentinels.insert(0, address)
                return reply[0].decode(), int(reply[1])
            failures.append(f"{address[0]}:{address[1]} knows no master {self.master!r}")
        raise redis.ConnectionError(f"no sentinel named the master: {'; '.join(failures)}")


def connector(url: str, *, connect_timeout: float, timeout: float | None) -> Connect:
    """How to connect to what `url` names (see scale/redis_urls.py); ConfigurationError for
    a URL of another form."""
    target = parse_redis_url(url)
    if target.cluster:
        raise ConfigurationError(f"one server's URL is needed here, not the cluster {target.shown!r}")
    options = _options(target, connect_timeout=connect_timeout, timeout=timeout)
    if target.sentinel:
        sentinels = list(target.sentinels)
        return partial(SentinelMasterConnection, sentinels=sentinels, master=target.master, **options)
    return partial(GeventRedisConnection, **options)


def reconnect_backoff(url: str) -> float:
    """The longest pause between two reconnects for `url` (see SENTINEL_BACKOFF)."""
    return SENTINEL_BACKOFF if parse_redis_url(url).sentinel else MAX_BACKOFF


def connection_options(url: str, *, connect_timeout: float, timeout: float | None) -> dict[str, Any]:
    """`GeventRedisConnection` keyword arguments for `redis://[user:password@]host[:port][/db]`."""
    target = parse_redis_url(url)
    if target.sentinel or target.cluster:
        raise ConfigurationError(f"a redis:// URL is needed here, not {target.shown!r}")
    return _options(target, connect_timeout=connect_timeout, timeout=timeout)


def _options(target: RedisTarget, *, connect_timeout: float, timeout: float | None) -> dict[str, Any]:
    options = dict(target.kwargs)
    options.update(
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        # RESP2: pub/sub messages are plain replies (redis-py 8 speaks RESP3 by default and
        # then hands pushes to its own handler, out of reach of a raw connection's reader)
        protocol=2,
    )
    return options


class Subscribes(Protocol):
    """A node's channels of one kind (rooms, users): a `Subscriber`, or a cluster's."""

    linger: float
    join_timeout: float
    ping_interval: float
    max_backoff: float

    @property
    def connected(self) -> Waitable: ...

    @property
    def subscribed(self) -> set[str]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def want(self, room: str) -> None: ...

    def release(self, room: str) -> None: ...


class MakeSubscriber(Protocol):
    def __call__(
        self,
        channel_prefix: bytes,
        *,
        on_message: Callable[[str, bytes], None],
        on_subscribed: Callable[[str], None],
        on_unsubscribed: Callable[[str], None],
        rooms_wanted: Callable[[], Collection[str]],
        control: bytes = b"",
        on_control: Callable[[bytes], None] | None = None,
        linger: float = 2.0,
        join_timeout: float = 5.0,
        ping_interval: float = 1.0,
        max_backoff: float = MAX_BACKOFF,
    ) -> Subscribes: ...


@dataclass(frozen=True)
class RedisClients:
    """What a backplane talks to Redis with, for its URL's kind."""

    keys: Keyspace  # key and channel names
    pool: Commands  # joins, leaves, presence, stream reads
    beats: Commands  # heartbeats and reaping, with short timeouts
    publisher: Publishes
    subscriber: MakeSubscriber  # channels of one kind (the rooms', the users')
    backoff: float  # the longest pause between reconnects

    @classmethod
    def of(
        cls,
        url: str,
        prefix: str,
        *,
        pool_size: int,
        beat_timeout: float,
        on_lost: Callable[[int, BaseException], None],
        on_refused: Callable[[BaseException], None],
    ) -> RedisClients:
        target = parse_redis_url(url)
        if target.cluster:
            cluster = ClusterMap(target.seeds, _options(target, connect_timeout=2.0, timeout=5.0))
            pool = ClusterCommandPool(cluster, pool_size)
            beats = ClusterCommandPool(cluster, 1, timeout=beat_timeout)
            publisher = ClusterPublisher(cluster, pool, on_lost, on_refused, SENTINEL_BACKOFF)
            keys = Keyspace(prefix, cluster=True)
            sharded: MakeSubscriber = partial(ClusterSubscriber, cluster, keys)
            return cls(keys, pool, beats, publisher, sharded, SENTINEL_BACKOFF)
        connect = connector(url, connect_timeout=2.0, timeout=5.0)
        beat_connect = connector(url, connect_timeout=beat_timeout, timeout=beat_timeout)
        backoff = reconnect_backoff(url)  # shorter through Sentinel: a failover is short
        subscribe: MakeSubscriber = partial(Subscriber, connect)
        return cls(
            Keyspace(prefix),
            CommandPool(connect, pool_size),
            CommandPool(beat_connect, 1),
            Publisher(connect, on_lost, on_refused, backoff),
            subscribe,
            backoff,
        )
