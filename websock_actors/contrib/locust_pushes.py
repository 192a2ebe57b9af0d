"""Pushes under Locust: the `type` of a pushed message, the `push_received` event, and the
counts per type reported when a run ends (on stdout and in `<csv prefix>_pushes.csv`),
added up on the master when distributed. `locust.py` counts the pushes of its users here.

Distributed (`--processes N`, or `--master` with `--worker` processes), each worker adds the
pushes it counted since its previous report to the stats report Locust sends the master
every few seconds and once more when it quits (the `report_to_master` event); the master adds
them up as they arrive (`worker_report`) and alone prints the totals and writes
`<csv prefix>_pushes.csv`, as it does the request stats. A worker never writes the file,
even when given `--csv`.

Importing this module imports locust, which monkey-patches the whole process.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from typing import Any, ClassVar

from locust.env import Environment
from locust.event import EventHook
from locust.runners import WorkerRunner

__all__ = ["PushCounts", "push_received", "push_type"]


def push_type(message: str | bytes) -> str:
    """The `type` of a pushed JSON message ("text" or "binary" for others).

    Servers that serialize `type` first (pydantic models declared with it first, as ours
    are) are read without a JSON parse: pushes are most of what a chat user receives.
    """
    if not isinstance(message, str):
        return "binary"
    if message.startswith('{"type":"'):
        end = message.find('"', 9)
        if end > 9 and "\\" not in message[9:end]:
            return message[9:end]
    try:
        kind = json.loads(message).get("type", "text")
    except (ValueError, AttributeError):
        return "text"
    return str(kind)


# Fired for each push a WebSocketUser receives: `name` (its type), `length`, `user`.
push_received: Any = EventHook()  # type: ignore[no-untyped-call]  # locust's hooks are untyped


class PushCounts:
    """The pushes per type over a test, reported when this process quits.

    In one process: what its users counted. On a worker: what its users counted since its
    previous report to the master, sent with that report and then forgotten. On the master:
    the sum of what the workers reported; it alone prints and writes the CSV.
    """

    # The key of the counts in the data of Locust's worker -> master stats reports.
    REPORT_KEY: ClassVar[str] = "websock_actors_pushes"

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()
        hooks: Any = environment.events  # locust's event hooks are untyped
        push_received.add_listener(self.count)
        hooks.test_start.add_listener(self.reset)
        hooks.report_to_master.add_listener(self.to_master)  # fired on workers only
        hooks.worker_report.add_listener(self.from_worker)  # fired on the master only
        hooks.quitting.add_listener(self.report)

    def count(self, name: str, length: int, **_: Any) -> None:
        self.counts[name] += 1

    def reset(self, **_: Any) -> None:
        self.counts.clear()
        self.started = time.monotonic()

    def to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[self.REPORT_KEY] = dict(self.counts)
        self.counts.clear()

    def from_worker(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        counts = data.get(self.REPORT_KEY)
        if isinstance(counts, dict):
            self.counts.update({str(name): int(count) for name, count in counts.items()})

    def report(self, **_: Any) -> None:
        if isinstance(self.environment.runner, WorkerRunner):
            return  # its counts went to the master
        if not self.counts:
            return
        seconds = max(time.monotonic() - self.started, 1e-9)
        lines = [f"{name} {count} ({count / seconds:,.1f}/s)" for name, count in self.counts.most_common()]
        print("pushes received: " + ", ".join(lines), flush=True)
        prefix = getattr(self.environment.parsed_options, "csv_prefix", None)
        if prefix:
            with open(f"{prefix}_pushes.csv", "w", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(["Type", "Count", "Per Second"])
                for name, count in self.counts.most_common():
                    writer.writerow([name, count, f"{count / seconds:.2f}"])
