"""Rate limits of typed apps: token buckets per client, in total, per message type, for joins.

    App(rate_limit=RateLimit(rate=50, burst=100))          # every message of a client
    @app.handler(rate_limit=RateLimit(rate=5, burst=20))   # this message type, per client
    App(join_rate=RateLimit(rate=5, burst=100))            # ctx.join, per client

A bucket holds up to `burst` tokens and gains `rate` tokens a second; a message takes one
token from its client's total bucket and one from its type's bucket, or is answered
`rate_limited` (with `retry_after_ms`) without being validated. After `close_after` such
answers in a row, the connection is closed with 1008. The clock is `time.monotonic`.

A client is who `client_key` says: the identity `@app.authenticate` gave (a str or an
int), else the address (after trusted proxies; an IPv6 one by its /64), else the connection.
The connections of one client share its buckets, and the buckets outlive them in a
`ClientTable` until they would be full again: reconnecting refills nothing and keeps the
count of refusals in a row. The table is per process; with a `Leases` (the Redis backplane's)
each bucket's tokens come from a budget every process shares, leased a few at a time
(`LeasedBucket`), so a client spread over processes and hosts gets its rate once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from ..errors import BackplaneUnavailable, ConfigurationError, MessageError
from ..server.edge import DEFAULT_IPV6_PREFIX, ip_key

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = [
    "DEFAULT_JOIN_RATE",
    "MAX_IDLE_CLIENTS",
    "ClientLimits",
    "ClientTable",
    "LeasedBucket",
    "Leases",
    "RateLimit",
    "RateLimitKey",
    "RateLimited",
    "TokenBucket",
    "client_key",
    "rate_limit_key",
    "retry_after_ms",
]

# Whose buckets a connection spends: its client's (identity, else address) or its own.
RateLimitKey = Literal["client", "connection"]

# Clients without a connection whose buckets are kept (the oldest go first past it).
MAX_IDLE_CLIENTS = 100_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`rate` messages a second on average, `burst` at once (default: `rate`, at least 1);
    after `close_after` rejected messages in a row (None: never) the connection is closed 1008."""

    rate: float
    burst: int | None = None
    close_after: int | None = None

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ConfigurationError(f"RateLimit.rate must be above 0, not {self.rate!r}")
        if self.burst is not None and self.burst < 1:
            raise ConfigurationError(f"RateLimit.burst must be at least 1, not {self.burst!r}")
        if self.close_after is not None and self.close_after < 1:
            raise ConfigurationError(f"RateLimit.close_after must be at least 1, not {self.close_after!r}")

    @property
    def capacity(self) -> float:
        return float(self.burst if self.burst is not None else max(1, math.ceil(self.rate)))


# Joins a client may make: all of a connection's default 100 rooms at once, then 5 a second
# (each join may be news to every member of a large room).
DEFAULT_JOIN_RATE = RateLimit(rate=5, burst=100)


class RateLimited(MessageError):
    """A handler's `ctx.join` past the join rate: answered `rate_limited` with `retry_after_ms`."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__("rate_limited", detail)
        self.retry_after_ms = retry_after


class TokenBucket:
    """`capacity` tokens, refilled at `rate` a second; starts full."""

    __slots__ = ("capacity", "limit", "rate", "stamp", "tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.rate = limit.rate
        self.capacity = limit.capacity
        self.tokens = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.stamp = now

    def wait(self) -> float:
        """Seconds until a token is there (0 when one is), after `refill`."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def full_at(self) -> float:
        """When the bucket will be full again (its clock)."""
        return self.stamp + (self.capacity - self.tokens) / self.rate


class Leases(Protocol):
    """A budget shared by processes: `lease(name, rate, burst, want)` takes up to `want`
    tokens of the bucket `name` -> (granted, ms until the next one is there); raises
    BackplaneUnavailable when it cannot answer."""

    def lease(self, name: str, rate: float, burst: float, want: int) -> tuple[int, int]: ...


class LeasedBucket(TokenBucket):
    """A bucket spending tokens leased from a shared budget, `want` at a time (a tenth of a
    second's worth): asked only when empty, and not again before the budget has a token.
    While the budget cannot answer, it refills locally like a TokenBucket."""

    __slots__ = ("leases", "name", "retry_at", "want")

    def __init__(self, limit: RateLimit, now: float, leases: Leases, name: str) -> None:
        super().__init__(limit, now)
        self.tokens = 0.0
        self.leases = leases
        self.name = name
        self.retry_at = 0.0
        self.want = max(1, min(int(self.capacity), math.ceil(self.rate / 10)))

    def refill(self, now: float) -> None:
        if self.tokens >= 1.0 or now < self.retry_at:
            return
        try:
            granted, wait_ms = self.leases.lease(self.name, self.rate, self.capacity, self.want)
        except BackplaneUnavailable:
            TokenBucket.refill(self, now)
            return
        self.tokens += granted
        self.stamp = now
        self.retry_at = now + wait_ms / 1000

    def wait(self) -> float:
        ahead = self.retry_at - time.monotonic()  # what the budget said, or the local refill
        return ahead if ahead > 0 and self.tokens < 1.0 else TokenBucket.wait(self)


