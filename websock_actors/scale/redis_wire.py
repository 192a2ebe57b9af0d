"""The Redis wire format shared by the backplane's nodes and an `Emitter` (which imports no
gevent): key names, the kinds of pub/sub messages, and the script that numbers a broadcast.

    <prefix>:room:<room>      the room's pub/sub channel
    <prefix>:seq:<room>       a hash: the room's last seq, its epoch, the Redis run_id that began it
    <prefix>:history:<room>   a stream of the kept broadcasts, entry id `<seq>-0`
    <prefix>:presence:<room>  who is in the room (a sorted set)
    <prefix>:retained         rooms without members that keep their history
    <prefix>:user:<identity>  a user's pub/sub channel (scale/redis_users.py)
    <prefix>:idempotency:<k>  an idempotency key seen (SET NX EX)

On a Redis Cluster every `<room>` (and a user's `<identity>`) carries a hash tag first, and
the retained set is one per tag: scale/redis_keys.py.

A plain broadcast on a room's channel is `F<origin node, 16 hex digits><the client frame>`;
a numbered one is `S<origin> <seq>:<epoch> <text>`. On a user's channel: `U<origin><the
client frame>`, or `X<origin><code> <reason>` (close the user's connections).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

__all__ = [
    "APPEND", "APPEND_SHA", "FRAME", "HEADER", "IDEMPOTENT", "NUMBERED", "READ", "RETAIN", "USER_CLOSE",
    "USER_FRAME", "VACATED", "append_args", "idempotency_key", "room_channel", "stream_keys", "user_channel",
]  # fmt: skip

FRAME = b"F"  # the kind of a Redis message that carries a client frame
NUMBERED = b"S"  # the kind of a Redis message that carries a numbered broadcast
HEADER = 17  # a plain message's header: kind (1 byte) + origin node id (16 hex digits)
USER_FRAME = b"U"  # on a user's channel: a client frame for each of the user's connections
USER_CLOSE = b"X"  # on a user's channel: close the user's connections (`<code> <reason>`)


def room_channel(prefix: str, room: str) -> str:
    """The pub/sub channel of `room`."""
    return f"{prefix}:room:{room}"


def user_channel(prefix: str, key: str) -> str:
    """The pub/sub channel of the user whose address (typed/users.py user_key) is `key`."""
    return f"{prefix}:user:{key}"


def idempotency_key(prefix: str, key: str) -> str:
    """The Redis key that marks an idempotency key as seen (see IDEMPOTENT)."""
    return f"{prefix}:idempotency:{key}"


def stream_keys(prefix: str, room: str) -> tuple[str, str, str, str]:
    """The KEYS of the scripts below: the room's hash, its stream, the retained set, its presence."""
    p = prefix
    return f"{p}:seq:{room}", f"{p}:history:{room}", f"{p}:retained", f"{p}:presence:{room}"


# Both scripts' KEYS: the room's hash, its stream, the retained set, the room's presence.
# `retain`: the room has no member anywhere: its keys expire after the retention, it goes to
# the end of the retained set, and the oldest retained rooms beyond the cap are dropped now
# (returns the keys dropped). The set forgets rooms past the retention, and expires itself
# when no room was retained for that long.
RETAIN = """
local function retain(retention, room, now, cap, prefix)
  redis.call('EXPIRE', KEYS[1], retention)
  redis.call('EXPIRE', KEYS[2], retention)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - retention)
  redis.call('ZADD', KEYS[3], now, room)
  redis.call('EXPIRE', KEYS[3], retention)
  local dropped = 0
  local excess = redis.call('ZCARD', KEYS[3]) - tonumber(cap)
  if excess > 0 then
    for i, old in ipairs(redis.call('ZPOPMIN', KEYS[3], excess)) do
      if i % 2 == 1 then
        dropped = dropped + redis.call('DEL', prefix .. 'seq:' .. old, prefix .. 'history:' .. old)
      end
    end
  end
  return dropped
end
"""

