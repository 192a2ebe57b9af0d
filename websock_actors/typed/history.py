"""Room history in process: `LocalStream`, the `RoomStream` of `LocalRooms`.

Every broadcast of an app with resumption on is numbered per room (`seq`, +1 each) and
stamped into its JSON with the room's `epoch`, a random string made when the room's history
begins: a client that saw seq N of epoch E can ask for what came after, and a history that
was lost (a restart, a room dropped after its retention) shows as a new epoch instead of a
silent gap. A room keeps its last `size` broadcasts while it has members; once the last
one left, for `retention` seconds, and at most `retained` such rooms at once (the oldest go
first): memory comes back when rooms empty, whatever names clients make up.
"""

from __future__ import annotations

import json
import secrets
import time
import warnings
from collections import OrderedDict, deque
from itertools import islice

from pydantic import BaseModel

from .streams import Kept, Position, StreamRead, StreamSink

__all__ = ["LocalStream", "stamp_head", "stamp_prefix"]


def stamp_head(text: str, room: str, model: type[BaseModel]) -> str:
    """The stamped head of `text` (a `model` as JSON), opened for its stamp: `... ,"seq":` with the seq, then
    `,"epoch":"<epoch>"}` to follow; `"room"` added when the model has no such field."""
    # The class attribute: model_fields is a descriptor, slower per broadcast (benchmarks/typed_bench.sh).
    if "room" not in model.__pydantic_fields__:
        return f'{text[:-1]},"room":{json.dumps(room)},"seq":'
    return f'{text[:-1]},"seq":'


def stamp_prefix(text: str, room: str, model: type[BaseModel]) -> str:
    """Deprecated name of `stamp_head` (a "prefix" is a Redis key prefix elsewhere)."""
    warnings.warn("stamp_prefix is deprecated: use stamp_head", DeprecationWarning, stacklevel=2)
    return stamp_head(text, room, model)


class _RoomLog:
    __slots__ = ("entries", "epoch", "seq")

    def __init__(self, size: int) -> None:
        self.epoch = secrets.token_hex(8)
        self.seq = 0
        self.entries: deque[Kept] = deque(maxlen=size)


class LocalStream:
    """A `RoomStream` in this process's memory: see the module's docstring."""

    inline = True

    def __init__(self, size: int, retention: float, retained: int) -> None:
        self.size = size
        self.retention = retention
        self.retained = retained
        self.logs: dict[str, _RoomLog] = {}
        self._vacant: OrderedDict[str, float] = OrderedDict()  # room -> when it emptied, oldest first
        self._occupied: set[str] = set()
        self._sink: StreamSink | None = None
        self.dropped = 0  # histories dropped early: more than `retained` rooms without members

    def open(self, sink: StreamSink) -> None:
        self._sink = sink

    def append(self, room: str, head: str, skip: str, origin: str) -> None:  # kept at once
        log = self.logs.get(room)
        if log is None:
            log = self.logs[room] = _RoomLog(self.size)
            if room not in self._occupied:
                self._vacate(room)
        self._sweep()
        log.seq += 1
        text = f'{head}{log.seq},"epoch":"{log.epoch}"}}'
        if self.size:
            log.entries.append(Kept(log.seq, text, skip, origin))
        assert self._sink is not None, "open() first"
        self._sink.deliver(room, Position(log.seq, log.epoch), text, origin)

    def read(self, room: str, after: int, count: int) -> StreamRead:
        log = self.logs.get(room)
        if log is None:
            return StreamRead([], Position())
        entries = log.entries
        first = entries[0].seq if entries else log.seq + 1
        start = max(0, after + 1 - first)
        return StreamRead(list(islice(entries, start, start + count)), Position(log.seq, log.epoch))

    def position(self, room: str) -> Position:
        log = self.logs.get(room)
        return Position() if log is None else Position(log.seq, log.epoch)

    def occupied(self, room: str) -> None:
        self._occupied.add(room)
        self._vacant.pop(room, None)

    def vacated(self, room: str) -> None:
        self._occupied.discard(room)
        if room in self.logs:
            self._vacate(room)

    def _vacate(self, room: str) -> None:
        self._vacant[room] = time.monotonic()
        self._vacant.move_to_end(room)
        self._sweep()

    def expire(self) -> None:
        self._sweep()

    def _sweep(self) -> None:
        """Drop the histories past their retention, and the oldest beyond `retained`."""
        horizon = time.monotonic() - self.retention
        while self._vacant:
            oldest, since = next(iter(self._vacant.items()))
            if since > horizon and len(self._vacant) <= self.retained:
                break
            if since > horizon:
                self.dropped += 1
            del self._vacant[oldest]
            self.logs.pop(oldest, None)
