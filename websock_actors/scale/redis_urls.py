"""What a `--redis` URL names, in one place: one server, or a master found through Sentinel.

    redis://[[user]:password@]HOST[:PORT][/DB]
    redis+sentinel://[[user]:password@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]
    redis+cluster://[[user]:password@]HOST:PORT[,HOST:PORT...][/]

`parse_redis_url` turns a URL into a `RedisTarget`: the keyword arguments of a redis-py
connection (db, credentials, timeouts are added by the caller) and, for Sentinel, the
sentinels' addresses and the master's name. The credentials are the master's; the sentinels
are asked without any. For a cluster, the seeds: any nodes of it, from which the others are
found (a cluster has database 0 only). The nodes (scale/redis_io.py) make gevent connections
from it; an Emitter, which imports no gevent, gets a thread-safe redis-py client from
`sync_client`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import redis
import redis.cluster
import redis.sentinel
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry

from ..errors import ConfigurationError
from ..protocol.redact import mask_url

__all__ = ["CLUSTER_SCHEME", "SENTINEL_SCHEME", "RedisTarget", "parse_redis_url", "sync_client"]

SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"


@dataclass(frozen=True)
class RedisTarget:
    """A parsed `--redis` URL: `kwargs` for a redis-py connection to the server (for
    Sentinel: all but its host and port), and for Sentinel its sentinels and master name."""

    kwargs: dict[str, Any]
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    shown: str = field(default="", compare=False)  # the URL, password masked
    seeds: tuple[tuple[str, int], ...] = ()  # a cluster's nodes named in the URL

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def cluster(self) -> bool:
        return bool(self.seeds)


def parse_redis_url(url: str) -> RedisTarget:
    """`url` parsed; ConfigurationError (naming the URL, password masked) when it is not one
    of the forms in the module's docstring."""
    shown = mask_url(url)
    if url.startswith(SENTINEL_SCHEME):
        return _parse_sentinel(url, shown)
    if url.startswith(CLUSTER_SCHEME):
        return _parse_cluster(url, shown)
    try:
        kwargs: dict[str, Any] = parse_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {shown!r}: {exc}") from None
    if "connection_class" in kwargs or "path" in kwargs:  # rediss:// or unix://
        supported = "redis://HOST:PORT/DB, redis+sentinel://HOST:PORT,.../MASTER/DB and redis+cluster://HOST:PORT,.../"
        raise ConfigurationError(f"only {supported} URLs are supported, not {shown!r}")
    return RedisTarget(kwargs, shown=shown)


def _addresses(url: str, scheme: str, shown: str) -> tuple[dict[str, Any], list[tuple[str, int]], str]:
    """The credentials, the HOST:PORT list and the path of a URL of several addresses."""
    location, _, path = url[len(scheme) :].partition("/")
    kwargs: dict[str, Any] = {}
    if "@" in location:
        userinfo, _, location = location.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if user:
            kwargs["username"] = unquote(user)
        if colon:
            kwargs["password"] = unquote(password)
    addresses = []
    for item in location.split(","):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"bad address {item!r} in {shown!r}: HOST:PORT expected")
        addresses.append((host.strip("[]"), int(port)))
    return kwargs, addresses, path


def _parse_cluster(url: str, shown: str) -> RedisTarget:
    kwargs, seeds, path = _addresses(url, CLUSTER_SCHEME, shown)
    if path.strip("/"):
        raise ConfigurationError(f"bad cluster URL {shown!r}: a cluster has no database (redis+cluster://HOST:PORT,.../)")
    return RedisTarget(kwargs, shown=shown, seeds=tuple(seeds))


def _parse_sentinel(url: str, shown: str) -> RedisTarget:
    kwargs, sentinels, path = _addresses(url, SENTINEL_SCHEME, shown)
    master, _, db = path.partition("/")
    master = unquote(master)
    if not master or "?" in path or "#" in path:
        raise ConfigurationError(f"bad Sentinel URL {shown!r}: redis+sentinel://HOST:PORT,.../MASTER_NAME/DB")
    db = db.rstrip("/")
    if db and not db.isdigit():
        raise ConfigurationError(f"bad database {db!r} in {shown!r}: a number expected")
    kwargs["db"] = int(db or 0)
    return RedisTarget(kwargs, tuple(sentinels), master, shown)


def sync_client(url: str, timeout: float) -> redis.Redis | redis.cluster.RedisCluster:
    """A thread-safe redis-py client for `url` (no retries: a failure raises within about
    `timeout`); for Sentinel, one whose pool asks the sentinels for the master again after
    a connection failure or a READONLY reply (redis-py's SentinelConnectionPool)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if url.startswith(CLUSTER_SCHEME):
        target = parse_redis_url(url)
        nodes = [redis.cluster.ClusterNode(host, port) for host, port in target.seeds]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **options, **target.kwargs)
    if not url.startswith(SENTINEL_SCHEME):  # redis://, and redis-py's rediss:// and unix://
        return redis.Redis.from_url(url, **options)
    target = parse_redis_url(url)
    sentinel = redis.sentinel.Sentinel(
        list(target.sentinels), sentinel_kwargs=dict(options), **options, **target.kwargs
    )
    client: redis.Redis = sentinel.master_for(target.master)
    return client