# ARGV: a fresh epoch, the stamped head, the history size, the skip key, the origin, the
# channel, the room, the retention (s), the cap on retained rooms, now, the key prefix, the
# run_id of the Redis process the caller sends this to ('' when it does not know it: the
# script asks INFO, which costs more), the publish command (SPUBLISH on a cluster), and the
# run_ids of the cluster's masters as the caller last saw them ('' elsewhere).
# Returns the seq, the keys dropped, the epoch and how many nodes received the PUBLISH.
#
# The hash keeps the run_id of the process that began the epoch (`run`). Another process
# (a replica promoted by a failover, a restart that reloaded a snapshot) may lack the last
# writes of the old one: replication is asynchronous, so its seq may be behind what members
# were sent. Numbering on from there would reuse a seq for other content, which the members
# would drop unseen as a duplicate; so the first append in another process begins a new
# epoch, and the members are told `lost` instead. On a cluster, a slot migrated from another
# master that still is one (the last ARGV) moved whole: that process's epoch goes on here.
APPEND = RETAIN + """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'run')
local epoch = meta[1]
local run = ARGV[12]
if run == '' then
  run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end
if epoch and meta[2] and meta[2] ~= run and ARGV[14] and string.find(ARGV[14], meta[2], 1, true) then
  redis.call('HSET', KEYS[1], 'run', run)
  meta[2] = run
end
if not epoch or meta[2] ~= run then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'run', run)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local text = ARGV[2] .. seq .. ',"epoch":"' .. epoch .. '"}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'm', text, 'x', ARGV[4], 'o', ARGV[5])
local message = 'S' .. ARGV[5] .. ' ' .. seq .. ':' .. epoch .. ' ' .. text
local nodes = redis.call(ARGV[13] or 'PUBLISH', ARGV[6], message)
local dropped = 0
if redis.call('ZCARD', KEYS[4]) == 0 then
  dropped = retain(ARGV[8], ARGV[7], ARGV[10], ARGV[9], ARGV[11])
end
return {seq, dropped, epoch, nodes}
"""

APPEND_SHA = hashlib.sha1(APPEND.encode()).hexdigest()  # Redis names scripts by SHA-1


def append_args(
    prefix: str, room: str, epoch: str, head: str, history: int, skip: str, origin: str,
    retention: int, retained: int, run: str, publish: str = "PUBLISH", masters: str = "",
) -> tuple[Any, ...]:  # fmt: skip
    """APPEND's ARGV, in its order: a fresh `epoch` (used when the room begins one), the
    stamped `head`, the stream's length, the `skip` key and `origin` of the sender (""
    without one), the channel, the retention's seconds and cap, now, the key prefix, the
    run_id of the Redis process this goes to ("": the script asks INFO), the publish
    command, and a cluster's masters' run_ids. `room` is its name in Redis (redis_keys.py)."""
    return (
        epoch, head, history, skip, origin, room_channel(prefix, room), room, retention, retained,
        time.time(), f"{prefix}:", run, publish, masters,
    )  # fmt: skip

# A room's seq and epoch, and its kept broadcasts from entry id ARGV[2] on (ARGV[3] at most;
# 0: none). KEYS: the room's hash, its stream; ARGV[1]: a fresh epoch. Checked like APPEND:
# an epoch that another Redis process began is over, and a new one begins now, so a resume
# or a catch-up after a failover is told `lost` at once, not at the room's next broadcast.
# Not on the hot path (resumes, catch-ups, a room's first member on a node): INFO is fine.
# ARGV[4], on a cluster: its masters' run_ids (a migrated slot's epoch goes on, as in APPEND).
READ = """
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch', 'run')
if meta[2] then
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  if meta[3] and meta[3] ~= run and ARGV[4] and string.find(ARGV[4], meta[3], 1, true) then
    redis.call('HSET', KEYS[1], 'run', run)
    meta[3] = run
  end
  if meta[3] ~= run then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', 0, 'run', run)
    return {0, ARGV[1], {}}
  end
end
if tonumber(ARGV[3]) == 0 then
  return {meta[1], meta[2], {}}
end
return {meta[1], meta[2], redis.call('XRANGE', KEYS[2], ARGV[2], '+', 'COUNT', ARGV[3])}
"""

# A room's last member here left: if nobody anywhere is left, its history is retained.
# ARGV: the retention, the room, now, the cap, the key prefix.
VACATED = RETAIN + """
if redis.call('ZCARD', KEYS[4]) > 0 or redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return retain(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""

# Put before a script whose last KEY is an idempotency key: a key seen within ARGV[n] seconds
# (the script's own last ARGV) ends the script with -1, so a retried publish goes out once.
IDEMPOTENT = """
if not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', ARGV[#ARGV]) then
  return -1
end
"""
