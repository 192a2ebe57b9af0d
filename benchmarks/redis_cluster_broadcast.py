"""Broadcast in 100 rooms over 2 nodes: through one Redis, and through a 3-master Redis Cluster.

    .venv/bin/python benchmarks/redis_cluster_broadcast.py          # 100 rooms x 10, 200 says each, 3 rounds
    .venv/bin/python benchmarks/redis_cluster_broadcast.py --quick  # smoke run: 20 rooms x 4, 10 says
    .venv/bin/python benchmarks/redis_cluster_broadcast.py --scenarios cluster --rounds 5 --json out.json

Needs redis-server and redis-cli (--redis-server, --redis-cli), node and `npm install` in
benchmarks/. Every run gets fresh Redis processes and two fresh nodes of apps/broadcast_node.py
(benchmarks/chat_unlimited.py on `RedisBackplane(url)`, as `--redis URL` makes it); the load
is rooms_load.js: in every room members on both nodes (round-robin) and one sender saying
numbered messages (--window in flight), room r's sender on node r % 2.

Scenarios (rounds interleaved, medians over the rounds):
  single   one redis-server (redis://)
  cluster  3 masters and 3 replicas (redis+cluster://, two seeds), started as the tests'
           fixture starts theirs (benchmarks/harness/redis_cluster.py); skipped, and said so,
           while websock_actors.scale.redis_urls does not accept redis+cluster:// URLs

Nodes on CPU 0, the Redis processes and the load generator on CPU 1 (--no-pin: anywhere).
Shown per scenario, for the say phase: deliveries/s, p50/p99, the CPU seconds of every Redis
process (utime+stime of /proc/PID/stat: spread over the masters, or not), and Redis commands
per broadcast (INFO commandstats summed over every Redis process, our own INFO left out, the
commands a script runs included; with a cluster the masters' alone too, since replicas replay
what their master propagates).

Bounded: every wait has a timeout, the whole invocation --max-seconds; every process is ours,
stopped by its PID. Exits 1 when a run failed (a missing, doubled, reordered or foreign
delivery, a process that died, a failed publish).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.node import BENCH, BroadcastLoad  # noqa: E402
from benchmarks.harness.output import cell, write_json  # noqa: E402
from benchmarks.harness.preflight import Watchdog, add_run_options, prepare_run  # noqa: E402
from benchmarks.harness.processes import ChildProcess, Failed, measured, pinned  # noqa: E402
from benchmarks.harness.procstat import cpu_ns, cpu_seconds  # noqa: E402
from benchmarks.harness.redis_cluster import ClusterDeployment, ClusterError  # noqa: E402
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402
from benchmarks.harness.stats import median as median_value  # noqa: E402
from benchmarks.harness.stats import median_of as median  # noqa: E402
from benchmarks.redis_broadcast import Node, check, command_delta, counters_delta  # noqa: E402

__all__ = ["SCENARIOS", "cluster_unsupported", "main"]

SCENARIOS = ("single", "cluster")
ROOMS_LOAD = BENCH / "rooms_load.js"


def cluster_unsupported() -> str | None:
    """Why the nodes cannot use a cluster yet (parse_redis_url refuses redis+cluster://), or None."""
    from websock_actors.errors import ConfigurationError
    from websock_actors.scale.redis_urls import parse_redis_url

    try:
        parse_redis_url("redis+cluster://127.0.0.1:1/")
    except ConfigurationError as exc:
        return f"websock_actors does not accept redis+cluster:// URLs yet ({exc})"
    return None


class RoomsLoad(BroadcastLoad):
    """rooms_load.js with --sync: the READY / go / DONE / go / JSON handshake of BroadcastLoad."""

    def __init__(self, args: argparse.Namespace, urls: list[str]) -> None:
        limit = args.timeout + args.join_timeout + 60
        options = [
            "--urls", ",".join(urls), "--rooms", str(args.rooms), "--members", str(args.members),
            "--messages", str(args.messages), "--window", str(args.window), "--settle", str(args.settle),
            "--sync", "--timeout", str(args.timeout), "--limit", str(limit),
        ]  # fmt: skip
        command = pinned(args.client_cpu, ["node", str(ROOMS_LOAD), *options])
        ChildProcess.__init__(self, "load generator", command, stdin=True)


class Redis:
    """The Redis side of a run: one redis-server, or a cluster; its processes by name (`redis`,
    or m1..m3 for the masters and r1..r3 for their replicas) as (pid, port)."""

    def __init__(self, scenario: str, args: argparse.Namespace, workdir: Path) -> None:
        workdir.mkdir(parents=True)
        self.server: RedisServer | None = None
        self.cluster: ClusterDeployment | None = None
        self.processes: dict[str, tuple[int, int]] = {}
        if scenario == "single":
            self.server = RedisServer(args.redis_server, args.client_cpu, workdir)
            self.url = self.server.url
            self.processes["redis"] = (self.server.pid, self.server.port)
            return
        cpus = args.client_cpu
        self.cluster = ClusterDeployment(args.redis_server, args.redis_cli, workdir, cpus=cpus, guard=True)
        try:
            self.cluster.start()
        except ClusterError as exc:
            self.stop()
            raise Failed(f"the cluster did not start: {exc}") from None
        except BaseException:  # the watchdog, say: no node left behind
            self.stop()
            raise
        self.url = self.cluster.url
        for i, master in enumerate(self.cluster.masters(), 1):
            replica = self.cluster.replica_of(master)
            self.processes[f"m{i}"] = (master.pid, master.port)
            self.processes[f"r{i}"] = (replica.pid, replica.port)

    def commandstats(self) -> dict[str, dict[str, dict[str, Any]]]:
        """INFO commandstats of every process (redis-py's parse: `cmdstat_<name>` -> calls...)."""
        stats = {}
        for name, (_, port) in self.processes.items():
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, protocol=2)
            try:
                stats[name] = client.info("commandstats")
            finally:
                client.close()
        return stats

    def own(self, name: str, calls: dict[str, int]) -> dict[str, int]:
        """`calls` of process `name` without replication's keepalives: a replica's REPLCONF ACK
        to its master every second, and the PING a master sends down to its replicas."""
        chatter = {"replconf", "ping"} if name.startswith("r") and self.cluster is not None else {"replconf"}
        return {cmd: n for cmd, n in calls.items() if cmd not in chatter}

    def keys(self) -> dict[str, int]:
        """DBSIZE of every process: how the rooms' keys spread over the masters."""
        sizes = {}
        for name, (_, port) in self.processes.items():
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, protocol=2)
            try:
                sizes[name] = int(client.dbsize())
            finally:
                client.close()
        return sizes

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.cluster is not None:
            self.cluster.stop()


