"""Rate limits of typed apps: token buckets per connection, in total and per message type.

    App(rate_limit=RateLimit(rate=50, burst=100))          # every message of a connection
    @app.handler(rate_limit=RateLimit(rate=5, burst=20))   # this message type, per connection

A bucket holds up to `burst` tokens and gains `rate` tokens a second; a message takes one
token from its connection's total bucket and one from its type's bucket, or is answered
`rate_limited` (with `retry_after_ms`) without being validated. After `close_after` such
answers in a row, the connection is closed with 1008. The clock is `time.monotonic`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["ConnectionLimits", "RateLimit", "TokenBucket", "retry_after_ms"]


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


class ConnectionLimits:
    """One connection's buckets: the total one (or None) and one per limited message type."""

    __slots__ = ("_types", "rejected", "total", "types")

    def __init__(
        self, total: RateLimit | None, types: dict[str, RateLimit], now: float | None = None
    ) -> None:
        if now is None:
            now = time.monotonic()
        self.total = TokenBucket(total, now) if total is not None else None
        self._types = types
        self.types: dict[str, TokenBucket] = {}
        self.rejected = 0  # rejected messages in a row

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
                    typed = self.types[tag] = TokenBucket(limit, now)
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


def retry_after_ms(bucket: TokenBucket) -> int:
    """Milliseconds until `bucket` (just refilled) has a token again, at least 1."""
    return max(1, math.ceil(bucket.wait() * 1000))
