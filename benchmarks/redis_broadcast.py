"""Broadcast to 1,000 members spread over 2 nodes through Redis, beside the single-process figure.

    .venv/bin/python benchmarks/redis_broadcast.py                 # 1,000 members, 200 says, 3 rounds
    .venv/bin/python benchmarks/redis_broadcast.py --quick         # smoke run: 20 members, 20 says, 1 round
    .venv/bin/python benchmarks/redis_broadcast.py --rounds 5 --scenarios single,split --json out.json

Needs /usr/bin/redis-server (or --redis-server PATH), node and `npm install` in benchmarks/.
Each run gets fresh nodes of apps/broadcast_node.py (benchmarks/chat_unlimited.py, with or
without a RedisBackplane) on one flushed redis-server of the script's own; the load is
typed_load.js `broadcast` (--conns receivers, one sender, --messages with --window in flight).

Scenarios (rounds interleaved, medians over the rounds):
  single  one node, no Redis (LocalRooms): all members on it
  split   two nodes and Redis: members round-robin over A and B, the sender on A
  remote  two nodes and Redis: every member on B, the sender alone on A
  idle    every member and the sender on A, while B holds --idle-conns members of another
          room: B's CPU, its `received` (expected 0) and the room's subscribers (expected 1)

Nodes on CPU 0, redis-server and the load generator on CPU 1 (--no-pin: anywhere): the servers
get one core in every scenario, so the figures compare what the backplane costs. Shown per
scenario: deliveries/s, p50/p99, Redis commands per PUBLISH, the nodes' counters and CPU in the
say phase, heartbeat ages, TCP segments per frame, and the nodes' warnings.

Bounded: every wait has a timeout, the whole invocation --max-seconds; every process is ours,
stopped by its PID. Exits 1 when a run failed (a missing, doubled or reordered delivery, a
process that died, a failed publish, members of a live node reported lost; left out of the
medians).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.node import BroadcastLoad, add_broadcast_options  # noqa: E402
from benchmarks.harness.output import cell, write_json  # noqa: E402
from benchmarks.harness.ports import data_segments_out  # noqa: E402
from benchmarks.harness.preflight import Watchdog, add_run_options, prepare_run  # noqa: E402
from benchmarks.harness.processes import Failed, ServerProcess, measured, pinned  # noqa: E402
from benchmarks.harness.procstat import cpu_ns, cpu_seconds, syscalls  # noqa: E402
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402
from benchmarks.harness.stats import median_of as median  # noqa: E402

SCENARIOS = ("single", "split", "remote", "idle")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Node(ServerProcess):
    """One chat server process, benchmarks/apps/broadcast_node.py (with RedisBackplane(url), or
    without a backplane: url None); `final` is its last STATS line, after SIGTERM."""

    def __init__(self, name: str, url: str | None, cpu: int | None, log: Path) -> None:
        command = [sys.executable, "-m", "benchmarks.apps.broadcast_node", url or "-"]
        super().__init__(name, pinned(cpu, command), log)
        self.final: dict[str, Any] | None = None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.final = self.read_stats(timeout)
            except Failed:
                pass
        return super().stop(timeout)


class HeartbeatWatch:
    """Every 0.25 s, the age of each node's heartbeat in Redis (its score in `wsa:nodes`, read
    with ZREVRANGE, which the nodes never send), through a connection of our own."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        self.max_age: dict[str, float] = {}
        self.vanished: dict[str, int] = {}  # samples without a node that was there before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                entries = self.client.zrevrange("wsa:nodes", 0, -1, withscores=True)
            except redis.RedisError:
                continue
            now = time.time()
            present = set()
            for raw, score in entries:
                node = raw.decode()
                present.add(node)
                self.max_age[node] = max(self.max_age.get(node, 0.0), now - score)
            for node in set(self.max_age) - present:
                self.vanished[node] = self.vanished.get(node, 0) + 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def command_delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Calls per command between two `INFO commandstats` (our own INFO and ZREVRANGE left out)."""
    delta = {}
    for key, value in after.items():
        name = key.removeprefix("cmdstat_")
        calls = int(value["calls"]) - int(before.get(key, {}).get("calls", 0))
        if calls and name not in ("info", "zrevrange"):
            delta[name] = calls
    return delta


def counters_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    return {k: v - before[k] for k, v in after.items() if isinstance(v, int) and not isinstance(v, bool)}


def run_once(scenario: str, args: argparse.Namespace, redis_server: RedisServer, workdir: Path, index: int):
    """One run of `scenario`: its figures (raises Failed when it did not complete)."""
    two = scenario != "single"
    if two:
        redis_server.client.flushall()
    url = redis_server.url if two else None
    nodes: list[Node] = []
    load: BroadcastLoad | None = None
    result: dict[str, Any] = {"scenario": scenario}
    watch: HeartbeatWatch | None = None
    ids: dict[str, str] = {}
    try:
        for name in ("A", "B") if two else ("A",):
            nodes.append(Node(name, url, args.server_cpu, workdir / f"run{index:02d}-{scenario}-{name}.log"))
        if two:
            watch = HeartbeatWatch(redis_server.port)
            cmd_start = redis_server.commandstats()
            out_start = int(redis_server.client.info("stats")["total_net_output_bytes"])
        a = nodes[0]
        b = nodes[1] if two else None
        options: list[str] = []
        if scenario in ("single", "idle"):
            options += ["--urls", a.url]
            result["members"] = f"{args.conns}/0"
            local = {"A": args.conns}
        elif scenario == "split":
            assert b is not None
            options += ["--urls", f"{a.url},{b.url}", "--sender-url", a.url]
            result["members"] = f"{(args.conns + 1) // 2}/{args.conns // 2}"
            local = {"A": (args.conns + 1) // 2, "B": args.conns // 2}
        else:
            assert b is not None
            options += ["--urls", b.url, "--sender-url", a.url]
            result["members"] = f"0/{args.conns}"
            local = {"A": 0, "B": args.conns}
        if scenario == "idle":
            assert b is not None
            options += ["--idle-url", b.url, "--idle-conns", str(args.idle_conns), "--idle-room", "elsewhere"]
        load = BroadcastLoad(args, options)
        load.wait_joined(args.join_timeout)

        procs = {"A": a.pid, "redis": redis_server.pid, "load": load.pid}
        if b is not None:
            procs["B"] = b.pid
        cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        ns0 = {name: cpu_ns(pid) for name, pid in procs.items()}
        io0 = {name: syscalls(pid) for name, pid in procs.items()}
        segs0 = {node.name: data_segments_out(node.port) for node in nodes}
        cmd0 = redis_server.commandstats() if two else {}
        stats0 = [node.stats() for node in nodes] if two else []
        if two:
            ids = {node.name: s["node"] for node, s in zip(nodes, stats0, strict=True)}
            joins = args.conns + 1 + (args.idle_conns if scenario == "idle" else 0)
            join_commands = command_delta(cmd_start, cmd0)
            result["join_redis_commands"] = join_commands
            result["join_commands_per_join"] = round(sum(join_commands.values()) / joins, 2)
            out_bytes = int(redis_server.client.info("stats")["total_net_output_bytes"]) - out_start
            result["join_redis_out_mb"] = round(out_bytes / 1e6, 2)
        load.say_all(args.timeout + 30)
        cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        ns1 = {name: cpu_ns(pid) for name, pid in procs.items()}
        io1 = {name: syscalls(pid) for name, pid in procs.items()}
        segs1 = {node.name: data_segments_out(node.port) for node in nodes}
        cmd1 = redis_server.commandstats() if two else {}
        stats1 = [node.stats() for node in nodes] if two else []
        if scenario == "idle":
            result["bench_subscribers"] = redis_server.client.pubsub_numsub("wsa:room:bench")[0][1]
        result.update(load.figures())

        result["cpu_s"] = {name: round(cpu1[name] - cpu0[name], 3) for name in procs}
        result["cpu_ms_schedstat"] = {name: round((ns1[name] - ns0[name]) / 1e6, 2) for name in procs}
        result["syscalls"] = {name: {k: io1[name][k] - io0[name][k] for k in io0[name]} for name in procs}
        # frames each node put on its sockets: its receivers' copies, and the sender's own on A
        frames = {name: n * args.messages for name, n in local.items()}
        frames["A"] += args.messages
        result["segments_per_frame"] = {
            name: round((segs1[name] - segs0[name]) / count, 3) for name, count in frames.items() if count
        }
        delivered = result.get("delivered") or 0
        result["load_reads_per_delivery"] = (
            round(result["syscalls"]["load"]["reads"] / delivered, 3) if delivered else None
        )
        if two:
            commands = command_delta(cmd0, cmd1)
            result["redis_commands"] = commands
            result["publishes"] = publishes = commands.get("publish", 0)
            result["commands_per_publish"] = sum(commands.values()) / publishes if publishes else None
            publish_usec = int(cmd1.get("cmdstat_publish", {}).get("usec", 0))
            publish_usec -= int(cmd0.get("cmdstat_publish", {}).get("usec", 0))
            result["redis_usec_per_publish"] = publish_usec / publishes if publishes else None
            result["counters"] = {
                n.name: counters_delta(s0, s1) for n, s0, s1 in zip(nodes, stats0, stats1, strict=True)
            }
            result["connected"] = all(s["connected"] for s in stats1)
    finally:
        if watch is not None:
            watch.stop()
        if load is not None:
            load.stop(10)
            if errors := load.errors():
                result["load_stderr"] = errors[-5:]
        for node in nodes:
            status = node.stop(15)
            if status not in (0, -signal.SIGTERM):
                result.setdefault("node_exit", {})[node.name] = status
        if two:
            result["final_counters"] = {n.name: n.final for n in nodes}
            ids.update({n.name: n.final["node"] for n in nodes if n.final})
        if watch is not None:
            result["heartbeat_max_age_s"] = {
                name: round(watch.max_age[node], 2) for name, node in ids.items() if node in watch.max_age
            }
            result["heartbeat_vanished_samples"] = {
                name: watch.vanished[node] for name, node in ids.items() if node in watch.vanished
            }
    check(result, args)
    return result


def check(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Raise Failed unless every delivery came, once and in order (and nothing leaked to B)."""
    problems = []
    for key in ("missing", "members_short", "members_over", "out_of_order", "idle_messages"):
        if result.get(key):
            problems.append(f"{key}={result[key]}")
    if "node_exit" in result:
        problems.append(f"node exit status {result['node_exit']}")
    for name, counters in result.get("counters", {}).items():
        for key in ("publish_failures", "broadcast_failures"):
            if counters.get(key):
                problems.append(f"{name}.{key}={counters[key]}")
    for name, counters in (result.get("final_counters") or {}).items():
        if counters and counters.get("lost_members"):
            problems.append(f"{name} reported {counters['lost_members']} members of a live node as left")
    if result.get("connected") is False:
        problems.append("a node's subscriber was not connected")
    if result.get("publishes") not in (None, args.messages):
        problems.append(f"{result['publishes']} PUBLISH for {args.messages} says")
    if result["scenario"] == "idle":
        b = result.get("counters", {}).get("B", {})
        if b.get("received") or b.get("foreign") or b.get("delivered"):
            problems.append(f"B received {b.get('received')} (foreign {b.get('foreign')})")
        if result.get("bench_subscribers") != 1:
            problems.append(f"{result.get('bench_subscribers')} subscribers of A's room (1 expected)")
    if problems:
        result["problems"] = problems
        raise Failed(", ".join(problems), result)


