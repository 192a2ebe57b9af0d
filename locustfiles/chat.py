"""Chat load on `examples.chat`: users spread over rooms of about 20 members join their room,
say things (each `say` with an `id`, waiting for its `said`), and now and then leave and join
again. Every member receives every `message` said in its room: those pushes are counted and
reported at the end of the run (and in `<csv prefix>_pushes.csv`).

    websock-actors run examples.chat:app --port 8000 --max-connections 20000
    locust -f locustfiles/chat.py --headless -u 1000 -r 100 -t 1m --host ws://127.0.0.1:8000

Options of this file: --room-size N (members per room, default 20), --think-time S (mean
seconds a user waits between two actions, default 5; each wait is uniform in [S/2, 3S/2]).
It runs distributed as well (`--processes 4`, or `--master` and `--worker`s): the users of
worker 1 are `user-1.0`, `user-1.1`, ... in rooms `room-1.0`, ..., so rooms keep their size.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from locust import events, task
from locust.runners import WorkerRunner

from websock_actors.contrib.locust import WebSocketUser

_numbers = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--room-size", type=int, default=20, help="members per chat room")
    parser.add_argument("--think-time", type=float, default=5.0, help="mean seconds between a user's actions")


class ChatUser(WebSocketUser):
    def option(self, name: str, default: Any) -> Any:
        options = self.environment.parsed_options
        return getattr(options, name, default) if options is not None else default

    def wait_time(self) -> float:
        return float(self.option("think_time", 5.0)) * random.uniform(0.5, 1.5)

    def on_start(self) -> None:
        number = next(_numbers)
        # Distributed, each worker numbers its own users: its index keeps names and rooms apart
        # (rooms of --room-size each, not of that many per worker).
        runner = self.environment.runner
        worker = f"{runner.worker_index}." if isinstance(runner, WorkerRunner) else ""
        self.nick = f"user-{worker}{number}"
        self.room = f"room-{worker}{number // max(1, int(self.option('room_size', 20)))}"
        self.joined = False
        self.said = 0
        super().on_start()  # connects, then on_connect joins

    def on_connect(self) -> None:
        self.join()

    def join(self) -> None:
        self.joined = self.request({"type": "join", "room": self.room, "name": self.nick}) is not None

    @task(20)
    def say(self) -> None:
        if not self.joined:
            self.join()  # after a leave, or a join that failed
            return
        self.said += 1
        self.request({"type": "say", "room": self.room, "text": f"{self.nick} says hello #{self.said}"})

    @task(1)
    def leave(self) -> None:
        if self.joined and self.request({"type": "leave", "room": self.room}) is not None:
            self.joined = False  # the next action joins again
