"""The chat demo's handlers in an App of the hostile-bounds benchmark's own (hostile_bounds.py).

    .venv/bin/python benchmarks/hostile_app.py [--redis URL] [--history-ttl 5] [--retained-rooms 5000]
        [--replay-messages 2000] [--replay-bytes 2097152] [--chat-limits] [--quiet-joins]
    websock-actors run benchmarks.hostile_app:app --no-patch [--redis URL]   # the same, 5 s retention

examples/chat.py builds its App at import with the default retention of an empty room's
history; the benchmark needs one short enough to wait out, so this module registers the demo's
own handlers and hooks in a new App with the policy it is given. The demo's rate limits are off
unless --chat-limits (a hostile client opens as many connections as it needs to get past them);
--quiet-joins swaps in a join and a leave that tell the room nothing (a control).

As a script it serves on 127.0.0.1 with the apps/serving line protocol (`PORT <n>`, `STATS
<json>` on SIGUSR1 and after SIGTERM: histories, sessions, rooms, the app's limit counters).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: examples/ and websock_actors/ live one level up
    sys.path.insert(0, str(ROOT))


from benchmarks.apps.serving import log_warnings, serve  # noqa: E402
from benchmarks.harness.procstat import rss_kib  # noqa: E402
from examples import chat  # noqa: E402
from websock_actors import App, Context, LimitOptions, RedisBackplane, ResumePolicy, Server  # noqa: E402

__all__ = ["app", "build_app", "policy"]


def policy(
    history_ttl: float = 5.0,
    retained_rooms: int = 5_000,
    replay_messages: int = ResumePolicy.replay_messages,
    replay_bytes: int = ResumePolicy.replay_bytes,
) -> ResumePolicy:
    """The demo's policy (window 120 s, history 1,000, grace 10 s) with the bounds given."""
    return ResumePolicy(
        window=120,
        history=1000,
        grace=10,
        history_ttl=history_ttl,
        retained_rooms=retained_rooms,
        replay_messages=replay_messages,
        replay_bytes=replay_bytes,
    )


def quiet_join(msg: chat.Join, ctx: Context) -> chat.Joined:
    """The demo's join without its member_joined broadcast (a control: what a join costs
    apart from telling the room)."""
    ctx.join(msg.room, presence=msg.name)
    chat._names(ctx)[msg.room] = msg.name
    return chat.Joined(room=msg.room, members=ctx.presence(msg.room))


def quiet_leave(msg: chat.Leave, ctx: Context) -> chat.Left:
    """The demo's leave without its member_left broadcast."""
    chat._require_member(ctx, msg.room)
    ctx.leave(msg.room)
    return chat.Left(room=msg.room)


def build_app(
    resume: ResumePolicy, *, chat_limits: bool = False, redis: str | None = None, quiet: bool = False
) -> App:
    """The chat demo's handlers and hooks in a new App with `resume`; its rate limits when
    `chat_limits`; rooms on Redis when `redis` is a URL, else in this process; `quiet`: join
    and leave tell the room nothing."""
    app = App(
        "websock_actors chat (hostile bounds)",
        "1.0.0",
        rate_limit=chat.app.rate_limit if chat_limits else None,
        resume=resume,
        backplane=RedisBackplane(redis) if redis else None,
    )
    app.add(quiet_join if quiet else chat.join)
    app.add(chat.say, rate_limit=chat.app.type_rate_limits.get("say") if chat_limits else None)
    app.add(quiet_leave if quiet else chat.leave)
    app.on_disconnect(chat.gone)
    app.on_resume(chat.back)
    app.on_member_lost(chat.lost)
    for model in (chat.MemberJoined, chat.MemberLeft, chat.ChatMessage):
        app.push(model)
    return app


app = build_app(policy())


def stats(served: App) -> dict[str, Any]:
    """What this process keeps that a client can make it keep, and the app's counters."""
    rooms: Any = served.rooms
    local = getattr(rooms, "local", rooms)  # a RedisBackplane keeps its members in a LocalRooms
    out: dict[str, Any] = {
        "rss_kib": rss_kib("self"),
        "heap_blocks": sys.getallocatedblocks(),
        "rooms_with_members": len(local.rooms),
        "deliveries": rooms.deliveries,
        "broadcast_failures": rooms.broadcast_failures,
    }
    resumption = served.resumption
    numbered = resumption.numbered if resumption is not None else None
    logs = getattr(numbered.stream, "logs", None) if numbered is not None else None
    if logs is not None:  # in process: every history, of rooms with members or retained
        out["histories"] = len(logs)
    records = getattr(rooms.sessions, "records", None)
    if records is not None:  # LocalSessions; with Redis the sessions are keys there
        out["sessions_kept"] = len(records)
        out["session_bytes"] = sum(len(record) for record, _expires in records.values())
    if resumption is not None:
        out["graced"] = len(resumption.graced)
        out["replayed"] = resumption.replayed
        out["resumes"] = dict(resumption.resumes)
    out["limit_hits"] = served.metrics().get("websock_limit_hits_total", {})
    if isinstance(rooms, RedisBackplane):
        out["subscribed"] = len(rooms.subscriber.subscribed)
        out["backplane"] = dataclasses.asdict(rooms.stats)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--redis", default=None, metavar="URL", help="rooms on this Redis")
    parser.add_argument("--history-ttl", type=float, default=5.0, help="ResumePolicy.history_ttl (s)")
    parser.add_argument("--retained-rooms", type=int, default=5_000, help="ResumePolicy.retained_rooms")
    parser.add_argument("--replay-messages", type=int, default=ResumePolicy.replay_messages)
    parser.add_argument("--replay-bytes", type=int, default=ResumePolicy.replay_bytes)
    parser.add_argument("--chat-limits", action="store_true", help="keep the demo's rate limits")
    parser.add_argument("--quiet-joins", action="store_true", help="no member_joined, member_left")
    parser.add_argument("--max-connections", type=int, default=10_000)
    args = parser.parse_args()
    log_warnings()
    served = build_app(
        policy(args.history_ttl, args.retained_rooms, args.replay_messages, args.replay_bytes),
        chat_limits=args.chat_limits,
        redis=args.redis,
        quiet=args.quiet_joins,
    )
    server = Server(served, "127.0.0.1", args.port, limits=LimitOptions(max_connections=args.max_connections))
    serve(server, lambda: stats(served))
    return 0


if __name__ == "__main__":
    sys.exit(main())