class ClientLimits:
    """One client's buckets: the total one (or None), one per limited message type, one for
    joins (made at the first); `rejected`: messages refused in a row; `connections`: its
    open connections here."""

    __slots__ = ("_join", "_types", "connections", "joins", "key", "leases", "rejected", "total", "types")

    def __init__(
        self,
        total: RateLimit | None,
        types: dict[str, RateLimit],
        join: RateLimit | None = None,
        now: float | None = None,
        key: Hashable = None,
        leases: Leases | None = None,
    ) -> None:
        if now is None:
            now = time.monotonic()
        self.key = key
        self.leases = leases
        self.total = self.bucket(total, now, "total") if total is not None else None
        self._types = types
        self._join = join
        self.types: dict[str, TokenBucket] = {}
        self.joins: TokenBucket | None = None
        self.rejected = 0  # rejected messages in a row
        self.connections = 0

    def take(self, tag: object) -> TokenBucket | None:
        """Take a token for one message of type `tag`: None when it may go on, or the bucket
        that refused it (no token is taken then; its `wait()` says for how long)."""
        now = time.monotonic()
        total = self.total
        typed = None
        if self._types and isinstance(tag, str):
            typed = self.types.get(tag)
            if typed is None:
                limit = self._types.get(tag)
                if limit is not None:
                    typed = self.types[tag] = self.bucket(limit, now, "type:" + tag)
        if total is not None:
            total.refill(now)
            if total.tokens < 1.0:
                self.rejected += 1
                return total
        if typed is not None:
            typed.refill(now)
            if typed.tokens < 1.0:
                self.rejected += 1
                return typed
            typed.tokens -= 1.0
        if total is not None:
            total.tokens -= 1.0
        self.rejected = 0
        return None

    def take_join(self) -> TokenBucket | None:
        """Take a token for one join: None when it may go on, or the refusing bucket."""
        if self._join is None:
            return None
        now = time.monotonic()
        bucket = self.joins
        if bucket is None:
            bucket = self.joins = self.bucket(self._join, now, "join")
        bucket.refill(now)
        if bucket.tokens < 1.0:
            self.rejected += 1
            return bucket
        bucket.tokens -= 1.0
        return None

    def bucket(self, limit: RateLimit, now: float, what: str) -> TokenBucket:
        """A new bucket of this client's: its own, or leased with `leases`."""
        if self.leases is None:
            return TokenBucket(limit, now)
        key = self.key
        name = ":".join(map(str, key)) if isinstance(key, tuple) else str(key)
        return LeasedBucket(limit, now, self.leases, f"{name}:{what}")

    def full_at(self) -> float:
        """When every bucket will be full again: until then the client is remembered."""
        buckets = [self.total, self.joins, *self.types.values()]
        return max((b.full_at() for b in buckets if b is not None), default=0.0)


class ClientTable:
    """The clients with buckets in this process: those with open connections, and those
    without, kept (oldest first) until their buckets would be full again, `max_idle` at most."""

    def __init__(self, max_idle: int = MAX_IDLE_CLIENTS) -> None:
        self.max_idle = max_idle
        self.leases: Leases | None = None  # set: the buckets are leased from a shared budget
        self.active: dict[Hashable, ClientLimits] = {}
        self.idle: dict[Hashable, tuple[float, ClientLimits]] = {}  # (full at, limits), oldest first

    def acquire(
        self, key: Hashable, total: RateLimit | None, types: dict[str, RateLimit], join: RateLimit | None
    ) -> ClientLimits:
        """The buckets of `key`'s new connection: its client's, kept or new."""
        limits = self.active.get(key)
        if limits is None:
            kept = self.idle.pop(key, None)
            if kept is not None:
                limits = kept[1]
            else:
                limits = ClientLimits(total, types, join, key=key, leases=self.leases)
            self.active[key] = limits
        limits.connections += 1
        return limits

    def release(self, limits: ClientLimits) -> None:
        """One of the client's connections closed: with none left, the client is kept while
        its buckets refill (a connection's own key is never seen again: dropped)."""
        limits.connections -= 1
        if limits.connections > 0:
            return
        key = limits.key
        self.active.pop(key, None)
        now = time.monotonic()
        full_at = limits.full_at()
        if full_at > now and not (isinstance(key, tuple) and key[0] == "connection"):
            self.idle[key] = (full_at, limits)
        self.sweep(now)

    def sweep(self, now: float) -> None:
        """Forget clients from the oldest: those full again, and any past `max_idle`."""
        idle = self.idle
        while idle:
            key = next(iter(idle))
            if idle[key][0] > now and len(idle) <= self.max_idle:
                return
            del idle[key]

    def clear(self) -> None:
        self.active.clear()
        self.idle.clear()


def rate_limit_key(per: str) -> RateLimitKey:
    """`per` checked as a `RateLimitKey`: a typo would otherwise share no bucket, or all."""
    if per not in ("client", "connection"):
        raise ConfigurationError(f"rate_limit_per: 'client' or 'connection', not {per!r}")
    return cast(RateLimitKey, per)


def client_key(conn: Connection, per: RateLimitKey = "client") -> Hashable:
    """Who sends on `conn`, once per connection: ("identity", the identity) when the app
    authenticated it as a str or an int, else ("address", host) (an IPv6 host by its /64),
    else ("connection", its id); always the last with `per="connection"`."""
    if per == "connection":
        return ("connection", conn.id)
    request = conn.request
    identity: Any = request.identity if request is not None else None
    if isinstance(identity, (str, int)) and not isinstance(identity, bool):
        return ("identity", identity)
    address = conn.address
    host = address[0] if isinstance(address, tuple) and address else None
    if isinstance(host, str) and host:
        # an IPv6 client by its /64, as the per-IP caps count it; a zone is no part of it
        return ("address", ip_key(host.split("%", 1)[0], DEFAULT_IPV6_PREFIX))
    return ("connection", conn.id)


def retry_after_ms(bucket: TokenBucket) -> int:
    """Milliseconds until `bucket` (just refilled) has a token again, at least 1."""
    return max(1, math.ceil(bucket.wait() * 1000))
