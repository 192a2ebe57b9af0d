"""A resumed session joins its rooms again, in its old place, with what it missed replayed.

Used by Resumption.resume once the session is taken; the replay itself (budgets, numbered
histories) is NumberedBroadcasts.replay's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .numbered import NumberedBroadcasts
from .resume import Resumed, RoomPosition
from .rooms import MemberRef, Rooms
from .sessions import RoomMembership, SessionRecord
from .streams import Position, Reattached

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["reattach", "replay_from", "resumed_reply"]


def resumed_reply(result: Reattached, session: str) -> Resumed:
    """The `resumed` answer to a resume that restored its session (`session`: the new token)."""
    positions = {room: RoomPosition(seq=p.seq, epoch=p.epoch) for room, p in result.positions.items()}
    return Resumed(
        recovered=not result.lost,
        restored=True,
        session=session,
        lost=sorted(result.lost),
        replayed=result.replayed,
        positions=positions,
    )


def reattach(
    rooms: Rooms,
    numbered: NumberedBroadcasts,
    conn: Connection,
    record: SessionRecord,
    asked: dict[str, RoomPosition],
    *,
    adopted: bool,
    old: Connection | None,
    opening: set[str],
) -> Reattached:
    """`conn` takes the place of the session's member in each of its rooms. `adopted`: this
    node ended the old member's grace (it keeps its join time); `old`: the old connection,
    still a (closed) member here; `opening`: rooms on_connect joined (the session has its own)."""
    for room in opening:
        rooms.leave(conn, room)
    now = time.time()
    replacing = MemberRef(record.node, record.conn_id) if adopted else None
    if old is not None:  # still a (closed) member here: the new connection takes its place
        replacing = MemberRef(rooms.node, old.id)
    after = replay_from(asked, record.rooms)

    def join() -> None:
        for room, member in record.rooms.items():
            since = member.joined_at if adopted else now
            rooms.join(conn, room, member.presence, since=since, replacing=replacing)
        if old is not None:
            rooms.forget(old)

    return numbered.replay(conn, after, record.sid, join)


def replay_from(asked: dict[str, RoomPosition], rooms: dict[str, RoomMembership]) -> dict[str, Position]:
    """Where the replay of each of the session's rooms starts: the client's position, but
    never before the member joined the room (a client may still hold the position of an
    earlier membership: it left, joined again, and heard nothing since)."""
    after: dict[str, Position] = {}
    for room, membership in rooms.items():
        position = asked.get(room)
        joined = Position(membership.seq, membership.epoch)
        if (
            position is None
            or (position.seq == 0 and position.epoch == "")
            or (position.epoch == membership.epoch and position.seq < membership.seq)
        ):
            after[room] = joined
        else:
            after[room] = Position(position.seq, position.epoch)
    return after
