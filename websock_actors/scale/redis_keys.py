"""How rooms and users are named in Redis keys and channels, on one server or on a cluster.

On one server (or a Sentinel's master) a room is named as it is: `wsa:seq:lobby`. On a Redis
Cluster every key a script touches must live in one slot, so a room's keys and channel carry
a hash tag: `wsa:seq:{417}lobby`, `wsa:history:{417}lobby`, `wsa:presence:{417}lobby`, the
channel `wsa:room:{417}lobby`, and the retained set of its partition `wsa:retained{417}`.

The tag is not the room's name: rooms are grouped into `PARTITIONS` partitions by the CRC16
of their name (the function Redis hashes keys with), partition `p` holding the rooms whose
own slot is in `[p * 16, p * 16 + 16)`, and every partition has one precomputed tag whose slot
lies in that range. So rooms spread over the slots exactly as evenly as CRC16 spreads their
names, and the rooms of one partition share a retained set, which keeps the cap on retained
histories meaningful (`retained` is divided among the partitions). A user's channel is tagged
the same way, so an Emitter's idempotency key can share its slot.

No gevent here: the Emitter names keys with it too.
"""

from __future__ import annotations

from binascii import crc_hqx
from functools import lru_cache

from .redis_wire import room_channel, stream_keys, user_channel

__all__ = ["PARTITIONS", "SLOTS", "Keyspace", "partition_tags"]

SLOTS = 16384  # a Redis Cluster's hash slots
PARTITIONS = 1024  # room partitions on a cluster: SLOTS / PARTITIONS slots each


@lru_cache(maxsize=1)
def partition_tags() -> tuple[str, ...]:
    """One hash tag per partition: the first decimal number whose slot falls in the
    partition's range (the same on every node and Emitter)."""
    width = SLOTS // PARTITIONS
    tags: list[str | None] = [None] * PARTITIONS
    missing = PARTITIONS
    candidate = 0
    while missing:
        text = str(candidate)
        partition = crc_hqx(text.encode(), 0) % SLOTS // width
        if tags[partition] is None:
            tags[partition] = text
            missing -= 1
        candidate += 1
    return tuple(tag for tag in tags if tag is not None)


class Keyspace:
    """The key names of one deployment: `prefix`, and whether rooms carry a hash tag."""

    def __init__(self, prefix: str, *, cluster: bool = False) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self.publish = "SPUBLISH" if cluster else "PUBLISH"  # sharded pub/sub on a cluster
        self._tags = partition_tags() if cluster else ()
        self._width = SLOTS // PARTITIONS
        self.room_prefix = room_channel(prefix, "").encode()  # a room's channel: this + name
        self.user_prefix = user_channel(prefix, "").encode()

    def name(self, room: str) -> str:
        """`room` as it appears in keys and channels: itself, or `{tag}room` on a cluster."""
        return self.tag(room) + room if self.cluster else room

    def unnamed(self, name: str) -> str:
        """The room (or user key) a `name` stands for."""
        if not self.cluster:
            return name
        return name[name.index("}") + 1 :]

    def tag(self, room: str) -> str:
        """The hash tag `room`'s keys share, braces included ("" on one server, or for "")."""
        if not self.cluster or not room:
            return ""
        return f"{{{self._tags[crc_hqx(room.encode(), 0) % SLOTS // self._width]}}}"

    def stream(self, room: str) -> tuple[str, str, str, str]:
        """The room's hash, stream, retained set and presence (the scripts' KEYS)."""
        tag = self.tag(room)
        seq, history, retained, presence = stream_keys(self.prefix, tag + room)
        return seq, history, retained + tag, presence

    def retained(self, cap: int) -> int:
        """The cap on retained rooms a script applies: per partition on a cluster."""
        return -(-cap // PARTITIONS) if self.cluster else cap

    def presence(self, room: str) -> str:
        return f"{self.prefix}:presence:{self.name(room)}"

    def channel(self, room: str) -> bytes:
        return self.room_prefix + self.name(room).encode()

    def user(self, key: str) -> bytes:
        return self.user_prefix + self.name(key).encode()

    def idempotency(self, key: str, near: str = "") -> str:
        """An idempotency key's Redis key; on a cluster in the slot of room (or user) `near`,
        so that one script checks it and publishes."""
        return f"{self.prefix}:idempotency:{self.tag(near)}{key}"
