"""Hostile clients against the bounds of docs/design.md ("Bounds"): what they make the server keep.

    .venv/bin/python benchmarks/hostile_bounds.py                    # all three, full size
    .venv/bin/python benchmarks/hostile_bounds.py --quick            # smoke run
    .venv/bin/python benchmarks/hostile_bounds.py --only 1 --duration 60 --json out.json

Needs /usr/bin/redis-server (or --redis-server PATH); no node. The server is the chat demo's
handlers in benchmarks/hostile_app.py (its rate limits off unless --chat-limits, a retention of
--retention seconds so that the run can wait it out); every redis-server is the script's own.

1. Room churn (--modes: in process, one node + Redis): one connection joins and leaves distinct
   rooms for --duration seconds. Shown: the server's RSS, heap blocks and histories, and
   Redis's used_memory and keys, before, at the peak, after the retention and after one more
   cycle. Targets: RSS +50 MiB and used_memory +50 MB at most, both back within 10% after.
2. A resume naming --rooms rooms --messages back (--modes), while --pingers connections of
   another process ping. Shown per resume: replayed, lost rooms, bytes, time. Targets: replay
   within ResumePolicy.replay_messages and replay_bytes; ping p99 < 50 ms during the resumes.
3. Joins into a room of --members with Redis, --join-rate a second: the CPU of the server and
   of redis-server, round trips, Redis commands per join; then a control run whose joins tell
   the room nothing (hostile_app.py --quiet-joins; --no-control skips it). Target: the server
   under half a core.

The server on CPU 0, everything else on CPU 1 (--no-pin: anywhere). Exit status 0 unless
something crashed; targets are printed met or MISSED. Bounded by --max-seconds (then every
process of ours is killed by PID, exit 3); loopback only.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.pool
import gevent.socket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.preflight import add_run_options, pin_cpus  # noqa: E402
from benchmarks.harness.processes import ChildProcess, Failed, ServerProcess, pinned, raise_fd_limit  # noqa: E402
from benchmarks.harness.procstat import cpu_seconds, cpu_times, status_kib  # noqa: E402
from benchmarks.harness.raw_websocket import (  # noqa: E402
    HandshakeFailed,
    client_frame,
    read_handshake,
    request_head,
    server_frames,
)
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402
from benchmarks.harness.stats import nearest_rank as percentile  # noqa: E402
from websock_actors.client import ClientConnection, connect  # noqa: E402
from websock_actors.errors import ConnectionClosed, RequestError  # noqa: E402

APP = ROOT / "benchmarks" / "hostile_app.py"
WINDOW = 10.0  # seconds per figure of the churn's rate over time
# Redis's ceiling of the first scenario is given in MB (used_memory is bytes), the RSS's in MiB.
MB = 1_000_000
CHILDREN: list[Any] = []  # every process of ours, for the watchdog to kill by PID


# -- processes -------------------------------------------------------------------------------


class Node(ServerProcess):
    """One hostile_app.py server process; `stats()` is its STATS line (SIGUSR1)."""

    def __init__(self, name: str, cpu: int | None, log: Path, options: list[str]) -> None:
        super().__init__(name, pinned(cpu, [sys.executable, str(APP), *options]), log, started=CHILDREN)

    def rss_kib(self, key: str = "VmRSS") -> int:
        return status_kib(self.pid, key)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait in this hub (so that our clients answer the server's closes),
        then ChildProcess.stop: SIGKILL if it is still there after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                gevent.sleep(0.05)
        return super().stop(5)

    def tracebacks(self) -> int:
        return self.log_path.read_text(errors="replace").count("Traceback")


def start_redis(args: argparse.Namespace, workdir: Path) -> RedisServer:
    server = RedisServer(args.redis_server, args.client_cpu, workdir)
    CHILDREN.append(server)
    return server


def node_options(args: argparse.Namespace, redis_url: str | None, *extra: str) -> list[str]:
    options = ["--history-ttl", str(args.retention), *extra]
    if redis_url is not None:
        options += ["--redis", redis_url]
    if args.chat_limits:
        options.append("--chat-limits")
    return options


def used_memory(server: RedisServer) -> int:
    return int(server.client.info("memory")["used_memory"])


def count_keys(server: RedisServer, pattern: str) -> int:
    return sum(1 for _ in server.client.scan_iter(match=pattern, count=1000))


# -- figures ---------------------------------------------------------------------------------


def latency_ms(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 0.5) * 1000, 2),
        "p99": round(percentile(ordered, 0.99) * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


def fmt_latency(figures: dict[str, Any]) -> str:
    if not figures.get("n"):
        return "no samples"
    return f"{figures['p50']:.2f} / {figures['p99']:.2f} / {figures['max']:.2f} ms (n={figures['n']})"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def within(after: float, before: float, share: float) -> bool:
    return abs(after - before) <= share * before


# -- 1. room churn ---------------------------------------------------------------------------


def churn_cycle(ws: ClientConnection, room: str, refused: dict[str, int]) -> None:
    """Join and leave `room`, each waiting for its answer; a rate-limited one (--chat-limits)
    is sent again after the wait the server asked for."""
    for message in ({"type": "join", "room": room, "name": "churner"}, {"type": "leave", "room": room}):
        while True:
            try:
                ws.request(message, timeout=10)
                break
            except RequestError as exc:
                refused[exc.code] = refused.get(exc.code, 0) + 1
                if exc.code != "rate_limited":
                    raise
                gevent.sleep(float(exc.reply.get("retry_after_ms") or 20) / 1000)  # type: ignore[arg-type]


def wait_retention(args: argparse.Namespace, redis_server: RedisServer | None, since: float) -> float:
    """Wait out the retention of histories emptied at `since`: in process, its length and a
    second; with Redis, until the last history's keys expired too (Redis expires keys in the
    background, a sample at a time). Returns the seconds since `since`."""
    if redis_server is None:
        gevent.sleep(max(0.0, since + args.retention + 1 - time.monotonic()))
    else:
        deadline = since + args.retention + 60
        while time.monotonic() < deadline:
            # SCAN leaves out keys past their expiry that Redis has not reclaimed yet, DBSIZE
            # counts them: done when none is left and no such key holds memory any more.
            if (
                time.monotonic() - since > args.retention
                and count_keys(redis_server, "wsa:seq:*") == 0
                and int(redis_server.client.dbsize()) <= count_keys(redis_server, "*")  # SCAN may repeat
            ):
                break
            gevent.sleep(0.5)
    return round(time.monotonic() - since, 1)


def run_churn(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    redis_server = start_redis(args, workdir) if mode == "redis" else None
    node: Node | None = None
    result: dict[str, Any] = {"scenario": 1, "mode": mode, "duration_s": args.duration}
    try:
        url = redis_server.url if redis_server is not None else None
        node = Node(f"churn-{mode}", args.server_cpu, workdir / f"churn-{mode}.log", node_options(args, url))
        ws = connect(node.url, max_queue=0, open_timeout=10)
        refused: dict[str, int] = {}
        for i in range(20):  # warm-up: first calls import and build what every later one reuses
            churn_cycle(ws, f"warm{i}", refused)
        wait_retention(args, redis_server, time.monotonic())  # the warm-up's histories go first
        rss_before = node.rss_kib()
        heap_before = node.stats()["heap_blocks"]
        mem_before = used_memory(redis_server) if redis_server is not None else 0
        keys_before = int(redis_server.client.dbsize()) if redis_server is not None else 0
        peak = {"rss": rss_before, "mem": mem_before}
        stop = gevent.event.Event()

        def sample() -> None:
            # A greenlet of this hub: it runs whenever the churning client waits for a reply.
            while not stop.wait(0.25):
                peak["rss"] = max(peak["rss"], node.rss_kib())
                if redis_server is not None:
                    peak["mem"] = max(peak["mem"], used_memory(redis_server))

        sampler = gevent.spawn(sample)
        started = time.monotonic()
        cycles = 0
        window_start, window_cycles, rates = started, 0, []  # cycles a second, per WINDOW
        while time.monotonic() - started < args.duration:
            churn_cycle(ws, f"c{cycles}", refused)
            cycles += 1
            now = time.monotonic()
            if now - window_start >= WINDOW:
                rates.append(round((cycles - window_cycles) / (now - window_start)))
                window_start, window_cycles = now, cycles
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join(5)
        stats_end = node.stats()
        result.update(
            cycles=cycles,
            cycles_per_s=round(cycles / elapsed, 1),
            cycles_per_s_by_window=rates,
            session_bytes_end=stats_end.get("session_bytes"),
            refused=refused,
            rss_before_mib=rss_before / 1024,
            rss_peak_mib=max(peak["rss"], node.rss_kib("VmHWM")) / 1024,
            histories_end=stats_end.get("histories"),
            retained_dropped=stats_end["limit_hits"].get("retained_rooms"),
            heap_blocks_before=heap_before,
            heap_blocks_end=stats_end["heap_blocks"],
        )
        if redis_server is not None:
            result.update(
                redis_before_mb=mem_before / MB,
                redis_peak_mb=peak["mem"] / MB,
                dbsize_before=keys_before,
                dbsize_end=int(redis_server.client.dbsize()),
                retained_end=int(redis_server.client.zcard("wsa:retained")),
                seq_keys_end=count_keys(redis_server, "wsa:seq:*"),
                session_bytes_end=sum(
                    int(redis_server.client.strlen(key))
                    for key in redis_server.client.scan_iter(match="wsa:session:*", count=1000)
                ),
            )

        result["expired_after_s"] = wait_retention(args, redis_server, time.monotonic())
        stats_after = node.stats()
        result.update(
            rss_after_mib=node.rss_kib() / 1024,
            histories_after=stats_after.get("histories"),
            heap_blocks_after=stats_after["heap_blocks"],
        )
        if redis_server is not None:
            result.update(
                redis_after_mb=used_memory(redis_server) / MB,
                dbsize_after=int(redis_server.client.dbsize()),
                retained_after=int(redis_server.client.zcard("wsa:retained")),
                retained_bytes_after=int(redis_server.client.memory_usage("wsa:retained", samples=0) or 0),
                seq_keys_after=count_keys(redis_server, "wsa:seq:*"),
                history_keys_after=count_keys(redis_server, "wsa:history:*"),
            )
        # One more cycle: whatever waits for new traffic to be dropped goes now.
        churn_cycle(ws, "poke", refused)
        gevent.sleep(0.2)
        stats_poke = node.stats()
        result.update(
            rss_poke_mib=node.rss_kib() / 1024,
            histories_poke=stats_poke.get("histories"),
            heap_blocks_poke=stats_poke["heap_blocks"],
        )
        if redis_server is not None:
            result.update(
                redis_poke_mb=used_memory(redis_server) / MB,
                retained_poke=int(redis_server.client.zcard("wsa:retained")),
            )
        ws.close(timeout=5)
        growth = result["rss_peak_mib"] - result["rss_before_mib"]
        checks = {
            "rss_growth_under_50_mib": growth < 50,
            "rss_back_within_10pct": within(result["rss_after_mib"], result["rss_before_mib"], 0.10),
        }
        if redis_server is not None:
            checks["redis_growth_under_50_mb"] = (peak["mem"] - mem_before) / MB < 50
            checks["redis_back_within_10pct"] = within(result["redis_after_mb"], mem_before / MB, 0.10)
        result["checks"] = checks
    finally:
        if node is not None:
            result["node_exit"] = node.stop()
            result["tracebacks"] = node.tracebacks()
        if redis_server is not None:
            redis_server.stop()
    return result


def report_churn(result: dict[str, Any]) -> None:
    mode = "in process" if result["mode"] == "local" else "one node + Redis"
    print(f"\n1. room churn, {mode}: {result['cycles']:,} rooms cycled in {result['duration_s']:.0f} s "
          f"({result['cycles_per_s']:,.0f} join+leave/s); refused {result['refused'] or 'none'}")  # fmt: skip
    print("   | what | before | peak / end of churn | after retention | after one more cycle |")
    print("   |---|---:|---:|---:|---:|")
    print(f"   | server RSS (MiB) | {result['rss_before_mib']:.1f} | {result['rss_peak_mib']:.1f} | "
          f"{result['rss_after_mib']:.1f} | {result['rss_poke_mib']:.1f} |")  # fmt: skip
    if result.get("histories_end") is not None:
        print(f"   | histories in the server | - | {result['histories_end']:,} | "
              f"{result['histories_after']:,} | {result['histories_poke']:,} |")  # fmt: skip
    print(f"   | allocated heap blocks | {result['heap_blocks_before']:,} | {result['heap_blocks_end']:,} | "
          f"{result['heap_blocks_after']:,} | {result['heap_blocks_poke']:,} |")  # fmt: skip
    if "redis_before_mb" in result:
        print(f"   | Redis used_memory (MB) | {result['redis_before_mb']:.2f} | "
              f"{result['redis_peak_mb']:.2f} | {result['redis_after_mb']:.2f} | "
              f"{result['redis_poke_mb']:.2f} |")  # fmt: skip
        print(f"   | Redis DBSIZE | {result['dbsize_before']} | {result['dbsize_end']:,} | "
              f"{result['dbsize_after']:,} | - |")  # fmt: skip
        print(f"   | ZCARD wsa:retained | - | {result['retained_end']:,} | {result['retained_after']:,} | "
              f"{result['retained_poke']:,} |")  # fmt: skip
        print(f"   | wsa:seq:* keys | - | {result['seq_keys_end']:,} | {result['seq_keys_after']:,} | - |")
        print(f"   MEMORY USAGE wsa:retained after the retention: {result['retained_bytes_after']:,} B")
        print(f"   the last history expired and was reclaimed {result['expired_after_s']} s after the churn "
              f"(retention {result.get('retention_s', '?')} s)")  # fmt: skip
    print(f"   join+leave/s per {WINDOW:.0f} s: {result['cycles_per_s_by_window']}; the session's record "
          f"(its rooms and ctx.state, written at every join and leave) at the end: "
          f"{result['session_bytes_end']:,} B")  # fmt: skip
    print(f"   retained_rooms limit hits: {result['retained_dropped']}")
    for name, ok in result["checks"].items():
        print(f"   {name}: {verdict(ok)}")


# -- 2. a resume far back --------------------------------------------------------------------


class Sayer:
    """A member of some rooms that says messages without ids (no reply), `window` at a
    time, each batch followed by a ping: its pong comes once the server handled them."""

    def __init__(self, url: str, rooms: list[str], window: int) -> None:
        self.rooms = rooms
        self.window = window
        self.errors = 0
        self.ws = connect(url, max_queue=0, on_push=self._push, open_timeout=10)
        for room in rooms:
            self.ws.request({"type": "join", "room": room, "name": "sayer"}, timeout=10)

    def _push(self, message: str | bytes) -> None:
        if isinstance(message, str) and '"type":"error"' in message[:40]:
            self.errors += 1

    def say(self, count: int, text: str) -> None:
        batch = 0
        for i in range(count):
            for room in self.rooms:
                self.ws.send(json.dumps({"type": "say", "room": room, "text": f"{i} {text}"}))
                batch += 1
                if batch >= self.window:
                    self.ws.ping(timeout=30)
                    batch = 0
        self.ws.ping(timeout=30)


def read_positions(ws: ClientConnection, rooms: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Read until a numbered message of every room came: each room's last (seq, epoch)."""
    positions: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while set(positions) != rooms:
        message = ws.recv_json(timeout=max(0.01, deadline - time.monotonic()))
        if "seq" in message and message.get("room") in rooms:
            positions[message["room"]] = {"seq": message["seq"], "epoch": message["epoch"]}
    while True:  # what else came meanwhile moves the positions on
        try:
            message = ws.recv_json(timeout=0.2)
        except TimeoutError:
            return positions
        if "seq" in message and message.get("room") in rooms:
            positions[message["room"]] = {"seq": message["seq"], "epoch": message["epoch"]}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what}")
        gevent.sleep(0.1)


