"""Rate limits shared by every process on one Redis: budgets leased a few tokens at a time.

Each client's bucket lives in Redis (a hash with its tokens and their time, expiring once it
would be full again); a process takes `want` tokens at once with one script call, spends them
locally, and asks again only when they are gone and Redis's `retry_after` has passed. A
client spread over N processes gets at most burst + rate x seconds, plus the tokens each
process holds unspent (one lease each). The clock is Redis's own (TIME), so the hosts'
clocks need not agree.
"""

from __future__ import annotations

from .redis_io import Commands

__all__ = ["LEASE_SCRIPT", "RedisLeases"]

# KEYS[1] the bucket; ARGV rate, burst, tokens wanted -> {granted, ms until one is there}
LEASE_SCRIPT = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
if now > stamp then tokens = math.min(burst, tokens + (now - stamp) * rate) end
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
local wait = 0
if tokens < 1 then wait = math.ceil((1 - tokens) / rate * 1000) end
return {granted, wait}
"""


class RedisLeases:
    """`lease(name, rate, burst, want)` -> (tokens granted, ms until the next one is there);
    BackplaneUnavailable when Redis cannot answer (the caller falls back to local buckets)."""

    def __init__(self, pool: Commands, prefix: str) -> None:
        self._pool = pool
        self._prefix = f"{prefix}:rate:"
        self.calls = 0  # leases asked for: what the shared limits cost

    def lease(self, name: str, rate: float, burst: float, want: int) -> tuple[int, int]:
        self.calls += 1
        granted, wait = self._pool.execute("EVAL", LEASE_SCRIPT, 1, self._prefix + name, rate, burst, want)
        return int(granted), int(wait)
