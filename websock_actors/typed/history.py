"""Room history for resumption: a sequence number per broadcast, an epoch, a bounded ring.

Every broadcast of an app with resumption on is numbered per room (`seq`, +1 each) and
stamped into its JSON with the room's `epoch`, a random string made when the room's history
begins: a client that saw seq N of epoch E can ask for what came after, and a history that
was lost (a restart, an idle room dropped) shows as a new epoch instead of a silent gap.
This is the in-process history (`LocalRooms`); the Redis backplane keeps the same in a
stream per room.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Container

__all__ = ["Replay", "RoomHistory", "stamp_prefix"]

# What a resume may replay of one room: (seq, text, the session key it excluded or "")
Replay = list[tuple[int, str, str]]


def stamp_prefix(text: str, room: str, add_room: bool) -> str:
    """`text` (a JSON object) opened for its stamp: `... ,"seq":` with the seq, then
    `,"epoch":"<epoch>"}` to follow; `"room"` added when the message does not carry one."""
    if add_room:
        return f'{text[:-1]},"room":{json.dumps(room)},"seq":'
    return f'{text[:-1]},"seq":'


class _RoomLog:
    __slots__ = ("entries", "epoch", "seq", "used")

    def __init__(self, size: int) -> None:
        self.epoch = secrets.token_hex(8)
        self.seq = 0
        self.entries: deque[tuple[int, str, str]] = deque(maxlen=size)
        self.used = time.monotonic()


class RoomHistory:
    """The last `size` broadcasts of every room of this process; a room silent for `ttl`
    seconds and without members is forgotten (a later message starts a new epoch)."""

    __slots__ = ("_next_sweep", "logs", "size", "ttl")

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self.logs: dict[str, _RoomLog] = {}
        self._next_sweep = time.monotonic() + ttl

    def _log(self, room: str) -> _RoomLog:
        log = self.logs.get(room)
        if log is None:
            log = self.logs[room] = _RoomLog(self.size)
        return log

    def append(self, room: str, prefix: str, excluded: str) -> str:
        """Number a broadcast, keep it, and return its stamped text (`prefix`: stamp_prefix)."""
        log = self._log(room)
        log.seq += 1
        text = f'{prefix}{log.seq},"epoch":"{log.epoch}"}}'
        if self.size:
            log.entries.append((log.seq, text, excluded))
        log.used = time.monotonic()
        return text

    def position(self, room: str) -> tuple[int, str]:
        """(the room's last seq, its epoch): where a member joining now starts."""
        log = self._log(room)
        log.used = time.monotonic()
        return log.seq, log.epoch

    def since(self, room: str, seq: int, epoch: str) -> tuple[Replay | None, int, str]:
        """The broadcasts after `seq` of `epoch`, None when some of them are lost (another
        epoch, or trimmed), with the room's position now. Epoch "" and seq 0 ask for the
        whole history: the member joined before the room's first broadcast."""
        log = self.logs.get(room)
        if log is None:
            return ([] if seq == 0 else None), 0, ""
        if epoch != log.epoch and not (epoch == "" and seq == 0):
            return None, log.seq, log.epoch
        if seq >= log.seq:
            return ([] if seq == log.seq else None), log.seq, log.epoch
        entries = log.entries
        if not entries or entries[0][0] > seq + 1:
            return None, log.seq, log.epoch
        return [entry for entry in entries if entry[0] > seq], log.seq, log.epoch

    def sweep(self, rooms_with_members: Container[str]) -> None:
        """Drop the logs of rooms without members that were silent for `ttl` (now and then)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(self.ttl, 60.0)
        horizon = now - self.ttl
        for room in [r for r, log in self.logs.items() if log.used < horizon and r not in rooms_with_members]:
            del self.logs[room]
