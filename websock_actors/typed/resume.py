"""Session resumption: a dropped connection comes back with its rooms, state and missed messages.

    app = App("chat", resume=ResumePolicy(window=120, history=1000, grace=10))

The wire protocol (typed apps with a ResumePolicy):

- After the upgrade the server's first message is `{"type": "session", "session": TOKEN}`.
- Every room broadcast carries `"seq"` (per room, +1 each, the same on every node) and
  `"epoch"` (changes when the room's history is lost), and `"room"` when its model has none.
- A client that lost its connection opens a new one and sends, as its first message,
  `{"type": "resume", "id": X, "session": TOKEN, "rooms": {ROOM: {"seq": N, "epoch": E}}}`.
  When the session is known, the server restores its rooms, `ctx.state` and identity,
  queues every message of those rooms after N (in order, once), then answers
  `{"type": "resumed", "id": X, "recovered": true, "restored": true, "session": TOKEN,
  "lost": [], "replayed": K}` and goes on with live messages. A room the client names
  without a position, or leaves out, starts where the member joined it. `recovered` is
  false when something could not be restored: `restored: false` (an unknown or expired
  session, another identity: the state is fresh and TOKEN is this connection's new one) or
  rooms in `lost` (their history was trimmed past N or their epoch changed).
- A member whose connection drops without a close from the client (1006, a keepalive
  timeout, the server's drain with 1012) stays in its rooms' presence for `grace` seconds;
  resumed within it, the room sees no leave and no join. After it, `@app.on_disconnect`
  runs as for any close (or, where the connection is gone, `@app.on_member_lost`), and a
  later resume within `window` joins the rooms again, calling `@app.on_resume(ctx, rooms)`
  with the rooms joined again. A close frame from the client ends the session at once.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import gevent
import gevent.event
from pydantic import BaseModel, Field

from ..errors import BackplaneUnavailable, CloseCode, MessageError
from .context import Context
from .messages import Message
from .sessions import RoomMembership, SessionRecord

if TYPE_CHECKING:
    from ..server.connection import Connection
    from .app import App

__all__ = [
    "RESUMABLE_CLOSE_CODES",
    "Resume",
    "ResumePolicy",
    "Resumed",
    "Resumption",
    "RoomPosition",
    "SessionOpened",
]

log = logging.getLogger("websock_actors")

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
    seconds an idle room's history is kept (then a new epoch begins)."""

    window: float = 120.0
    history: int = 1000
    grace: float = 10.0
    history_ttl: float = 86400.0


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