def wait_connected(node: Node, timeout: float) -> float:
    """Seconds from now until `node` says its backplane is connected (subscriber, publisher and
    heartbeat): the runs measure a working deployment, and this is its start-up lag."""
    started = time.monotonic()
    while not node.stats()["connected"]:
        if time.monotonic() - started > timeout:
            raise Failed(f"node {node.name} not connected to Redis within {timeout:.0f} s")
        time.sleep(0.05)  # asking a process of ours over its line protocol: nothing to wait on
    return round(time.monotonic() - started, 2)


def run_once(scenario: str, args: argparse.Namespace, workdir: Path, index: int) -> dict[str, Any]:
    """One run of `scenario`: its figures (raises Failed when it did not complete)."""
    result: dict[str, Any] = {"scenario": scenario, "members": f"{args.rooms}x{args.members}"}
    backend = Redis(scenario, args, workdir / f"run{index:02d}-{scenario}-redis")
    nodes: list[Node] = []
    load: RoomsLoad | None = None
    try:
        for name in ("A", "B"):
            log = workdir / f"run{index:02d}-{scenario}-{name}.log"
            nodes.append(Node(name, backend.url, args.server_cpu, log))
        result["ready_s"] = {node.name: wait_connected(node, args.join_timeout) for node in nodes}
        load = RoomsLoad(args, [node.url for node in nodes])
        load.wait_joined(args.join_timeout)
        procs = {name: pid for name, (pid, _) in backend.processes.items()}
        procs.update({node.name: node.pid for node in nodes})
        cpu0 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        ns0 = {name: cpu_ns(pid) for name, pid in procs.items()}
        cmd0 = backend.commandstats()
        stats0 = [node.stats() for node in nodes]
        load.say_all(args.timeout + 30)
        cpu1 = {name: cpu_seconds(pid) for name, pid in procs.items()}
        ns1 = {name: cpu_ns(pid) for name, pid in procs.items()}
        cmd1 = backend.commandstats()
        stats1 = [node.stats() for node in nodes]
        result.update(load.figures())
        result["cpu_s"] = {name: round(cpu1[name] - cpu0[name], 3) for name in procs}
        result["cpu_ms_schedstat"] = {name: round((ns1[name] - ns0[name]) / 1e6, 2) for name in procs}
        broadcasts = args.rooms * args.messages
        result["broadcasts"] = broadcasts
        commands = {name: backend.own(name, command_delta(cmd0[name], cmd1[name])) for name in cmd0}
        result["redis_commands"] = commands
        total = sum(sum(calls.values()) for calls in commands.values())
        result["commands_per_broadcast"] = round(total / broadcasts, 3)
        if backend.cluster is not None:
            masters = sum(sum(calls.values()) for name, calls in commands.items() if name.startswith("m"))
            result["master_commands_per_broadcast"] = round(masters / broadcasts, 3)
        result["redis_keys"] = backend.keys()
        result["counters"] = {
            n.name: counters_delta(s0, s1) for n, s0, s1 in zip(nodes, stats0, stats1, strict=True)
        }
        result["connected"] = all(s["connected"] for s in stats1)
    finally:
        if load is not None:
            load.stop(10)
            if errors := load.errors():
                result["load_stderr"] = errors[-5:]
        for node in nodes:
            status = node.stop(15)
            if status not in (0, -signal.SIGTERM):
                result.setdefault("node_exit", {})[node.name] = status
        result["final_counters"] = {n.name: n.final for n in nodes}
        backend.stop()
    check(result, args)
    if result.get("foreign") or result.get("other_frames"):
        result["problems"] = [f"foreign {result.get('foreign')}, other frames {result.get('other_frames')}"]
        raise Failed(result["problems"][0], result)
    return result


