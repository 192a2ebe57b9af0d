"""One node of resume_cost.py: a chat-protocol app of its own (typed_load.js's broadcast
scenario) with resumption off or on, no rate limit, no keepalive pings; the `serving` line
protocol.

    python -m benchmarks.apps.resume_node REDIS_URL|- on|off SIZE

SIZE: the bytes of JSON of a broadcast `message` before the stamp (padded to it).
"""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import BaseModel

from benchmarks.apps.serving import serve_app
from websock_actors import App, Context, Message, ResumePolicy


class Join(Message):
    type: Literal["join"]
    room: str
    name: str


class Joined(Message):
    type: Literal["joined"] = "joined"
    room: str


class Say(Message):
    type: Literal["say"]
    room: str
    text: str


class Said(Message):
    type: Literal["said"] = "said"


class Chat(BaseModel):
    type: Literal["message"] = "message"
    room: str
    name: str
    text: str
    pad: str


def build_app(mode: str, size: int) -> App:
    policy = ResumePolicy(window=120, history=1000, grace=10) if mode == "on" else None
    app = App("resume_cost", resume=policy)
    app.push(Chat)
    # the padding that makes the message `size` bytes of JSON (for a text of 5 characters)
    base = len(Chat(room="bench", name="sender", text="m1000", pad="").model_dump_json())
    pad = "x" * max(0, size - base)

    @app.handler
    def join(msg: Join, ctx: Context) -> Joined:
        ctx.join(msg.room, presence=msg.name)
        return Joined(room=msg.room)

    @app.handler
    def say(msg: Say, ctx: Context) -> Said:
        ctx.broadcast(msg.room, Chat(room=msg.room, name="sender", text=msg.text, pad=pad))
        return Said()

    return app


def main() -> None:
    url, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    serve_app(build_app(mode, size), url, lambda plane: {"publisher_errors": plane.stats.publish_failures})


if __name__ == "__main__":
    main()