class Resumption:
    """The sessions of one App: made at open, kept at a resumable close, restored by `resume`."""

    def __init__(self, app: App, policy: ResumePolicy) -> None:
        self.app = app
        self.policy = policy
        self.tokens: dict[int, str] = {}  # open connection id -> its session token
        self.live: dict[str, Connection] = {}  # token -> its open connection
        self.memberships: dict[int, dict[str, RoomMembership]] = {}  # connection id -> rooms
        self.graced: dict[
            str, tuple[Connection, gevent.Greenlet[Any, Any]]
        ] = {}  # token -> (closed conn, timer)
        self._saved: dict[str, gevent.event.Event] = {}  # tokens whose old connection is being dropped
        self.resumes: dict[str, int] = {"recovered": 0, "partial": 0, "fresh": 0}
        self.replayed = 0
        self.grace_ended = 0  # members reported as left when their grace ran out

    # -- the connection's life -----------------------------------------------------------

    def opened(self, conn: Connection) -> None:
        token = secrets.token_urlsafe(24)
        self.tokens[conn.id] = token
        self.live[token] = conn
        conn.send(SessionOpened(session=token).model_dump_json())

    def key(self, conn: Connection) -> str:
        """The session key broadcasts that exclude `conn` are marked with (skipped on replay)."""
        return self.tokens.get(conn.id, "")

    def joined(self, conn: Connection, room: str, presence: Any) -> None:
        seq, epoch = self.app.rooms.join_position(conn, room)
        self.memberships.setdefault(conn.id, {})[room] = RoomMembership(presence, time.time(), seq, epoch)

    def left(self, conn: Connection, room: str) -> None:
        rooms = self.memberships.get(conn.id)
        if rooms is not None:
            rooms.pop(room, None)

    def closed(self, conn: Connection, code: int) -> bool:
        """True when the session is kept: the member's leaving waits for its grace."""
        token = self.tokens.pop(conn.id, None)
        rooms = self.memberships.pop(conn.id, {})
        if token is None:
            return False
        if self.live.get(token) is conn:
            del self.live[token]
        waiting = self._saved.pop(token, None)
        try:
            if code not in RESUMABLE_CLOSE_CODES:
                return False
            request = conn.request
            record = SessionRecord(
                token,
                self.app.rooms.node,
                conn.id,
                rooms,
                conn.state,
                request.identity if request is not None else None,
            )
            try:
                data = record.dumps()
            except (TypeError, ValueError) as exc:
                log.warning("%r: session not kept: its state is not JSON-able (%s)", conn, exc)
                return False
            try:
                self.app.rooms.sessions.save(token, data, self.policy.window, self.policy.grace)
            except BackplaneUnavailable as exc:
                log.warning("%r: session not kept: %s", conn, exc)
                return False
            self.graced[token] = (conn, gevent.spawn_later(self.policy.grace, self._grace_over, token))
            return True
        finally:
            if waiting is not None:
                waiting.set()

    def _grace_over(self, token: str) -> None:
        entry = self.graced.pop(token, None)
        if entry is None:
            return
        conn = entry[0]
        while True:
            try:
                mine = self.app.rooms.sessions.claim_grace(token)
                break
            except BackplaneUnavailable as exc:  # the claim decides who reports: try again
                log.debug("grace of %r: %s", conn, exc)
                gevent.sleep(1.0)
        if mine:
            self.grace_ended += 1
        self.app._member_gone(conn, report=mine)

    def stop(self) -> None:
        """The server stops: graces still running end with it (other nodes end them with Redis)."""
        for _conn, timer in self.graced.values():
            timer.kill(block=False)
        self.graced.clear()

    # -- resume ------------------------------------------------------------------------------

    def handler(self) -> Callable[[Resume, Context], Resumed | None]:
        """The `resume` message's handler, to register in the app's router."""

        def resume(msg: Resume, ctx: Context) -> Resumed | None:
            """Resume a dropped session (first message only): missed room messages, then `resumed`."""
            self.resume(msg, ctx)  # it replies itself: live messages must not come first
            return None

        return resume

    def resume(self, msg: Resume, ctx: Context) -> None:
        """The `resume` handler: see the module's docstring."""
        conn = ctx.conn
        token = self.tokens.get(conn.id, "")
        if ctx.rooms or token == msg.session or token not in self.live:
            raise MessageError("resume_refused", "resume must be a connection's first message")
        del self.live[token]  # one resume per connection: its own token is no longer live
        self._drop_old(msg.session)
        sessions = self.app.rooms.sessions
        data = sessions.take(msg.session)
        record = SessionRecord.loads(data) if data is not None else None
        identity = ctx.identity
        if record is not None and self.app.authenticates and record.identity != identity:
            log.debug("%r: resume of another identity's session refused", conn)
            record = None
        if record is None:
            self.live[token] = conn
            self.resumes["fresh"] += 1
            ctx.reply(Resumed(recovered=False, restored=False, session=token, lost=sorted(msg.rooms)))
            return
        old = self.graced.pop(msg.session, None)
        if old is not None:
            old[1].kill(block=False)
        try:
            adopted = sessions.claim_grace(msg.session)
            after = _replay_from(msg.rooms, record.rooms)
            rooms = record.rooms
            if not adopted:  # the grace ended: the rooms are joined again, as of now
                now = time.time()
                rooms = {room: RoomMembership(m.presence, now, m.seq, m.epoch) for room, m in rooms.items()}
            replayed, positions, lost = self.app.rooms.attach(
                conn,
                rooms,
                after,
                msg.session,
                (record.node, record.conn_id) if adopted else None,
                old[0] if old is not None else None,  # goes on as this connection, silently
            )
        except BackplaneUnavailable:
            sessions.save(msg.session, data, self.policy.window, self.policy.grace)  # type: ignore[arg-type]
            self.live[token] = conn
            raise
        # No yield from attach to the reply: the replay, then `resumed`, then live messages.
        self.tokens[conn.id] = msg.session
        self.live[msg.session] = conn
        # The join positions stay (a replay never reaches back before the join), but a room
        # whose history was lost starts again where it is now.
        self.memberships[conn.id] = {
            room: RoomMembership(m.presence, m.joined_at, *positions[room]) if room in lost else m
            for room, m in rooms.items()
        }
        conn.state.clear()
        conn.state.update(record.state)
        request = conn.request
        if request is not None and not self.app.authenticates:
            request.identity = record.identity
        self.replayed += replayed
        self.resumes["partial" if lost else "recovered"] += 1
        ctx.reply(
            Resumed(
                recovered=not lost, restored=True, session=msg.session, lost=sorted(lost), replayed=replayed
            )
        )
        if not adopted:
            self.app._rejoined(ctx, set(rooms))

    def _drop_old(self, token: str) -> None:
        """The session's old connection is still open here (a half-open TCP connection the
        server has not noticed yet): drop it, and wait until its session is kept."""
        old = self.live.get(token)
        if old is None:
            return
        saved = self._saved[token] = gevent.event.Event()
        old.abort(CloseCode.ABNORMAL, "resumed elsewhere")
        saved.wait(5.0)


def _replay_from(
    asked: dict[str, RoomPosition], rooms: dict[str, RoomMembership]
) -> dict[str, tuple[int, str]]:
    """Where the replay of each of the session's rooms starts: the client's position, but
    never before the member joined the room (a client may still hold the position of an
    earlier membership: it left, joined again, and heard nothing since)."""
    after: dict[str, tuple[int, str]] = {}
    for room, membership in rooms.items():
        position = asked.get(room)
        joined = (membership.seq, membership.epoch)
        if (
            position is None
            or (position.seq == 0 and position.epoch == "")
            or (position.epoch == membership.epoch and position.seq < membership.seq)
        ):
            after[room] = joined
        else:
            after[room] = (position.seq, position.epoch)
    return after