def per_broadcast(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median calls per broadcast of each command, summed over the Redis processes."""
    names = {cmd for run in runs for calls in run["redis_commands"].values() for cmd in calls}
    figures = {}
    for cmd in sorted(names):
        values = [sum(c.get(cmd, 0) for c in r["redis_commands"].values()) / r["broadcasts"] for r in runs]
        figures[cmd] = round(sorted(values)[len(values) // 2], 3)
    return figures


def report(everything: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """The medians over the runs that did not fail."""
    print(
        f"\nbroadcast in {args.rooms} rooms x {args.members} members over nodes A and B, "
        f"{args.messages} says per room with {args.window} in flight, medians of {args.rounds} round(s); "
        f"nodes on CPU {args.server_cpu}, Redis and the load generator on CPU {args.client_cpu}"
    )
    header = (
        f"{'scenario':8} {'deliv/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'join s':>6} {'cmd/bc':>7} "
        f"{'master':>7} {'A cpu s':>7} {'B cpu s':>7} {'Redis cpu s, per process':>26}"
    )
    print(header)
    print("-" * len(header))
    for scenario, runs in everything.items():
        ok = [r for r in runs if "error" not in r and "skipped" not in r]
        if not ok:
            why = next((r["skipped"] for r in runs if "skipped" in r), "FAILED in every round")
            print(f"{scenario:8} {why}")
            continue
        redis_names = [name for name in ok[0]["cpu_s"] if name not in ("A", "B")]
        redis_cpu = " ".join(f"{name} {cell(median(ok, 'cpu_s', name), '.2f')}" for name in redis_names)
        print(
            f"{scenario:8} {cell(median(ok, 'deliveries_per_s'), ',.0f'):>9} "
            f"{cell(median(ok, 'p50_ms'), '.1f'):>7} {cell(median(ok, 'p99_ms'), '.1f'):>7} "
            f"{cell(median(ok, 'join_s'), '.1f'):>6} {cell(median(ok, 'commands_per_broadcast'), '.2f'):>7} "
            f"{cell(median(ok, 'master_commands_per_broadcast'), '.2f'):>7} "
            f"{cell(median(ok, 'cpu_s', 'A'), '.2f'):>7} {cell(median(ok, 'cpu_s', 'B'), '.2f'):>7} "
            f"{redis_cpu}"
            + (f"   ({len(runs) - len(ok)} of {len(runs)} rounds failed)" if len(ok) < len(runs) else "")
        )
    for scenario, runs in everything.items():
        ok = [r for r in runs if "error" not in r and "skipped" not in r]
        if ok:
            print(f"  {scenario}: Redis calls per broadcast, by command: {per_broadcast(ok)}")
            schedstat = " ".join(
                f"{name} {cell(median(ok, 'cpu_ms_schedstat', name), '.0f')}"
                for name in ok[0]["cpu_ms_schedstat"]
            )
            print(f"  {scenario}: CPU ms (schedstat) in the say phase: {schedstat}")
            keys = " ".join(
                f"{name} {cell(median(ok, 'redis_keys', name), '.0f')}" for name in ok[0]["redis_keys"]
            )
            print(f"  {scenario}: keys per Redis process after the run: {keys}")
            ready = " ".join(f"{name} {cell(median(ok, 'ready_s', name), '.2f')}" for name in ("A", "B"))
            print(f"  {scenario}: s from a node's PORT line to its backplane connected: {ready}")
            spread = masters_spread(ok)
            if spread:
                print(f"  {scenario}: over the masters: {spread}")


def masters_spread(runs: list[dict[str, Any]]) -> str:
    """With a cluster: each master's share of the publishes and of the CPU, and the max/min of
    the CPU over the masters (schedstat's, finer than the 10 ms ticks; 1.0: evenly spread);
    "" with one Redis."""
    names = [name for name in runs[0]["redis_commands"] if name.startswith("m")]
    if not names:
        return ""
    shares, cpu = [], []
    for name in names:
        calls = [r["redis_commands"][name] for r in runs]
        published = median_value(c.get("publish", 0) + c.get("spublish", 0) for c in calls)
        ms = median(runs, "cpu_ms_schedstat", name)
        cpu.append(ms or 0.0)
        shares.append(f"{name} {cell(published, '.0f')} publishes, {cell(ms, '.0f')} CPU ms")
    ratio = max(cpu) / min(cpu) if min(cpu) > 0 else None
    return ", ".join(shares) + f"; CPU max/min {cell(ratio, '.2f')}"

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--members", type=int, default=10, help="receivers per room, round-robin on A, B")
    parser.add_argument("--messages", type=int, default=200, help="says per room (by the room's one sender)")
    parser.add_argument("--window", type=int, default=4, help="says in flight per sender")
    parser.add_argument("--settle", type=int, default=300, help="ms without a frame before saying")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the deliveries of a run")
    parser.add_argument("--join-timeout", type=float, default=120.0, help="seconds to connect and join")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 rooms x 4, 10 says, 1 round")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma separated: single,cluster")
    parser.add_argument("--redis-cli", default="/usr/bin/redis-cli")
    add_run_options(parser, max_seconds=1800)
    parser.add_argument("--logs", type=Path, default=None, help="keep the nodes' and Redis logs here")
    parser.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    args = parser.parse_args()
    if args.quick:
        args.rooms = 20 if args.rooms == 100 else args.rooms
        args.members = 4 if args.members == 10 else args.members
        args.messages = 10 if args.messages == 200 else args.messages
    args.rounds = args.rounds or (1 if args.quick else 3)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios {sorted(unknown)}")
    prepare_run(args, parser)
    if "cluster" in scenarios and not Path(args.redis_cli).exists():
        parser.error(f"no redis-cli at {args.redis_cli} (Debian: redis-tools)")
    skipped = {"cluster": why} if "cluster" in scenarios and (why := cluster_unsupported()) else {}
    failed = False
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in scenarios}
    tmp = tempfile.TemporaryDirectory(prefix="redis_cluster_broadcast-")
    workdir = Path(tmp.name)
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        workdir = args.logs
    try:
        index = 0
        for round_number in range(1, args.rounds + 1):
            for scenario in scenarios:
                if scenario in skipped:
                    if round_number == 1:
                        why = f"skipped: {skipped[scenario]}"
                        results[scenario].append({"scenario": scenario, "skipped": why})
                        print(f"{scenario}: {why}", file=sys.stderr, flush=True)
                    continue
                index += 1
                result, broke = measured(
                    f"round {round_number} {scenario}",
                    lambda s=scenario, i=index: run_once(s, args, workdir, i),
                    lambda r: (
                        f"{r['deliveries_per_s']:,} deliveries/s, "
                        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                        f"{r['commands_per_broadcast']} Redis commands per broadcast, cpu {r['cpu_s']}"
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
    report(results, args)
    if args.json is not None:
        write_json(args.json, {"args": {k: str(v) for k, v in vars(args).items()}, "runs": results})
    tmp.cleanup()
    if failed:
        print("\nFAILED: at least one run did not deliver everything (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