def resume_once(url: str, token: str, positions: dict[str, dict[str, Any]], index: int) -> dict[str, Any]:
    """A new connection resumes `token` from `positions`: the answer and what came before it."""
    ws = connect(url, max_queue=1_000_000, open_timeout=10)
    try:
        request_id = f"far-{index}"
        ws.send(json.dumps({"type": "resume", "id": request_id, "session": token, "rooms": positions}))
        started = time.monotonic()
        messages = 0
        payload = 0
        first_at: float | None = None
        while True:
            text = ws.recv(timeout=30)
            assert isinstance(text, str)
            if first_at is None:
                first_at = time.monotonic()
            if '"type":"resumed"' in text[:80] or '"type":"error"' in text[:80]:
                answer: dict[str, Any] = json.loads(text)
                break
            messages += 1
            payload += len(text.encode())
        ended = time.monotonic()
        return {
            "answer": answer,
            "window": (started, ended),
            "took_ms": round((ended - started) * 1000, 2),
            "messages_before": messages,
            "bytes_before": payload,
        }
    finally:
        ws.close(timeout=5)


def run_resume(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    redis_server = start_redis(args, workdir) if mode == "redis" else None
    node: Node | None = None
    pinger: ChildProcess | None = None
    result: dict[str, Any] = {
        "scenario": 2,
        "mode": mode,
        "rooms": args.rooms,
        "messages_per_room": args.messages,
        "replay_messages": args.replay_messages,
        "replay_bytes": args.replay_bytes,
    }
    try:
        url = redis_server.url if redis_server is not None else None
        extra = ["--replay-messages", str(args.replay_messages), "--replay-bytes", str(args.replay_bytes)]
        node = Node(
            f"resume-{mode}", args.server_cpu, workdir / f"resume-{mode}.log", node_options(args, url, *extra)
        )
        rooms = [f"far{i}" for i in range(args.rooms)]
        sayers = [Sayer(node.url, rooms[k :: args.sayers], args.window) for k in range(args.sayers)]
        sessions: list[tuple[str, dict[str, dict[str, Any]]]] = []
        resumers = []
        for _ in range(args.resumers):
            ws = connect(node.url, max_queue=100_000, open_timeout=10)
            for room in rooms:
                ws.request({"type": "join", "room": room, "name": "resumer"}, timeout=10)
            resumers.append(ws)
        for sayer in sayers:  # one message per room: the resumers learn each room's position
            sayer.say(1, "before the cut")
        for ws in resumers:
            assert ws.session is not None
            sessions.append((ws.session, read_positions(ws, set(rooms), 30)))
            ws.abort()  # the TCP connection dropped, no close frame: the session waits for a resume
        wait_for(lambda: node.stats()["graced"] >= args.resumers, 15, "the server to keep the sessions")

        text = "x" * args.text_size
        started = time.monotonic()
        gevent.joinall([gevent.spawn(s.say, args.messages, text) for s in sayers], raise_error=True)
        said = args.messages * len(rooms)
        result["said"] = said
        result["says_per_s"] = round(said / (time.monotonic() - started))
        result["say_errors"] = sum(s.errors for s in sayers)

        seconds = 2 + args.resumers * args.resume_gap + 10  # an upper bound: it is stopped at the end
        pinger = ChildProcess(
            "pingers",
            pinned(args.client_cpu, [sys.executable, __file__, "--pinger", node.url, "--pingers",
                                     str(args.pingers), "--ping-interval", str(args.ping_interval),
                                     "--pinger-seconds", str(seconds)]),
            stdin=True,
        )  # fmt: skip
        CHILDREN.append(pinger)
        pinger.expect("stdout", "READY", 30)
        gevent.sleep(1.0)  # round trips without a resume first
        resumes = []
        for index, (token, positions) in enumerate(sessions):
            resumes.append(resume_once(node.url, token, positions, index))
            gevent.sleep(args.resume_gap)
        pinger.send_line("stop")
        samples = json.loads(pinger.expect("stdout", "{", 30))["samples"]
        during: list[float] = []
        outside: list[float] = []
        windows = [r["window"] for r in resumes]
        for sent, rtt in samples:
            overlaps = any(sent <= end and sent + rtt >= start for start, end in windows)
            (during if overlaps else outside).append(rtt)
        result["ping_during_resumes_ms"] = latency_ms(during)
        result["ping_outside_ms"] = latency_ms(outside)
        result["ping_all_ms"] = latency_ms(during + outside)
        result["resumes"] = [
            {
                "replayed": r["answer"].get("replayed"),
                "lost": len(r["answer"].get("lost", [])),
                "restored": r["answer"].get("restored"),
                "recovered": r["answer"].get("recovered"),
                "type": r["answer"].get("type"),
                "code": r["answer"].get("code"),
                "messages_before": r["messages_before"],
                "bytes_before": r["bytes_before"],
                "took_ms": r["took_ms"],
            }
            for r in resumes
        ]
        stats = node.stats()
        result["replay_limit_hits"] = stats["limit_hits"].get("replay")
        result["server_replayed_total"] = stats.get("replayed")
        fit = args.replay_messages // max(1, args.messages)  # whole rooms the message budget holds
        result["checks"] = {
            "replay_within_replay_messages": all(
                (r["replayed"] or 0) <= args.replay_messages for r in result["resumes"]
            ),
            "replay_within_replay_bytes": all(
                r["bytes_before"] <= args.replay_bytes for r in result["resumes"]
            ),
            "replayed_equals_messages_before": all(
                r["replayed"] == r["messages_before"] for r in result["resumes"]
            ),
            "rooms_past_the_budget_lost": all(
                r["lost"] >= args.rooms - fit and r["restored"] for r in result["resumes"]
            ),
            "ping_p99_under_50_ms": result["ping_during_resumes_ms"].get("p99", float("inf")) < 50,
        }
        for sayer in sayers:
            sayer.ws.close(timeout=5)
    finally:
        if pinger is not None:
            pinger.stop(10)
        if node is not None:
            result["node_exit"] = node.stop()
            result["tracebacks"] = node.tracebacks()
        if redis_server is not None:
            redis_server.stop()
    return result


def report_resume(result: dict[str, Any]) -> None:
    mode = "in process" if result["mode"] == "local" else "one node + Redis"
    print(f"\n2. resume far back, {mode}: {result['rooms']} rooms x {result['messages_per_room']} messages "
          f"({result['said']:,} said at {result['says_per_s']:,}/s, errors {result['say_errors']}); "
          f"policy replay_messages={result['replay_messages']:,}, "
          f"replay_bytes={result['replay_bytes']:,}")  # fmt: skip
    print("   | resume | answer | replayed | rooms lost | messages before `resumed` | bytes before | took |")
    print("   |---|---|---:|---:|---:|---:|---:|")
    for i, r in enumerate(result["resumes"]):
        answer = f"{r['type']} restored={r['restored']}" + (f" {r['code']}" if r["code"] else "")
        print(f"   | {i + 1} | {answer} | {r['replayed']} | {r['lost']} | {r['messages_before']:,} | "
              f"{r['bytes_before']:,} | {r['took_ms']:.1f} ms |")  # fmt: skip
    print(f"   replay limit hits: {result['replay_limit_hits']}")
    print(f"   pings p50 / p99 / max: during the resumes {fmt_latency(result['ping_during_resumes_ms'])}; "
          f"outside {fmt_latency(result['ping_outside_ms'])}")  # fmt: skip
    for name, ok in result["checks"].items():
        print(f"   {name}: {verdict(ok)}")


# -- the pingers (a process of their own: the resumer's reading must not delay them) -------


def pinger_main(args: argparse.Namespace) -> int:
    conns = [connect(args.pinger, max_queue=16, open_timeout=10) for _ in range(args.pingers)]
    samples: list[tuple[float, float]] = []
    failures = 0
    stop = gevent.event.Event()

    def ping(ws: ClientConnection, offset: float) -> None:
        nonlocal failures
        gevent.sleep(offset)  # spread over the interval, not all at once
        next_at = time.monotonic()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                samples.append((sent, ws.ping(timeout=5)))
            except (TimeoutError, ConnectionClosed):
                failures += 1
            next_at = max(next_at + args.ping_interval, time.monotonic())
            stop.wait(next_at - time.monotonic())

    def watch_stdin() -> None:
        # A line on stdin (or its end) stops the pingers; gevent's wait_read keeps the hub free.
        gevent.socket.wait_read(sys.stdin.fileno(), timeout=args.pinger_seconds)
        stop.set()

    greenlets = [gevent.spawn(ping, ws, i * args.ping_interval / len(conns)) for i, ws in enumerate(conns)]
    print("READY", flush=True)
    try:
        watch_stdin()
    except TimeoutError:  # --pinger-seconds passed without a word from the driver
        stop.set()
    gevent.joinall(greenlets, timeout=10)
    for ws in conns:
        ws.abort()
    print(json.dumps({"samples": [[round(s, 6), round(r, 6)] for s, r in samples], "failures": failures}))
    return 0


# -- 3. joins into a big room ----------------------------------------------------------------


class RawMember:
    """A room member that only reads: a plain socket, a WebSocket handshake and one `join`,
    then frames are counted and dropped without decoding (2,000 of these read every
    broadcast; a full client would make this process the bottleneck). Pings are answered,
    a close is answered and ends it."""

    def __init__(self, port: int, room: str, name: str) -> None:
        self.sock = gevent.socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.settimeout(None)
        self.sock.sendall(request_head(port))
        try:
            rest = read_handshake(self.sock, limit=1 << 30)
        except HandshakeFailed as exc:
            raise Failed(f"handshake refused: {exc}") from None
        self.buffer = bytearray(rest)
        self.frames = 0
        self.joined = gevent.event.Event()
        self.closed = False
        self.send(1, json.dumps({"type": "join", "id": 1, "room": room, "name": name}).encode())

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(client_frame(opcode, payload))

    def run(self) -> None:
        try:
            while not self.closed:
                self._parse()
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buffer += data
        except OSError:
            pass
        finally:
            self.closed = True
            self.sock.close()

    def _parse(self) -> None:
        for opcode, payload in server_frames(self.buffer):
            if opcode == 1:
                self.frames += 1
                if not self.joined.is_set() and b'"type":"joined"' in payload[:64]:
                    self.joined.set()
            elif opcode == 9:
                self.send(10, payload)
            elif opcode == 8:
                self.send(8, payload[:2])
                self.closed = True

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def run_big_room(args: argparse.Namespace, workdir: Path, quiet: bool = False) -> dict[str, Any]:
    redis_server = start_redis(args, workdir)
    node: Node | None = None
    members: list[RawMember] = []
    readers: list[gevent.Greenlet[Any, Any]] = []
    churners: list[ClientConnection] = []
    result: dict[str, Any] = {
        "scenario": 3,
        "mode": "redis-quiet" if quiet else "redis",
        "members": args.members,
        "join_rate": args.join_rate,
        "churn_seconds": args.churn_seconds,
    }
    try:
        options = node_options(args, redis_server.url, *(["--quiet-joins"] if quiet else []))
        node = Node(
            "big-room", args.server_cpu, workdir / f"big-room{'-quiet' if quiet else ''}.log", options
        )
        opening = time.monotonic()
        pool = gevent.pool.Pool(50)  # joins at once: each is answered with the whole presence

        def add_member(index: int) -> None:
            member = RawMember(node.port, "big", f"m{index}")
            members.append(member)
            readers.append(gevent.spawn(member.run))
            if not member.joined.wait(60):
                raise Failed(f"member {index} got no `joined` in 60 s")

        for index in range(args.members):
            pool.spawn(add_member, index)
        pool.join(raise_error=True)
        result["setup_s"] = round(time.monotonic() - opening, 1)
        churners = [connect(node.url, max_queue=0, open_timeout=10) for _ in range(args.churners)]
        gevent.sleep(1.0)  # the setup's last member_joined frames are read before the count

        idle = list(range(args.churners))
        inside: list[int] = []
        busy: set[int] = set()
        join_rtts: list[float] = []
        leave_rtts: list[float] = []
        done = {"joins": 0, "leaves": 0, "skipped": 0, "errors": 0}

        def act(index: int, kind: str) -> None:
            message: dict[str, Any] = {"type": kind, "room": "big"}
            if kind == "join":
                message["name"] = f"churner{index}"
            started = time.monotonic()
            try:
                churners[index].request(message, timeout=10)
            except (RequestError, ConnectionClosed, TimeoutError):
                done["errors"] += 1
            else:
                (join_rtts if kind == "join" else leave_rtts).append(time.monotonic() - started)
                done["joins" if kind == "join" else "leaves"] += 1
            finally:
                busy.discard(index)
                (inside if kind == "join" else idle).append(index)

        frames0 = sum(m.frames for m in members)
        cpu0 = (cpu_seconds(node.pid), cpu_seconds(redis_server.pid))
        split0 = cpu_times(node.pid)
        calls0 = redis_server.calls()
        started = time.monotonic()
        tick = 1.0 / args.join_rate
        next_tick = started
        actors: list[gevent.Greenlet[Any, Any]] = []
        while time.monotonic() - started < args.churn_seconds:
            if len(inside) >= args.churners // 2:  # a leave per join: the room stays the same size
                index = inside.pop(0)
                busy.add(index)
                actors.append(gevent.spawn(act, index, "leave"))
            if idle:
                index = idle.pop(0)
                busy.add(index)
                actors.append(gevent.spawn(act, index, "join"))
            else:
                done["skipped"] += 1
            next_tick += tick
            gevent.sleep(max(0.0, next_tick - time.monotonic()))
        gevent.joinall(actors, timeout=15)
        elapsed = time.monotonic() - started
        cpu1 = (cpu_seconds(node.pid), cpu_seconds(redis_server.pid))
        split1 = cpu_times(node.pid)
        calls1 = redis_server.calls()
        gevent.sleep(0.5)  # the last frames of the churn reach the members
        frames = sum(m.frames for m in members) - frames0
        joins = max(1, done["joins"])
        delta = {k: v - calls0.get(k, 0) for k, v in calls1.items() if v - calls0.get(k, 0) > 0}
        delta.pop("info", None)  # ours (the commandstats reads)
        result.update(
            done,
            elapsed_s=round(elapsed, 1),
            server_cpu=round((cpu1[0] - cpu0[0]) / elapsed, 3),
            server_user=round((split1[0] - split0[0]) / elapsed, 3),
            server_system=round((split1[1] - split0[1]) / elapsed, 3),
            redis_cpu=round((cpu1[1] - cpu0[1]) / elapsed, 3),
            joins_per_s=round(done["joins"] / elapsed, 1),
            join_ms=latency_ms(join_rtts),
            leave_ms=latency_ms(leave_rtts),
            member_frames=frames,
            member_frames_per_s=round(frames / elapsed),
            redis_calls_per_join={k: round(v / joins, 2) for k, v in sorted(delta.items())},
            zrange_calls=delta.get("zrange", 0),
            members_open=sum(not m.closed for m in members),
        )
        result["checks"] = {"server_cpu_under_half_a_core": result["server_cpu"] < 0.5}
        for ws in churners:
            ws.abort()
    finally:
        if node is not None:
            result["node_exit"] = node.stop(30)
            result["tracebacks"] = node.tracebacks()
        for member in members:
            member.close()
        gevent.joinall(readers, timeout=10)
        gevent.killall([g for g in readers if not g.dead], timeout=5)
        redis_server.stop()
    return result


def report_big_room(result: dict[str, Any]) -> None:
    what = (
        " (control: join and leave without member_joined, member_left)" if "quiet" in result["mode"] else ""
    )
    print(f"\n3. joins into a room of {result['members']:,} with Redis{what}: {result['joins']:,} joins and "
          f"{result['leaves']:,} leaves in {result['elapsed_s']} s ({result['joins_per_s']}/s; asked "
          f"{result['join_rate']}/s; skipped {result['skipped']}, errors {result['errors']}); "
          f"setup {result['setup_s']} s")  # fmt: skip
    print(f"   CPU (of one core): server {result['server_cpu']:.0%} (user {result['server_user']:.0%}, "
          f"system {result['server_system']:.0%}), redis-server {result['redis_cpu']:.0%}")  # fmt: skip
    print(f"   join round trip p50 / p99 / max: {fmt_latency(result['join_ms'])}; "
          f"leave {fmt_latency(result['leave_ms'])}")  # fmt: skip
    print(f"   frames read by the members: {result['member_frames']:,} "
          f"({result['member_frames_per_s']:,}/s); still open {result['members_open']:,}")  # fmt: skip
    print(f"   Redis commands per join: {result['redis_calls_per_join']}")
    print(f"   ZRANGE calls during the churn: {result['zrange_calls']}")
    for name, ok in result["checks"].items():
        print(f"   {name}: {verdict(ok)}")


# -- main ------------------------------------------------------------------------------------


def kill_children() -> None:
    for child in CHILDREN:
        proc = child.proc
        if proc.poll() is None:
            proc.kill()  # by its PID: taskset execs, so it is the process itself


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="1,2,3", help="scenarios, comma separated")
    parser.add_argument("--modes", default="local,redis", help="for scenarios 1 and 2: local, redis")
    parser.add_argument("--quick", action="store_true", help="a small run of everything")
    parser.add_argument("--duration", type=float, default=None, help="scenario 1: seconds of churn per mode")
    parser.add_argument("--retention", type=float, default=None, help="ResumePolicy.history_ttl (s)")
    parser.add_argument("--chat-limits", action="store_true", help="the demo's rate limits on")
    parser.add_argument("--rooms", type=int, default=None, help="scenario 2: rooms of the resumed session")
    parser.add_argument("--messages", type=int, default=None, help="scenario 2: messages per room")
    parser.add_argument("--replay-messages", type=int, default=None, help="ResumePolicy.replay_messages")
    parser.add_argument("--replay-bytes", type=int, default=2 << 20, help="ResumePolicy.replay_bytes")
    parser.add_argument("--text-size", type=int, default=100, help="scenario 2: characters per message")
    parser.add_argument("--sayers", type=int, default=5)
    parser.add_argument("--window", type=int, default=64, help="says per sayer between two pings")
    parser.add_argument("--resumers", type=int, default=None, help="sessions resumed one after the other")
    parser.add_argument("--resume-gap", type=float, default=1.0, help="seconds after each resume")
    parser.add_argument("--pingers", type=int, default=20)
    parser.add_argument("--ping-interval", type=float, default=0.01)
    parser.add_argument("--members", type=int, default=None, help="scenario 3: members of the big room")
    parser.add_argument("--join-rate", type=float, default=40.0, help="scenario 3: joins a second")
    parser.add_argument(
        "--churners", type=int, default=20, help="scenario 3: connections that join and leave"
    )
    parser.add_argument("--churn-seconds", type=float, default=None)
    parser.add_argument(
        "--no-control", action="store_true", help="scenario 3: no second run with quiet joins"
    )
    add_run_options(parser, max_seconds=1200)
    parser.add_argument("--logs", type=Path, default=None, help="keep the server logs in this directory")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    # the pinger process (started by scenario 2 itself)
    parser.add_argument("--pinger", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pinger-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    args.duration = pick(args.duration, 60.0, 5.0)
    args.retention = pick(args.retention, 5.0, 2.0)
    args.rooms = pick(args.rooms, 50, 10)
    args.messages = pick(args.messages, 950, 100)
    args.replay_messages = pick(args.replay_messages, 2000, 250)
    args.resumers = pick(args.resumers, 5, 2)
    args.members = pick(args.members, 2000, 200)
    args.churn_seconds = pick(args.churn_seconds, 30.0, 10.0)
    args.scenarios = sorted({int(s) for s in args.only.split(",") if s.strip()})
    args.mode_list = [m for m in args.modes.split(",") if m]
    if set(args.scenarios) - {1, 2, 3} or set(args.mode_list) - {"local", "redis"}:
        parser.error("--only takes 1, 2, 3; --modes takes local, redis")
    if args.pinger is not None and not args.pinger.startswith("ws://127.0.0.1:"):
        parser.error("the pingers connect to 127.0.0.1 only")
    return args


def main() -> int:
    args = parse_args()
    if args.pinger is not None:
        return pinger_main(args)
    pin_cpus(args)
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})  # off the server's CPU
    if not Path(args.redis_server).exists() and (
        ({1, 2} & set(args.scenarios) and "redis" in args.mode_list) or 3 in args.scenarios
    ):
        sys.exit(f"no redis-server at {args.redis_server}")
    hard = raise_fd_limit()  # the server inherits it
    if hard < args.members + 500:
        sys.exit(f"only {hard} file descriptors allowed; --members {args.members} needs more")

    def expired(signum: int, frame: Any) -> None:
        print(f"--max-seconds {args.max_seconds} elapsed: killing our processes", flush=True)
        kill_children()
        os._exit(3)

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(args.max_seconds)
    tmp = tempfile.TemporaryDirectory(prefix="hostile_bounds-")
    workdir = args.logs or Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"hostile_bounds: scenarios {args.scenarios}, modes {args.mode_list}; CPUs: server "
          f"{args.server_cpu}, clients and Redis {args.client_cpu}; load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}", flush=True)  # fmt: skip
    results: list[dict[str, Any]] = []
    crashed: list[str] = []
    begun = time.monotonic()

    def runs() -> Iterator[tuple[str, Callable[[], dict[str, Any]], Callable[[dict[str, Any]], None]]]:
        for mode in args.mode_list if 1 in args.scenarios else []:
            yield f"1/{mode}", functools.partial(run_churn, mode, args, workdir), report_churn
        for mode in args.mode_list if 2 in args.scenarios else []:
            yield f"2/{mode}", functools.partial(run_resume, mode, args, workdir), report_resume
        if 3 in args.scenarios:
            yield "3/redis", lambda: run_big_room(args, workdir), report_big_room
            if not args.no_control:
                yield "3/redis-quiet", lambda: run_big_room(args, workdir, quiet=True), report_big_room

    for name, run, report in runs():
        print(f"running {name} ...", flush=True)
        try:
            result = run()
        except Exception:
            crashed.append(f"{name}:\n{traceback.format_exc()}")
            print(f"{name} failed:\n{crashed[-1]}", flush=True)
            kill_children()
            continue
        result["retention_s"] = args.retention
        results.append(result)
        report(result)
        if result.get("tracebacks") or result.get("node_exit") not in (0, None, -signal.SIGTERM):
            crashed.append(
                f"{name}: server exit {result.get('node_exit')}, tracebacks {result.get('tracebacks')}"
            )
    signal.alarm(0)

    figures = {"args": {k: v for k, v in vars(args).items() if k != "logs" and not isinstance(v, Path)},
               "load_average": load, "results": results, "crashed": crashed}  # fmt: skip
    text = json.dumps(figures, indent=1, default=str)
    print("\n" + text)
    if args.json is not None:
        args.json.write_text(text)
    missed = [
        f"{r['scenario']}/{r['mode']}: {k}"
        for r in results
        for k, ok in r.get("checks", {}).items()
        if not ok
    ]
    print(f"\ntargets missed: {missed or 'none'}")
    print(f"{'something crashed' if crashed else 'no crash'} ({time.monotonic() - begun:.0f} s)")
    tmp.cleanup()
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
