"""Numbered broadcasting: seq, epoch, history, replay and catch-up, in one place.

With resumption on, every broadcast of a room gets the room's next `seq` and its `epoch` and
is kept in the room's stream (`RoomStream`: in process, or a Redis stream shared by every
node). `NumberedBroadcasts` is the only code that reads those numbers. Per room with members
here it keeps a *cursor*, the last position it delivered, and it delivers a room's messages
in seq order, each once:

- a message at or behind the cursor is a duplicate (a catch-up read it first): dropped;
- a message past `cursor + 1`, or of another epoch, means some went by unseen (a lost
  pub/sub connection, a Redis restart): the missing ones are read from the stream first;
- what the stream no longer has (trimmed, or its epoch is gone) is told to every member as a
  `room_lost` push, never skipped in silence;
- after a (re)subscription the stream calls `follow`, which catches the room up before any
  live message is delivered.

A member starts at the cursor when it joins; a resume replays the stream from the client's
position up to the cursor, bounded by `ReplayLimits` (what does not fit is reported lost),
while live messages for that member are held back and queued after the replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from ..errors import BackplaneUnavailable
from .history import stamp_head
from .messages import to_json
from .rooms import Encoder, Rooms
from .streams import Pending, Position, Reattached, RoomStream

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["NumberedBroadcasts", "ReplayLimits", "RoomLost"]

log = logging.getLogger("websock_actors")

# Stream entries read per round trip when catching a room up.
_CATCH_UP_BATCH = 500


@dataclass(frozen=True)
class ReplayLimits:
    """At most `messages` and `bytes` replayed per resume (rooms past it are lost)."""

    messages: int = 2000
    bytes: int = 2 << 20


class RoomLost(BaseModel):
    """Pushed to a member when messages of `room` went by that it will never get; what
    follows comes after `seq` of `epoch`."""

    type: Literal["room_lost"] = "room_lost"
    room: str
    seq: int
    epoch: str


class NumberedBroadcasts:
    """The one home of numbered broadcasting: see the module's docstring."""

    def __init__(
        self,
        rooms: Rooms,
        stream: RoomStream,
        encode: Encoder,
        skip_key: Callable[[Connection], str],
        limits: ReplayLimits = ReplayLimits(),
    ) -> None:
        self._rooms = rooms
        self._stream = stream
        self._encode = encode
        self._skip_key = skip_key
        self.limits = limits
        self._cursors: dict[str, Position] = {}
        # members whose resume is being replayed: conn -> room -> live frames held back
        self._holding: dict[Connection, dict[str, list[tuple[Position, bytes, bool]]]] = {}
        # resumed members whose replay read past the cursor: room -> conn -> the last seq it has
        self._floors: dict[str, dict[Connection, Position]] = {}
        self.duplicates = 0  # live messages dropped: a catch-up had delivered them
        self.caught_up = 0  # messages delivered from the stream after a gap
        self.lost_reports = 0  # room_lost pushes sent (per room, not per member)
        self.replays_cut = 0  # resumes whose replay hit ReplayLimits (some rooms lost)
        stream.open(self)

    @property
    def stream(self) -> RoomStream:
        """Where this app's numbered broadcasts are kept."""
        return self._stream

    def expire(self) -> None:
        """Now and then: the stream drops histories past their retention."""
        self._stream.expire()

    @property
    def histories_dropped(self) -> int:
        """Histories of rooms without members dropped before their retention (the cap)."""
        return self._stream.dropped

    # -- sending ----------------------------------------------------------------------------

    def broadcast(
        self, room: str, message: BaseModel, skip: Connection | None = None
    ) -> tuple[int, Pending | None]:
        """Number `message`, keep it, deliver it: the deliveries queued here (0 when they come
        back through Redis), and None when it is kept already, or the `Pending` result of
        its keeping. Raises BackplaneUnavailable when it cannot be sent."""
        text = to_json(message)
        skip_key = self._skip_key(skip) if skip is not None else ""
        origin = f"{self._rooms.node}:{skip.id}" if skip is not None else ""
        before = self._rooms.deliveries
        pending = self._stream.append(room, stamp_head(text, room, type(message)), skip_key, origin)
        return self._rooms.deliveries - before, pending

    # -- membership ---------------------------------------------------------------------------

    def joined(self, room: str) -> Position:
        """A member joined `room` here just now: where it starts."""
        cursor = self._cursors.get(room)
        if cursor is None:
            cursor = self._cursors[room] = self._stream.position(room)
        self._stream.occupied(room)
        return cursor

    def left(self, rooms: set[str]) -> None:
        """Members left `rooms` here: the ones now empty keep their history for the retention."""
        for room in rooms:
            if not self._rooms.members(room):
                if self._stream.inline:
                    self._cursors.pop(room, None)
                self._stream.vacated(room)

    # -- what the stream delivers (StreamSink) -------------------------------------------------

    def follow(self, room: str) -> None:
        cursor = self._cursors.get(room)
        if cursor is None:
            self._cursors[room] = self._stream.position(room)
        else:
            self._catch_up(room, cursor, None)

    def unfollow(self, room: str) -> None:
        self._cursors.pop(room, None)

    def deliver(self, room: str, position: Position, text: str, origin: str) -> None:
        cursor = self._cursors.get(room)
        if cursor is None:
            return  # no member here (the subscription lingers)
        if position.epoch != cursor.epoch or position.seq > cursor.seq + 1:
            if cursor.seq == 0 and not cursor.epoch and position.seq == 1:
                cursor = Position(0, position.epoch)  # the room's first message since we joined
            else:
                cursor = self._catch_up(room, cursor, position)
                if position.epoch != cursor.epoch or position.seq > cursor.seq + 1:  # unreadable
                    cursor = self._lost(room, Position(position.seq - 1, position.epoch))
        if position.epoch != cursor.epoch or position.seq <= cursor.seq:
            self.duplicates += 1
            return
        self._fan_out(room, position, text, origin)

    def _fan_out(self, room: str, position: Position, text: str, origin: str) -> None:
        frame = self._encode(text)
        skip: set[Connection] = set()
        if origin:
            node, _, conn_id = origin.partition(":")
            if node == self._rooms.node:
                skip_id = int(conn_id)
                skip.update(c for c in self._rooms.members(room) if c.id == skip_id)
        floors = self._floors.get(room)
        if floors is not None:
            for conn, floor in list(floors.items()):
                if floor.epoch == position.epoch and floor.seq >= position.seq:
                    skip.add(conn)
                else:
                    del floors[conn]  # past it: live from here on
            if not floors:
                del self._floors[room]
        if self._holding:
            skip.update(self._hold(room, position, frame, True))
        self._rooms.broadcast_here(room, frame, skip)
        self._cursors[room] = position

    def _hold(self, room: str, at: Position, frame: bytes, message: bool) -> list[Connection]:
        """Keep `frame` (a message, or a notice) for the members of `room` whose resume is
        being replayed; returns them, to be left out of the live delivery."""
        held_for: list[Connection] = []
        for conn, held in self._holding.items():
            frames = held.get(room)
            if frames is not None:
                frames.append((at, frame, message))
                held_for.append(conn)
        return held_for

    def _catch_up(self, room: str, cursor: Position, upto: Position | None) -> Position:
        """Deliver what the stream has after `cursor` (up to `upto`, or all of it); tell the
        members what it no longer has. Returns the cursor after it."""
        while upto is None or cursor.epoch != upto.epoch or cursor.seq < upto.seq - 1:
            after = cursor.seq if upto is None or cursor.epoch == upto.epoch else 0
            try:
                read = self._stream.read(room, after, _CATCH_UP_BATCH)
            except BackplaneUnavailable as exc:  # Redis lost again: the next follow retries
                log.warning("catching %r up failed: %s", room, exc)
                return cursor
            now = read.now
            if now.epoch != cursor.epoch:
                if cursor.seq or cursor.epoch:  # not merely a room that had no history yet
                    cursor = self._lost(room, Position(0, now.epoch))
                else:
                    cursor = self._cursors[room] = Position(0, now.epoch)
                continue
            entries = [e for e in read.entries if e.seq > cursor.seq]
            if upto is not None and upto.epoch == now.epoch:
                entries = [e for e in entries if e.seq < upto.seq]
            if not entries:
                limit = now.seq if upto is None or upto.epoch != now.epoch else upto.seq - 1
                if cursor.seq < limit:  # trimmed away, or gone with the epoch
                    cursor = self._lost(room, Position(limit, now.epoch))
                return cursor
            if entries[0].seq != cursor.seq + 1:
                cursor = self._lost(room, Position(entries[0].seq - 1, now.epoch))
            for entry in entries:
                self._fan_out(room, Position(entry.seq, now.epoch), entry.text, entry.origin)
                self.caught_up += 1
            cursor = self._cursors[room]
            if upto is None and cursor.seq >= now.seq:
                return cursor
        return cursor

    def _lost(self, room: str, at: Position) -> Position:
        """Every member here missed messages of `room` before `at`: tell them."""
        self.lost_reports += 1
        log.warning("room %r: messages lost before seq %d of epoch %s", room, at.seq, at.epoch)
        notice = RoomLost(room=room, seq=at.seq, epoch=at.epoch).model_dump_json()
        frame = self._encode(notice)
        self._rooms.broadcast_here(room, frame, self._hold(room, at, frame, False))
        self._cursors[room] = at
        return at

    # -- resume -------------------------------------------------------------------------------

    def replay(
        self, conn: Connection, after: dict[str, Position], skip_key: str, join: Callable[[], None]
    ) -> Reattached:
        """Make `conn` a member again (`join` adds it to the rooms of `after`) and queue what
        it missed after each position, then the live messages that came meanwhile. A room
        whose missed messages are not all there (another epoch: its new epoch is replayed
        from the start; trimmed; past the limits) goes into `lost`."""
        self._holding[conn] = {room: [] for room in after}
        try:
            join()
            budget = [self.limits.messages, self.limits.bytes]
            missed = {room: self._missed(conn, room, at, skip_key, budget) for room, at in after.items()}
            if budget[0] < 0:  # some room did not fit
                self.replays_cut += 1
            # No wait from here to the backlog: what is held back now is all there will be.
            result = Reattached()
            backlog: list[bytes] = []
            for room, (frames, end, complete) in missed.items():
                if not complete:
                    result.lost.add(room)
                backlog.extend(frames)
                result.replayed += len(frames)
                for at, frame, message in self._holding[conn][room]:
                    if at.epoch != end.epoch or at.seq > end.seq:  # not in the replay already
                        backlog.append(frame)
                        result.replayed += message
                        end = at
                result.positions[room] = end
        finally:
            del self._holding[conn]
        conn.send_backlog(backlog)
        return result

    def _missed(
        self, conn: Connection, room: str, position: Position, skip_key: str, budget: list[int]
    ) -> tuple[list[bytes], Position, bool]:
        """The frames after `position` up to the stream's end (which may be ahead of the
        cursor: the node has yet to receive them), where the member then is, and whether
        nothing was lost. Within `budget` (messages and bytes left, spent here) or not at
        all: a room past it is lost, and goes on from the cursor."""
        cursor = self.joined(room)
        if position == cursor:
            return [], cursor, True  # nothing missed here (what is on its way comes live)
        if budget[0] < 0:
            return [], cursor, False  # the resume's budget is spent: no reads for nothing
        complete = True
        seq = position.seq
        if position.epoch != cursor.epoch and not (position.epoch == "" and position.seq == 0):
            complete, seq = False, 0  # the old epoch's tail is gone: the new one from its start
        elif position.seq > cursor.seq:
            return [], cursor, False  # ahead of the room: nothing here to trust
        frames: list[bytes] = []
        size = 0
        while True:
            target = self._cursors.get(room, cursor)
            read = self._stream.read(room, seq, budget[0] - len(frames) + 1)
            if read.now.epoch != target.epoch:
                return [], target, False  # the room's history is changing epoch under us
            end = max(target.seq, read.now.seq)
            entries = [e for e in read.entries if seq < e.seq <= end]
            if not entries:
                if seq >= end:
                    break
                return [], target, False  # trimmed away
            if entries[0].seq != seq + 1:
                complete = False  # trimmed: replay what is left
            for entry in entries:
                seq = entry.seq
                if entry.skip and entry.skip == skip_key:
                    continue
                frame = self._encode(entry.text)
                size += len(frame)
                if len(frames) >= budget[0] or size > budget[1]:
                    budget[0] = -1  # the rooms after this one are lost too
                    return [], self._cursors.get(room, cursor), False
                frames.append(frame)
        budget[0] -= len(frames)
        budget[1] -= size
        if seq > self._cursors.get(room, cursor).seq:  # live ones up to seq are in the replay
            self._floors.setdefault(room, {})[conn] = Position(seq, target.epoch)
        return frames, Position(seq, target.epoch), complete
