"""Pushing from outside the server: an Emitter's broadcasts into a room of 1,000 members beside a
broadcast made inside the server, and the server API's requests/s.

    .venv/bin/python benchmarks/push_cost.py                # 1,000 members, 200 broadcasts, 3 rounds
    .venv/bin/python benchmarks/push_cost.py --quick        # smoke run: 50 members, 50 broadcasts, 1 round

Needs /usr/bin/redis-server (or --redis-server PATH), node and `npm install` in benchmarks/.

Scenarios (rounds interleaved, medians over the rounds):
  server    a node (apps/broadcast_node.py: the chat on a RedisBackplane, numbered rooms) and
            typed_load.js: --conns members, one sender says --messages (--window in flight)
  emitter1  the same members; this process's Emitter (numbered) broadcasts the messages one
            after another from one thread
  emitter8  the same from 8 threads sharing one Emitter
  api1      a node without Redis (apps/api_node.py); api_load.js POSTs /_api/broadcast into a
            room without members, one request at a time on one keep-alive connection
  api8      the same on 8 connections

The node gets CPU 0; redis-server, the load generators and this process (the Emitter) share
CPU 1 (--no-pin: anywhere). Shown: broadcasts/s at the sender, deliveries/s at the members,
p50/p99 latency, the node's CPU per delivery; for the API, requests/s, p50/p99, the statuses
and the TCP connections opened.

Bounded: every wait has a timeout, the whole invocation --max-seconds; every process is ours,
stopped by its PID. Exits 1 when a run failed (a missing or doubled delivery, an answer
other than 200, a process that died).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.node import BENCH, BroadcastLoad, add_broadcast_options  # noqa: E402
from benchmarks.harness.output import cell, write_json  # noqa: E402
from benchmarks.harness.preflight import Watchdog, add_run_options, prepare_run  # noqa: E402
from benchmarks.harness.processes import Failed, ServerProcess, pinned  # noqa: E402
from benchmarks.harness.procstat import cpu_seconds  # noqa: E402
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402
from benchmarks.harness.stats import median_of as median  # noqa: E402
from websock_actors.emitter import Emitter  # noqa: E402

SCENARIOS = ("server", "emitter1", "emitter8", "api1", "api8")
API_LOAD = BENCH / "api_load.js"
BROADCAST_CELLS = (
    ("broadcasts_per_s", ",.0f"), ("deliveries_per_s", ",.0f"), ("p50_ms", ".1f"), ("p99_ms", ".1f"),
    ("node_us_per_delivery", ".2f"),
)  # fmt: skip
API_CELLS = (
    ("requests_per_s", ",.0f"), ("p50_ms", ".2f"), ("p99_ms", ".2f"), ("connections_opened", ".0f"),
    ("node_us_per_request", ".0f"),
)  # fmt: skip


def emit_all(emitter: Emitter, count: int, threads: int) -> float:
    """Broadcast "m0".."m<count-1>" into room "bench" from `threads` threads sharing `emitter`
    (thread k sends the k-th of every `threads`: each thread's own are in order); the seconds."""
    errors: list[BaseException] = []

    def send(first: int) -> None:
        try:
            for n in range(first, count, threads):
                message = {
                    "type": "message",
                    "room": "bench",
                    "name": "emitter",
                    "text": f"m{n}",
                    "ts": time.time(),
                }
                emitter.broadcast("bench", message)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=send, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    elapsed = time.perf_counter() - start
    if errors:
        raise Failed(f"the Emitter failed: {errors[0]!r}")
    return elapsed


def run_broadcast(
    scenario: str, args: argparse.Namespace, redis_server: RedisServer, workdir: Path
) -> dict[str, Any]:
    redis_server.client.flushall()
    command = pinned(
        args.server_cpu, [sys.executable, "-m", "benchmarks.apps.broadcast_node", redis_server.url]
    )
    node = ServerProcess("node", command, workdir / f"{scenario}.log")
    load: BroadcastLoad | None = None
    try:
        external = ["--external"] if scenario != "server" else []
        load = BroadcastLoad(args, ["--urls", node.url, *external])
        load.wait_joined(args.join_timeout)
        cpu0 = cpu_seconds(node.pid)
        if scenario == "server":
            start = time.perf_counter()
            load.say_all(args.timeout)
            sent_s = time.perf_counter() - start
        else:
            emitter = Emitter(redis_server.url, numbered=True, timeout=5.0)
            load.send_line("go")
            sent_s = emit_all(emitter, args.messages, 1 if scenario == "emitter1" else 8)
            load.expect("stderr", "DONE", args.timeout)
            emitter.close()
        node_cpu = cpu_seconds(node.pid) - cpu0
        figures = load.figures()
        if figures["missing"] or figures["members_over"]:
            raise Failed(
                f"{scenario}: {figures['missing']} missing, {figures['members_over']} members over", figures
            )
        if scenario != "emitter8" and figures["out_of_order"]:
            raise Failed(f"{scenario}: {figures['out_of_order']} out of order", figures)
        return {
            "scenario": scenario,
            "broadcasts_per_s": round(args.messages / sent_s),
            "deliveries_per_s": figures["deliveries_per_s"],
            "p50_ms": figures["p50_ms"],
            "p99_ms": figures["p99_ms"],
            "node_us_per_delivery": round(node_cpu * 1e6 / figures["delivered"], 3),
        }
    finally:
        if load is not None:
            load.stop()
        node.stop()


def run_api(scenario: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    key = secrets.token_hex(16)
    env = {**os.environ, "WEBSOCK_ACTORS_API_KEY": key}
    command = pinned(args.server_cpu, [sys.executable, "-m", "benchmarks.apps.api_node", "-"])
    os.environ["WEBSOCK_ACTORS_API_KEY"] = key  # the node inherits it (ServerProcess takes no env)
    node = ServerProcess("api node", command, workdir / f"{scenario}.log")
    del os.environ["WEBSOCK_ACTORS_API_KEY"]
    try:
        body = {
            "room": "nobody",
            "message": {"type": "message", "room": "nobody", "name": "api", "text": "hi", "ts": 0.0},
        }
        conns = 1 if scenario == "api1" else 8
        load = [
            "node", str(API_LOAD), "--url", f"http://127.0.0.1:{node.port}/_api/broadcast", "--key", key,
            "--body", json.dumps(body), "--conns", str(conns), "--duration", str(args.api_seconds),
        ]  # fmt: skip
        cpu0 = cpu_seconds(node.pid)
        done = subprocess.run(pinned(args.client_cpu, load), capture_output=True, text=True, env=env,
                              timeout=args.api_seconds + 60)  # fmt: skip
        node_cpu = cpu_seconds(node.pid) - cpu0
        if done.returncode != 0:
            raise Failed(f"{scenario}: api_load.js exited {done.returncode}: {done.stderr.strip()[-300:]}")
        figures: dict[str, Any] = json.loads(done.stdout)
        if set(figures["statuses"]) != {"200"}:
            raise Failed(f"{scenario}: answers {figures['statuses']}", figures)
        answered = sum(figures["statuses"].values())
        return {
            "scenario": scenario,
            "requests_per_s": figures["requests_per_s"],
            "p50_ms": figures["p50_ms"],
            "p99_ms": figures["p99_ms"],
            "connections_opened": figures["connections_opened"],
            "node_us_per_request": round(node_cpu * 1e6 / max(1, answered), 1),
        }
    finally:
        node.stop()


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    print(
        f"\npushes into a room of {args.conns} members ({args.messages} broadcasts), medians of {args.rounds}"
    )
    heads = ("broadcasts/s", "deliveries/s", "p50 ms", "p99 ms", "node µs/delivery")
    print(f"{'scenario':<10} {heads[0]:>13} {heads[1]:>13} {heads[2]:>8} {heads[3]:>8} {heads[4]:>17}")
    for scenario in ("server", "emitter1", "emitter8"):
        if runs := results.get(scenario):
            row = [cell(median(runs, k), spec) for k, spec in BROADCAST_CELLS]
            print(f"{scenario:<10} {row[0]:>13} {row[1]:>13} {row[2]:>8} {row[3]:>8} {row[4]:>17}")
    print(f"\nserver API, POST /_api/broadcast ({args.api_seconds} s each), medians of {args.rounds}")
    heads = ("requests/s", "p50 ms", "p99 ms", "connections", "node µs/request")
    print(f"{'scenario':<10} {heads[0]:>11} {heads[1]:>8} {heads[2]:>8} {heads[3]:>12} {heads[4]:>16}")
    for scenario in ("api1", "api8"):
        if runs := results.get(scenario):
            row = [cell(median(runs, k), spec) for k, spec in API_CELLS]
            print(f"{scenario:<10} {row[0]:>11} {row[1]:>8} {row[2]:>8} {row[3]:>12} {row[4]:>16}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_broadcast_options(parser, messages=200, timeout=60.0)
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 members, 50 broadcasts, 1 round")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma separated: " + ",".join(SCENARIOS)
    )
    parser.add_argument("--api-seconds", type=int, default=5, help="measured seconds of an API run")
    add_run_options(parser, max_seconds=900)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.conns, args.messages, args.api_seconds = 50, 50, 2
    args.rounds = args.rounds or (1 if args.quick else 3)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    prepare_run(args, parser)
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})  # the Emitter shares the load generator's CPU
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
    failed = False
    tmp = tempfile.TemporaryDirectory(prefix="push_cost-")
    workdir = Path(tmp.name)
    redis_server: RedisServer | None = None
    try:
        redis_server = RedisServer(args.redis_server, args.client_cpu, workdir)
        for _ in range(args.rounds):
            for scenario in scenarios:
                try:
                    if scenario.startswith("api"):
                        results[scenario].append(run_api(scenario, args, workdir))
                    else:
                        results[scenario].append(run_broadcast(scenario, args, redis_server, workdir))
                except Failed as exc:
                    failed = True
                    print(f"{scenario}: failed: {exc}", file=sys.stderr)
    except (Watchdog, Failed) as exc:
        failed = True
        print(f"stopped: {exc}", file=sys.stderr)
    finally:
        signal.alarm(0)
        if redis_server is not None:
            redis_server.stop()
    report(results, args)
    if args.json is not None:
        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results})
    tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
