"""Session resumption: a dropped connection comes back with its rooms, state and missed messages.

    app = App("chat", resume=ResumePolicy(window=120, history=1000, grace=10))

The wire protocol (typed apps with a ResumePolicy):

- After the upgrade the server's first message is `{"type": "session", "session": TOKEN}`;
  the session is resumable from then on (also after a crash of the server's process).
- Every room broadcast carries `"seq"` (per room, +1 each, the same on every node) and
  `"epoch"` (changes when the room's history is lost), and `"room"` when its model has none.
- A client that lost its connection opens a new one and sends, as its first message,
  `{"type": "resume", "id": X, "session": TOKEN, "rooms": {ROOM: {"seq": N, "epoch": E}}}`.
  When the session is known, the server restores its rooms, `ctx.state` and identity,
  queues every message of those rooms after N (in order, once), then answers
  `{"type": "resumed", "id": X, "recovered": true, "restored": true, "session": NEW,
  "lost": [], "replayed": K, "positions": {ROOM: {"seq": S, "epoch": E}}}` and goes on with
  live messages after each room's position. NEW is the session's next token: the one just
  used no longer works. A room the client names without a position, or leaves out, starts
  where the member joined it. `recovered` is false when something could not be restored:
  `restored: false` (an unknown or expired session: the state is fresh and NEW is this
  connection's own token) or rooms in `lost` (their history was trimmed past N, their
  epoch changed, or the replay was over the policy's bounds).
- A resume of another identity's session, or past `resumes_per_minute`, gets an error
  reply (`resume_refused`, `rate_limited`) and changes nothing: the session stays as it was.
- Where messages of a room are lost on a live connection (the room's history was lost, or
  trimmed before this node could catch up), the member gets `{"type": "room_lost", "room":
  R, "seq": S, "epoch": E}`: what follows comes after S of E.
- A member whose connection drops without a close from the client (1006, a keepalive
  timeout, the server's drain with 1012) stays in its rooms' presence for `grace` seconds;
  resumed within it, the room sees no leave and no join. After it, `@app.on_disconnect`
  runs as for any close (or, where the connection is gone, `@app.on_member_lost`), and a
  later resume within `window` joins the rooms again, calling `@app.on_resume(ctx, rooms)`
  with the rooms joined again. A close frame from the client ends the session at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from ..errors import CloseCode
from .messages import Message
from .numbered import ReplayLimits

__all__ = ["RESUMABLE_CLOSE_CODES", "Resume", "ResumePolicy", "Resumed", "RoomPosition", "SessionOpened"]

# The closes after which a session waits to be resumed: no close frame from the client
# (1006), a peer gone silent or a failed handler (1011), the server's drain (1012), a full
# mailbox (1013). Any close the client asked for, or a protocol or policy violation, ends it.
RESUMABLE_CLOSE_CODES = frozenset(
    {CloseCode.ABNORMAL, CloseCode.INTERNAL_ERROR, CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER}
)


@dataclass(frozen=True)
class ResumePolicy:
    """`window`: seconds a dropped session can be resumed; `history`: broadcasts kept per
    room; `grace`: seconds a dropped member stays in its rooms' presence; `history_ttl`:
    seconds a room's history is kept after its last member left (then a new epoch begins);
    `retained_rooms`: at most this many rooms without members keep a history (per process,
    and in Redis), the oldest dropped first; `replay_messages`, `replay_bytes`: at most
    this much replayed per resume (rooms past it are reported lost); `resumes_per_minute`:
    per session."""

    window: float = 120.0
    history: int = 1000
    grace: float = 10.0
    history_ttl: float = 300.0
    retained_rooms: int = 5_000
    replay_messages: int = ReplayLimits.messages
    replay_bytes: int = ReplayLimits.bytes
    resumes_per_minute: int = 10


class SessionOpened(BaseModel):
    """The server's first message on a connection of an app with resumption."""

    type: Literal["session"] = "session"
    session: str


class RoomPosition(BaseModel):
    seq: int = Field(ge=0)
    epoch: str = Field(default="", max_length=64)


class Resume(Message):
    type: Literal["resume"]
    session: str = Field(min_length=1, max_length=64)
    rooms: dict[str, RoomPosition] = Field(default_factory=dict, max_length=1000)


class Resumed(Message):
    type: Literal["resumed"] = "resumed"
    recovered: bool
    restored: bool
    session: str
    lost: list[str] = Field(default_factory=list)
    replayed: int = 0
    positions: dict[str, RoomPosition] = Field(default_factory=dict)
