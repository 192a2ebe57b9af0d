"""Chat traffic for the failover tests: members that log what they receive, a sayer that
counts what was acknowledged, and broadcasts a replica never gets.

The logs are the chaos run's (benchmarks/chaos_check.py): its checker tells whether every
acknowledged message reached every member, or the member was told (`room_lost`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks.chaos_check import ClientLog, Names
from websock_actors.client import ClientConnection, connect
from websock_actors.errors import RequestError
from websock_actors.scale.redis_keys import Keyspace
from websock_actors.scale.redis_wire import APPEND, append_args

from .chat import join
from .redis_server import resp_command

__all__ = ["Member", "Sayer", "unreplicated_broadcasts"]


class Member:
    """A chat client of `room`, in a thread of its own (a client connection stays in the
    thread that made it), whose receipts and gap reports go to a `ClientLog`; it stops at
    the message "end"."""

    def __init__(self, name: str, url: str, names: Names, room: str = "r") -> None:
        self.log = ClientLog(name, names)
        self.url = url
        self.room = room
        self.joined = threading.Event()
        self.saw_end = threading.Event()
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self.thread.start()
        assert self.joined.wait(10), f"{name} did not join"

    def _run(self) -> None:
        try:
            with connect(self.url) as ws:
                join(ws, self.room, self.log.name)
                self.log.joined(time.monotonic(), self.room)
                self.joined.set()
                while not self.saw_end.is_set():
                    self._record(ws.recv_json(timeout=30))
        except BaseException as exc:  # reported by the test's thread
            self.failure.append(exc)
            self.joined.set()
            self.saw_end.set()

    def _record(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
        if message.get("type") == "room_lost":
            self.log.reported(now, message["room"], "room_lost")
        elif "seq" in message and "epoch" in message:
            text = message.get("text") if message.get("type") == "message" else None
            self.log.received(now, message["room"], message["seq"], message["epoch"], text)
            if text == "end":
                self.saw_end.set()


class Sayer:
    """Says numbered messages `sayer:<n>` in `room` and logs them; a refused say (the
    backplane unavailable during a failover) is logged too and never acknowledged."""

    def __init__(self, ws: ClientConnection, room: str, names: Names) -> None:
        self.ws = ws
        self.room = room
        self.log = ClientLog("sayer", names)
        self.acked = 0
        self.attempts = 0
        self._pause = threading.Event()  # never set: a short wait between refused says

    def say_one(self) -> bool:
        self.attempts += 1
        text = f"sayer:{self.attempts}"
        self.log.said(time.monotonic(), self.room, text)
        try:
            reply = self.ws.request({"type": "say", "room": self.room, "text": text})
        except RequestError as exc:
            assert "backplane_unavailable" in str(exc), exc
            self._pause.wait(0.05)
            return False
        assert reply["type"] == "said", reply
        self.log.acked(time.monotonic(), text)
        self.acked += 1
        return True

    def until(self, acked: int, most: int = 2000) -> None:
        """Say until `acked` messages were acknowledged in all (`most` attempts at most)."""
        while self.acked < acked:
            self.say_one()
            assert self.attempts < most, "the says never came through again"


def unreplicated_broadcasts(port: int, texts: list[str], room: str = "r", cluster: bool = False) -> None:
    """Numbered broadcasts that the master on `port` numbers, keeps and publishes, but that
    never reach its replica: the writes an asynchronous replica lacks when its master dies
    right after. They run the nodes' own script with replication off (redis.set_repl)."""
    keys = Keyspace("wsa", cluster=cluster)
    for text in texts:
        head = '{"type":"message","room":"' + room + '","name":"lost","text":"' + text + '","ts":0.0,"seq":'
        args = append_args("wsa", keys.name(room), "lost1", head, 1000, "", "", 3600, 1000, "", keys.publish)
        script = "redis.set_repl(redis.REPL_NONE)\n" + APPEND
        resp_command(port, "EVAL", script, 4, *keys.stream(room), *args)
