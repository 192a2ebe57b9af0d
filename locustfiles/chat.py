"""Chat load on `examples.chat`: users spread over rooms of about 20 members join their room,
say things (each `say` with an `id`, waiting for its `said`), and now and then leave and join
again. Every member receives every `message` said in its room: those pushes are counted and
reported at the end of the run (and in `<csv prefix>_pushes.csv`).

    websock-actors run examples.chat:app --port 8000 --max-connections 20000 --rate-limit-per connection
    locust -f locustfiles/chat.py --headless -u 1000 -r 100 -t 1m --host ws://127.0.0.1:8000

Over wss:// with a certificate of a private CA, add `--ws-ca-file ca.pem` (the CA's PEM file).

Options of this file: --room-size N (members per room, default 20), --think-time S (mean
seconds a user waits between two actions, default 5; each wait is uniform in [S/2, 3S/2]),
--resume (for a server with resumption, as the chat demo: see below).
It runs distributed as well (`--processes 4`, or `--master` and `--worker`s): the users of
worker 1 are `user-1.0`, `user-1.1`, ... in rooms `room-1.0`, ..., so rooms keep their size.

With --resume, a user that lost its connection resumes its session (`WS resume`) instead of
joining again, and checks that its room's messages come in order, none missing, none twice,
across resumes: each one's `seq` is the previous one's + 1 in the same `epoch` (from the first
message after a join). Anything else is a failure of `WS order`: `gap`, `repeat` or `new
epoch`; the count of messages found in order is printed when the run ends. A resume that
reports `messages lost` shows its gap here too. The member's own notices are never sent to
it: a drop longer than the server's grace (10 s for the chat demo), after which the room
heard it leave and come back, shows as a gap. One skipped seq after a join is its own
`member_joined`, which it never gets: messages kept before the join can still reach the new
member (a node that is catching up with the room delivers them to whoever is a member by
then), so its own notice may come between two messages it does get.
"""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

from locust import events, task
from locust.runners import WorkerRunner

from websock_actors.contrib.locust import WebSocketFailure, WebSocketUser

_numbers = itertools.count()
_in_order = [0]  # room messages found in order (with --resume), by every user of this process


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--room-size", type=int, default=20, help="members per chat room")
    parser.add_argument("--think-time", type=float, default=5.0, help="mean seconds between a user's actions")
    parser.add_argument(
        "--resume", action="store_true", help="resume lost connections, check room messages' order"
    )


@events.quitting.add_listener
def _report_order(**_: Any) -> None:
    if _in_order[0]:
        print(f"room messages in order: {_in_order[0]}", flush=True)


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
        self.resume = bool(self.option("resume", False))  # read here: a worker has the run's options by now
        self.heard: dict[str, tuple[int, str]] = {}  # room -> (seq, epoch) of its last message
        self.own_notice: set[str] = set()  # rooms joined whose own notice's seq is yet to be skipped
        super().on_start()  # connects, then on_connect joins

    def on_connect(self) -> None:
        self.heard.clear()  # a new session: its rooms start again at their join
        self.join()

    def on_push(self, message: str | bytes) -> None:
        super().on_push(message)
        if self.resume and isinstance(message, str) and '"seq":' in message:
            self.check_order(json.loads(message))

    def check_order(self, message: dict[str, Any]) -> None:
        """The room's message after the last one heard, or a failure of `WS order`."""
        room, seq, epoch = message.get("room"), message.get("seq"), message.get("epoch")
        if not isinstance(room, str) or not isinstance(seq, int):
            return
        last = self.heard.get(room)
        self.heard[room] = (seq, str(epoch))
        if last is None:
            return  # the first since the join
        if str(epoch) != last[1]:
            failure = "new epoch"
        elif seq == last[0] + 1 or (seq == last[0] + 2 and room in self.own_notice):
            if seq == last[0] + 2:
                self.own_notice.discard(room)  # that was the member's own notice: once a join
            _in_order[0] += 1
            return
        else:
            failure = "repeat" if seq <= last[0] else "gap"
        self.environment.events.request.fire(
            request_type="WS",
            name="order",
            response_time=0.0,
            response_length=0,
            exception=WebSocketFailure(failure),
            context={},
        )

    def join(self) -> None:
        self.own_notice.add(self.room)
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
            self.heard.pop(self.room, None)
            if self.ws is not None:
                # Not named in a resume: the server would replay the room from that position,
                # through what was said while this user was out of it.
                self.ws.positions.pop(self.room, None)
