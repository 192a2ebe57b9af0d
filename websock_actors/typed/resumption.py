"""The sessions of one App: written at open, kept at a resumable close, restored by `resume`.

The wire protocol and its models are in typed/resume.py; the records and where they are
stored in typed/sessions.py; the graces of closed sessions in typed/graces.py; the replay of
missed room messages in typed/numbered.py. What it needs of its App comes as callbacks.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from ..errors import BackplaneUnavailable, CloseCode, MessageError
from .context import Context
from .graces import Grace, Graces, MemberGone, encoded
from .numbered import NumberedBroadcasts, ReplayLimits
from .reattach import reattach, resumed_reply
from .resume import RESUMABLE_CLOSE_CODES, Resume, Resumed, ResumePolicy, SessionOpened
from .rooms import Rooms
from .sessions import RoomMembership, SessionRecord
from .streams import Position

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["Resumption"]

log = logging.getLogger("websock_actors")


class Resumption:
    """The sessions of one App: written at open, kept at a resumable close, restored by `resume`."""

    def __init__(
        self,
        policy: ResumePolicy,
        rooms: Rooms,
        *,
        member_gone: MemberGone,
        rejoined: Callable[[Context, set[str]], None],
        authenticates: Callable[[], bool],
    ) -> None:
        """`rooms`: the app's (its `rooms` setter keeps this one current); `member_gone(conn,
        report)`: the member leaves its rooms, reported or not; `rejoined(ctx, rooms)`: a
        resume after the grace joined `rooms` again; `authenticates()`: whether the app has an
        authentication hook (then a resume keeps the new connection's identity)."""
        self.policy = policy
        self.rooms = rooms
        self._rejoined = rejoined
        self._authenticates = authenticates
        self.numbered: NumberedBroadcasts | None = None  # made at start, over the app's rooms
        self.tokens: dict[int, str] = {}  # open connection id -> its session token
        self.open_by_token: dict[str, Connection] = {}  # token -> its open connection
        self.records: dict[int, SessionRecord] = {}  # open connection id -> its session
        self._opening_rooms: dict[int, set[str]] = {}  # rooms joined in on_connect
        self.changed: set[int] = set()  # connection ids whose session must be written again
        self._stored: set[int] = set()  # open connection ids whose session the store has had
        self.graces = Graces(lambda: self.rooms.sessions, policy.window, member_gone)
        self.graced: dict[str, Grace] = self.graces.running  # token -> its grace (the same dict)
        self._saved: dict[str, gevent.event.Event] = {}  # tokens whose old connection is being dropped
        self._refresher: gevent.Greenlet[Any, Any] | None = None
        self.resumes: dict[str, int] = {"recovered": 0, "partial": 0, "fresh": 0, "refused": 0}
        self.replayed = 0
        self.rate_refused = 0  # resumes past resumes_per_minute

    def start(self) -> None:
        """Number the app's broadcasts; keep the open sessions' records from expiring."""
        policy = self.policy
        rooms = self.rooms
        from ..server.broadcast import encode_broadcast

        stream = rooms.open_stream(policy.history, policy.history_ttl, policy.retained_rooms)
        limits = ReplayLimits(policy.replay_messages, policy.replay_bytes)
        self.numbered = NumberedBroadcasts(rooms, stream, encode_broadcast, self.skip_key, limits)
        rooms.sessions.watch(self._taken_elsewhere)
        self._refresher = gevent.spawn(self._refresh)

    def stop(self) -> None:
        """The server stops: graces still running end with it (other nodes end them with Redis)."""
        self.graces.stop()
        if self._refresher is not None:
            self._refresher.kill(block=False)
            self._refresher = None

    def _refresh(self) -> None:
        """Write the open sessions again now and then (they outlive their process by
        `window`), and let the history drop what is past its retention, even when idle."""
        every = max(1.0, self.policy.window / 3)
        due = time.monotonic() + every
        while True:
            gevent.sleep(min(every, max(1.0, self.policy.history_ttl / 2)))
            if self.numbered is not None:
                self.numbered.expire()
            if time.monotonic() >= due:
                due = time.monotonic() + every
                self._write_all(new=False)

    def reset(self) -> None:
        """The store lost every session (a Redis restart): write them again, at once."""
        gevent.spawn(self._write_all, new=True)

    def _write_all(self, *, new: bool) -> None:
        for conn_id, token in list(self.tokens.items()):
            record = self.records.get(conn_id)
            if record is not None:
                self._write(token, record, new=new)
        if new:
            self.graces.restore()

    # -- the connection's life -----------------------------------------------------------

    def opened(self, conn: Connection) -> None:
        token = secrets.token_urlsafe(24)
        self.tokens[conn.id] = token
        self.open_by_token[token] = conn
        request = conn.request
        identity = request.identity if request is not None else None
        record = self.records[conn.id] = SessionRecord(secrets.token_hex(8), self.rooms.node, conn.id)
        record.identity = identity
        self._write(token, record, new=True)
        conn.send(SessionOpened(session=token).model_dump_json())

    def connected(self, conn: Connection) -> None:
        """After the app's on_connect: the rooms it joined do not make a resume a late one."""
        rooms = self.rooms.rooms_of(conn)
        if rooms:
            self._opening_rooms[conn.id] = rooms
        self.save_changed()

    def _write(self, token: str, record: SessionRecord, *, new: bool = False) -> bool:
        """Store the record as it is now, with its connection's state; False when a resume
        took it, or Redis is away."""
        conn = self.open_by_token.get(token)
        if conn is not None:
            record.state = conn.state
        data = encoded(record)
        if data is None:
            return False
        try:
            saved = self.rooms.sessions.save(token, data, self.policy.window, new=new)
        except BackplaneUnavailable as exc:
            log.debug("session %s not written: %s", record.sid, exc)
            return False
        if saved and conn is not None:
            self._stored.add(conn.id)
        return saved

    def skip_key(self, conn: Connection) -> str:
        """What a broadcast that skips `conn` (exclude_self) is marked with: its session id
        (a replay to that session skips it too)."""
        record = self.records.get(conn.id)
        return record.sid if record is not None else ""

    def joined(self, conn: Connection, room: str, presence: Any, position: Position) -> None:
        record = self.records.get(conn.id)
        if record is not None:
            record.rooms[room] = RoomMembership(presence, time.time(), position.seq, position.epoch)
            self.changed.add(conn.id)

    def left(self, conn: Connection, room: str) -> None:
        record = self.records.get(conn.id)
        if record is not None and record.rooms.pop(room, None) is not None:
            self.changed.add(conn.id)

    def save_changed(self) -> None:
        """Write the sessions whose rooms changed, with their state as it is now: after the
        handler that joined or left (it may set state for the room), before its reply."""
        changed = list(self.changed)
        self.changed.clear()
        for conn_id in changed:
            record = self.records.get(conn_id)
            token = self.tokens.get(conn_id)
            if record is not None and token is not None:
                self._write(token, record)

    def end(self, conn: Connection) -> None:
        """The session of open `conn` ends now (`disconnect_user`): its close keeps nothing,
        and a resume of it is refused."""
        token = self.tokens.pop(conn.id, None)
        if token is None:
            return
        if self.open_by_token.get(token) is conn:
            del self.open_by_token[token]
        try:
            self.rooms.sessions.discard(token)
        except BackplaneUnavailable as exc:
            log.warning("%r: session not discarded: %s", conn, exc)

    def closed(self, conn: Connection, code: int) -> bool | None:
        """True when the session is kept: the member's leaving waits for its grace; None
        when a resume took the session elsewhere (the member lives on there: no word)."""
        token = self.tokens.pop(conn.id, None)
        record = self.records.pop(conn.id, None)
        stored = conn.id in self._stored
        self._stored.discard(conn.id)
        self._opening_rooms.pop(conn.id, None)
        if token is None or record is None:
            return False
        if self.open_by_token.get(token) is conn:
            del self.open_by_token[token]
        waiting = self._saved.pop(token, None)
        sessions = self.rooms.sessions
        try:
            record.state = conn.state
            record.closed = True
            data = encoded(record) if code in RESUMABLE_CLOSE_CODES else None
            if data is None:  # the session ends here (a close from the client, or state not storable)
                try:
                    sessions.discard(token)
                except BackplaneUnavailable as exc:
                    log.debug("%r: session not discarded: %s", conn, exc)
                return False
            try:
                # never stored (Redis was away): nobody can have taken it, so it is new
                kept = sessions.close(token, data, self.policy.window, self.policy.grace, new=not stored)
            except BackplaneUnavailable as exc:
                log.warning("%r: session not kept: %s", conn, exc)
                return False
            if not kept:
                return None
            self.graces.start(token, conn, record, self.policy.grace)
            return True
        finally:
            if waiting is not None:
                waiting.set()

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
        opening = self._opening_rooms.get(conn.id, set())
        first = token in self.open_by_token and self.rooms.rooms_of(conn) <= opening
        if token == msg.session or not first:
            raise MessageError("resume_refused", "resume must be a connection's first message")
        sessions = self.rooms.sessions
        data = sessions.peek(msg.session)
        record = SessionRecord.loads(data) if data is not None else None
        if record is not None:
            self._check(record, ctx)  # raises, and nothing changed
        self._drop_old(msg.session)
        data = sessions.take(msg.session)
        record = SessionRecord.loads(data) if data is not None else None
        if record is None:
            self.resumes["fresh"] += 1
            lost = sorted(msg.rooms)
            ctx.reply(Resumed(recovered=False, restored=False, session=token, lost=lost))
            return
        del self.open_by_token[token]  # one resume per connection: its own token is no longer live
        old = self.graces.take(msg.session)
        new_token = secrets.token_urlsafe(24)
        try:
            adopted = sessions.claim_grace(msg.session) if record.closed else True
            assert self.numbered is not None
            result = reattach(
                self.rooms,
                self.numbered,
                conn,
                record,
                msg.rooms,
                adopted=adopted,
                old=old.conn if old is not None else None,
                opening=self._opening_rooms.pop(conn.id, set()),
            )
        except BackplaneUnavailable:
            sessions.save(msg.session, data, self.policy.window, new=True)  # type: ignore[arg-type]
            self.open_by_token[token] = conn
            raise
        # No yield from attach to the reply: the replay, then `resumed`, then live messages.
        previous_node, was_open = record.node, not record.closed
        own = self.records[conn.id]
        record.node, record.conn_id, record.closed = own.node, own.conn_id, False
        record.resumed_at = [*record.resumed_at[-self.policy.resumes_per_minute :], time.time()]
        for room in result.lost:  # a room whose history was lost starts again where it is now
            member = record.rooms[room]
            member.seq, member.epoch = result.positions[room].seq, result.positions[room].epoch
        self.records[conn.id] = record
        self.tokens[conn.id] = new_token
        self.open_by_token[new_token] = conn
        conn.state.clear()
        conn.state.update(record.state)
        request = conn.request
        if request is not None and not self._authenticates():
            request.identity = record.identity
        self.replayed += result.replayed
        self.resumes["partial" if result.lost else "recovered"] += 1
        ctx.reply(resumed_reply(result, new_token))
        self._write(new_token, record, new=True)
        sessions.discard(token)  # this connection's own first session is not used
        if was_open and previous_node != self.rooms.node:
            sessions.taken(previous_node, msg.session)  # its old connection may still be open there
        if not adopted:
            self._rejoined(ctx, set(record.rooms))

    def _check(self, record: SessionRecord, ctx: Context) -> None:
        """Refuse (an error reply, nothing changed) a resume of another identity's session,
        or one past the policy's resumes per minute."""
        if self._authenticates() and record.identity != ctx.identity:
            self.resumes["refused"] += 1
            raise MessageError("resume_refused", "this session belongs to another identity")
        recent = [t for t in record.resumed_at if t > time.time() - 60.0]
        if len(recent) >= self.policy.resumes_per_minute:
            self.resumes["refused"] += 1
            self.rate_refused += 1
            raise MessageError("rate_limited", "too many resumes of this session; try again in a minute")

    def _taken_elsewhere(self, token: str) -> None:
        """Another node resumed the session of a connection open here: drop it (its close
        finds the session gone, so the rooms hear nothing)."""
        conn = self.open_by_token.get(token)
        if conn is not None:
            conn.abort(CloseCode.ABNORMAL, "resumed elsewhere")

    def _drop_old(self, token: str) -> None:
        """The session's old connection is still open here (a half-open TCP connection the
        server has not noticed yet): drop it, and wait until its session is kept."""
        old = self.open_by_token.get(token)
        if old is None:
            return
        saved = self._saved[token] = gevent.event.Event()
        old.abort(CloseCode.ABNORMAL, "resumed elsewhere")
        saved.wait(5.0)
