"""locustfiles/chat.py plus what the scale run (benchmarks/scale_chat.py) measures in the steady window.

The steady window runs from the moment every user Locust spawned has connected to the moment it
starts stopping them. In it this file records each request's response time per (type, name),
the pushes per type, the failures and this process's garbage-collector pauses, and at exit
writes them to --steady-json, the window's bounds in `time.monotonic()` (one clock for every
process of the machine). Distributed (`--processes N`), each worker writes
`<stem>.worker<index><suffix>` with what merging needs (each response time with its time, the
failures' and connects' times, counts per tenth of a second); the script merges them over the
window common to all.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import WorkerRunner

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # Locust loads this file by path: the harness is benchmarks.harness
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "locustfiles"))

from chat import ChatUser  # noqa: E402

from benchmarks.harness.stats import window_figures  # noqa: E402
from websock_actors.contrib.locust import push_received  # noqa: E402

__all__ = ["ChatUser"]

_window: dict[str, float] = {}
_target: dict[str, int] = {}  # the user count, once spawning is complete
_connected = [0]
_connect_times: list[float] = []  # of the connects before the window, for merging distributed windows
_times: dict[str, list[float]] = {}
_counts: dict[str, int] = {}
_failures: dict[str, int] = {}
_gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
_gc_start = [0.0]
_environment: list[Any] = []
_distributed = [False]  # set when the window starts: this process is a worker of a distributed run
# Distributed only: what merging the workers' windows needs.
_timed: dict[str, list[tuple[float, float]]] = {}  # (monotonic time, response time ms)
_failure_times: dict[str, list[float]] = {}
_buckets: dict[str, dict[int, int]] = {}  # tenth of a second of monotonic time -> count


@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    _environment[:] = [environment]


def _worker() -> WorkerRunner | None:
    runner = _environment[0].runner if _environment else None
    return runner if isinstance(runner, WorkerRunner) else None


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--steady-json", default="", help="where to write the steady window's figures")


@events.spawning_complete.add_listener
def _spawned(user_count: int, **_: Any) -> None:
    worker = _worker()
    _target["users"] = user_count if worker is None else worker.target_user_count
    _maybe_start()


def _maybe_start() -> None:
    if "start" not in _window and _connected[0] >= _target.get("users", sys.maxsize):
        _distributed[0] = _worker() is not None
        _window["start"] = time.monotonic()


@events.test_stopping.add_listener
def _stop(**_: Any) -> None:
    _window.setdefault("end", time.monotonic())


@events.request.add_listener
def _request(request_type: str, name: str, response_time: float, exception: Any = None, **_: Any) -> None:
    if "start" not in _window:
        if request_type == "WS" and name == "connect" and exception is None:
            _connected[0] += 1
            _connect_times.append(time.monotonic())
            _maybe_start()
        return
    if "end" in _window:
        return
    key = f"{request_type} {name}"
    _counts[key] = _counts.get(key, 0) + 1
    if exception is not None:
        _failures[key] = _failures.get(key, 0) + 1
    elif request_type != "PUSH":
        _times.setdefault(key, []).append(response_time)
    if _distributed[0]:
        now = time.monotonic()
        buckets = _buckets.setdefault(key, {})
        tenth = int(now * 10)
        buckets[tenth] = buckets.get(tenth, 0) + 1
        if exception is not None:
            _failure_times.setdefault(key, []).append(now)
        elif request_type != "PUSH":
            _timed.setdefault(key, []).append((now, response_time))


@push_received.add_listener
def _push(name: str, **_: Any) -> None:
    """Pushes are events, not requests: counted in the window as `PUSH <type>`."""
    _request("PUSH", name, 0.0)


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    elif "start" in _window and "end" not in _window:
        _gc[info["generation"]].append((time.perf_counter() - _gc_start[0]) * 1000)


gc.callbacks.append(_gc_callback)


@events.quitting.add_listener
def _write(environment: Any, **_: Any) -> None:
    path = getattr(environment.parsed_options, "steady_json", "")
    if not path or "start" not in _window:
        return
    end = _window.get("end", time.monotonic())
    seconds = end - _window["start"]
    per_name = {}
    for key, count in sorted(_counts.items()):
        per_name[key] = window_figures(count, seconds, _failures.get(key, 0), sorted(_times.get(key, [])))
    gc_pauses = {
        f"gen{gen}": {"count": len(pauses), "max_ms": max(pauses, default=0.0), "total_ms": sum(pauses)}
        for gen, pauses in _gc.items()
    }
    figures: dict[str, Any] = {"seconds": seconds, "per_name": per_name, "gc": gc_pauses}
    figures["start_monotonic"] = _window["start"]
    figures["end_monotonic"] = end
    worker = _worker()
    if worker is None:
        Path(path).write_text(json.dumps(figures, indent=2))
        return
    figures["worker_index"] = worker.worker_index
    figures["pid"] = os.getpid()
    figures["users"] = _target["users"]
    figures["timed"] = {key: [[round(t, 4), rt] for t, rt in pairs] for key, pairs in _timed.items()}
    figures["failure_times"] = _failure_times
    figures["connect_times"] = _connect_times + [t for t, _ in _timed.get("WS connect", [])]
    figures["buckets"] = _buckets
    target = Path(path)
    target.with_name(f"{target.stem}.worker{worker.worker_index}{target.suffix}").write_text(
        json.dumps(figures)
    )