def report(everything: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """The medians over the runs that did not fail (the heartbeat ages of every run)."""
    results = {scenario: [r for r in runs if "error" not in r] for scenario, runs in everything.items()}
    single = median(results.get("single", []), "deliveries_per_s")
    print(
        f"\nbroadcast: {args.conns} members, {args.messages} says with {args.window} in flight, "
        f"medians of {args.rounds} round(s); nodes on CPU {args.server_cpu}, "
        f"redis + load generator on CPU {args.client_cpu}"
    )
    header = (
        f"{'scenario':8} {'A/B':>9} {'deliv/s':>9} {'x single':>8} {'p50 ms':>7} {'p99 ms':>7} {'join s':>6} "
        f"{'cmd/pub':>7} {'A pub':>5} {'B recv':>6} {'B deliv':>8} "
        f"{'A cpu s':>7} {'B cpu s':>7} {'rds cpu':>7}"
    )
    print(header)
    print("-" * len(header))
    for scenario, runs in everything.items():
        ok = results[scenario]
        if not ok:
            print(f"{scenario:8} FAILED in every round")
            continue
        rate = median(ok, "deliveries_per_s")
        print(
            f"{scenario:8} {ok[0]['members']:>9} {cell(rate, ',.0f'):>9} "
            f"{cell(rate / single if rate and single else None, '.2f'):>8} "
            f"{cell(median(ok, 'p50_ms'), '.1f'):>7} {cell(median(ok, 'p99_ms'), '.1f'):>7} "
            f"{cell(median(ok, 'join_s'), '.1f'):>6} {cell(median(ok, 'commands_per_publish'), '.3f'):>7} "
            f"{cell(median(ok, 'counters', 'A', 'published'), '.0f'):>5} "
            f"{cell(median(ok, 'counters', 'B', 'received'), '.0f'):>6} "
            f"{cell(median(ok, 'counters', 'B', 'delivered'), '.0f'):>8} "
            f"{cell(median(ok, 'cpu_s', 'A'), '.2f'):>7} {cell(median(ok, 'cpu_s', 'B'), '.3f'):>7} "
            f"{cell(median(ok, 'cpu_s', 'redis'), '.3f'):>7}"
            + (f"   ({len(runs) - len(ok)} of {len(runs)} rounds failed)" if len(ok) < len(runs) else "")
        )
    for scenario, runs in results.items():
        for run in runs:
            others = {k: v for k, v in run.get("redis_commands", {}).items() if k != "publish"}
            if others:
                print(f"  {scenario}: Redis commands besides PUBLISH in the say phase: {others}")
                break
    usec = [median(r, "redis_usec_per_publish") for s, r in results.items() if s != "single"]
    if any(u is not None for u in usec):
        print(
            "  Redis time per PUBLISH (usec, cmdstat): "
            + ", ".join(
                f"{s} {cell(median(r, 'redis_usec_per_publish'), '.1f')}"
                for s, r in results.items()
                if s != "single"
            )
        )
    joins = []
    for scenario, runs in results.items():
        ok = [r for r in runs if "join_redis_commands" in r]
        if ok:
            zrange = median(ok, "join_redis_commands", "zrange")
            joins.append(
                f"{scenario} {cell(median(ok, 'join_commands_per_join'), '.2f')} commands per join "
                f"({cell(zrange, '.0f')} ZRANGE), "
                f"{cell(median(ok, 'join_redis_out_mb'), '.1f')} MB out of Redis"
            )
    if joins:
        print("  join phase through Redis: " + "; ".join(joins))
    ages = []
    for scenario, runs in everything.items():
        for run in runs:
            if "heartbeat_max_age_s" in run:
                gone = run.get("heartbeat_vanished_samples") or {}
                ages.append(
                    f"{scenario}#{run['round']} "
                    + " ".join(f"{n} {a:.1f}" for n, a in sorted(run["heartbeat_max_age_s"].items()))
                    + (f" (missing from wsa:nodes: {gone})" if gone else "")
                )
    if ages:
        print("  oldest heartbeat seen in Redis, s (node_timeout 10 s): " + "; ".join(ages))
    writes = []
    for scenario, runs in results.items():
        ok = [r for r in runs if "segments_per_frame" in r]
        per_node = ", ".join(
            f"{name} {cell(median(ok, 'segments_per_frame', name), '.2f')}"
            for name in ("A", "B")
            if median(ok, "segments_per_frame", name) is not None
        )
        if ok:
            reads = cell(median(ok, "load_reads_per_delivery"), ".3f")
            writes.append(f"{scenario} {per_node} (load generator reads per delivery {reads})")
    if writes:
        print("  TCP data segments per frame a node sent, say phase: " + "; ".join(writes))
    idle = [r for r in results.get("idle", []) if "counters" in r]
    if idle:
        b_cpu = median(idle, "cpu_s", "B")
        print(
            f"  idle: B (holding {args.idle_conns} members in another room) over A's {args.messages} says: "
            f"CPU {cell(b_cpu * 1000 if b_cpu is not None else None, '.0f')} ms utime+stime, "
            f"{cell(median(idle, 'cpu_ms_schedstat', 'B'), '.2f')} ms schedstat "
            f"(say phase {cell(median(idle, 'elapsed_s'), '.2f')} s), received "
            f"{cell(median(idle, 'counters', 'B', 'received'), '.0f')}, foreign "
            f"{cell(median(idle, 'counters', 'B', 'foreign'), '.0f')}, subscribers of A's room "
            f"{cell(median(idle, 'bench_subscribers'), '.0f')}, messages to B's members "
            f"{cell(median(idle, 'idle_messages'), '.0f')}"
        )


def log_problems(workdir: Path) -> list[str]:
    lines = []
    for log in sorted(workdir.glob("run*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(word in line for word in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "Error")):
                lines.append(f"{log.name}: {line}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_broadcast_options(parser, messages=200, timeout=60.0)
    parser.add_argument("--idle-conns", type=int, default=None, help="B's members in another room (idle)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 members, 20 says, 1 round")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma separated: " + ",".join(SCENARIOS)
    )
    add_run_options(parser, max_seconds=1800)
    parser.add_argument("--logs", type=Path, default=None, help="keep the node logs in this directory")
    parser.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    args = parser.parse_args()
    if args.quick:
        if args.conns == 1000:
            args.conns = 20
        if args.messages == 200:
            args.messages = 20
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.idle_conns = args.idle_conns if args.idle_conns is not None else max(1, args.conns // 2)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    prepare_run(args, parser)
    failed = False
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
    tmp = tempfile.TemporaryDirectory(prefix="redis_broadcast-")
    workdir = Path(tmp.name)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        workdir = args.logs
    redis_server = RedisServer(args.redis_server, args.client_cpu, Path(tmp.name))
    try:
        index = 0
        for round_number in range(1, args.rounds + 1):
            for scenario in scenarios:
                index += 1
                result, broke = measured(
                    f"round {round_number} {scenario}",
                    lambda s=scenario, i=index: run_once(s, args, redis_server, workdir, i),
                    lambda r: (
                        f"{r['deliveries_per_s']:,} deliveries/s, "
                        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                        f"join {r['join_s']} s, cpu {r['cpu_s']}, "
                        f"cmd/publish {cell(r.get('commands_per_publish'), '.3f')}"
                    ),
                    {"scenario": scenario},
                )
                failed = failed or broke
                result["round"] = round_number
                results[scenario].append(result)
    except Watchdog as exc:
        failed = True
        print(f"stopped: {exc}", file=sys.stderr)
    finally:
        signal.alarm(0)
        redis_server.stop()
    report(results, args)
    problems = log_problems(workdir)
    if problems:
        print(f"\nnode log lines at WARNING or worse ({len(problems)}):")
        for line in problems[:20]:
            print("  " + line)
    if args.json is not None:
        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "runs": results})
    tmp.cleanup()
    if failed:
        print("\nFAILED: at least one run did not deliver everything (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
