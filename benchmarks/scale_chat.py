"""Scale run: the chat server in one process, Locust headless in another, on loopback.

    .venv/bin/python benchmarks/scale_chat.py                  # 5,000 users, 75 s at full load
    .venv/bin/python benchmarks/scale_chat.py --users 1000 --steady 20
    .venv/bin/python benchmarks/scale_chat.py --users 10000 --workers 2 --locust-processes 2

The server (`websock-actors run examples.chat:app`, --workers N with a redis-server of the
script's own) on the first CPUs, Locust (locustfiles/chat.py through
benchmarks/scale_chat_locustfile.py, --locust-processes N) on the next (--pin none: anywhere).
Locust spawns --users at --spawn-rate and holds them for --steady seconds. Printed: per message
type in the steady window, requests/s, failures, p50/p95/p99 (and over the whole run); pushes
per second; peak RSS and CPU time of every process; with workers or Locust processes, the
machine's CPU in the window, Redis's commands per `say` and the logs' warnings. The
once-a-second samples go to samples.json. Bounded: one run, loopback only, every process ours
and stopped by PID. Exits 1 unless there was no failure and every user stayed connected.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.ports import established, free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import pinned, raise_fd_limit, reap, try_reap  # noqa: E402
from benchmarks.harness.procstat import children as proc_children  # noqa: E402
from benchmarks.harness.procstat import cpu_times, machine_cpu, status_kib  # noqa: E402
from benchmarks.harness.procstat import start_time as proc_identity  # noqa: E402
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402
from benchmarks.harness.stats import window_figures  # noqa: E402

WHOLE_RUN_COLUMNS = ("Request Count", "Failure Count", "50%", "95%", "99%")
WORKER_LINE = re.compile(rb"websock-actors: worker (\d+) \(pid (\d+)\) serving")
OWN_COMMANDS = ("info",)  # this script's own, left out of Redis's figures
REDIS_ROUTINE = re.compile(  # '#' lines of every start and stop; overcommit matters to background saves only
    r"oO0OoO0OoO0Oo|Redis version=|Configuration loaded|Server initialized|Memory overcommit|"
    r"User requested shutdown|ready to exit"
)


def choose_cpus(servers: int, locusts: int, pin: str) -> tuple[str | None, str | None, str]:
    """The CPUs of the server's processes (and Redis's) and of Locust's, and a sentence."""
    count = os.cpu_count() or 1
    if pin == "auto" and servers + locusts <= count:
        server = ",".join(str(cpu) for cpu in range(servers))
        locust = ",".join(str(cpu) for cpu in range(servers, servers + locusts))
        return server, locust, f"server (and Redis, if any) on CPU {server}, Locust on CPU {locust}"
    why = "--pin none" if pin != "auto" else f"{servers} server + {locusts} Locust processes on {count} cores"
    return None, None, f"no pinning ({why}): every process may run on any of the {count} cores"


def proc_cpu(pid: int) -> tuple[float, float] | None:
    """User and system CPU seconds of process `pid` so far, or None once it is gone."""
    try:
        return cpu_times(pid)
    except OSError:
        return None


def proc_peak_rss_mib(pid: int) -> float | None:
    """The peak RSS of `pid` (VmHWM), None once it is gone or has no memory left."""
    try:
        kib = status_kib(pid, "VmHWM")
    except OSError:
        return None
    return round(kib / 1024, 1) if kib else None


def usage_of(usage: Any, seconds: float) -> dict[str, float]:
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "cpu_user_s": round(usage.ru_utime, 1),
        "cpu_sys_s": round(usage.ru_stime, 1),
        "cpu_share_of_one_core": round(cpu / seconds, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--spawn-rate", type=float, default=250.0)
    parser.add_argument("--steady", type=float, default=75.0, help="seconds at full load")
    parser.add_argument("--think-time", type=float, default=5.0, help="mean seconds between a user's actions")
    parser.add_argument("--room-size", type=int, default=20)
    parser.add_argument("--port", type=int, default=18960)
    parser.add_argument("--out", type=Path, default=Path("/tmp/websock_actors_scale"))
    parser.add_argument("--workers", type=int, default=None, help="server workers, sharing rooms on Redis")
    parser.add_argument("--locust-processes", type=int, default=None, help="Locust's --processes")
    parser.add_argument("--pin", choices=["auto", "none"], default="auto", help="CPU pinning (see above)")
    parser.add_argument("--redis-server", default="/usr/bin/redis-server")
    args = parser.parse_args()
    if min(args.workers or 1, args.locust_processes or 1) < 1:
        parser.error("--workers and --locust-processes need at least 1")
    extended = args.workers is not None or args.locust_processes is not None or args.pin != "auto"
    server_cpus, locust_cpus, pinning = choose_cpus(args.workers or 1, args.locust_processes or 1, args.pin)

    fds = raise_fd_limit(args.users + 2000)
    if fds < args.users + 100:
        sys.exit(f"only {fds} file descriptors allowed; {args.users} users need more")
    args.out.mkdir(parents=True, exist_ok=True)
    prefix, steady_json = args.out / "chat", args.out / "steady.json"
    for stale in [*args.out.glob("steady*.json"), args.out / "redis.log"]:
        stale.unlink(missing_ok=True)
    run_time = int(args.users / args.spawn_rate + args.steady + 0.999)
    timeline: list[tuple[float, int]] = []
    # With the new options, once a second: (time since start, {process: (user, sys) CPU s}, Redis's calls).
    samples: list[tuple[float, dict[str, tuple[float, float]], dict[str, int]]] = []
    processes: dict[str, int] = {}  # label -> pid, of every process sampled
    final: dict[str, dict[str, Any]] = {}  # label -> the last reading: cpu, peak RSS, when
    identities: dict[int, int | None] = {}  # Locust's workers: pid -> start time
    outlived: list[str] = []  # Locust's workers still running when its master had exited
    redis_server: RedisServer | None = None
    redis_figures: dict[str, Any] = {}
    redis_status: int | None = None

    def read(label: str, pid: int) -> tuple[float, float] | None:
        cpu = proc_cpu(pid)
        if cpu is not None:
            peak = proc_peak_rss_mib(pid)  # None from a process exiting: it has no memory left
            final[label] = {
                "pid": pid,
                "cpu": cpu,
                "peak_rss_mib": final.get(label, {}).get("peak_rss_mib") if peak is None else peak,
                "at": time.monotonic(),
            }
        return cpu

    def sample(locust_pid: int) -> None:
        if args.workers is not None:
            for match in WORKER_LINE.finditer((args.out / "server.log").read_bytes()):
                processes[f"server worker {int(match.group(1))}"] = int(match.group(2))  # the latest
        if args.locust_processes is not None:
            known = set(processes.values())
            for child in proc_children(locust_pid):
                if child not in known:
                    processes[f"locust worker pid {child}"] = child  # renamed by Locust's index at the end
                    identities[child] = proc_identity(child)
        cpus = {label: cpu for label, pid in processes.items() if (cpu := read(label, pid)) is not None}
        calls = redis_server.calls() if redis_server is not None else {}
        me = os.times()  # this script, and the `ss` it ran
        cpus["this script"] = (me.user + me.children_user, me.system + me.children_system)
        machine = machine_cpu()
        cpus["machine"] = (machine["busy"], machine["steal"])  # not a process: (busy, steal)
        samples.append((time.monotonic() - started, cpus, calls))

    def follow_locust_workers(timeout: float) -> None:
        """Locust 2.47's --processes master exits without waiting for its workers (its
        kill_workers drops a child that waitpid(WNOHANG) finds still running): they finish
        stopping and write their steady windows after it. Follow them, no longer our
        children, until they are gone (reading them until then); past `timeout`, kill them."""
        workers = {label: pid for label, pid in processes.items() if label.startswith("locust worker")}
        outlived[:] = [label for label, pid in workers.items() if proc_identity(pid) == identities[pid]]
        deadline = time.monotonic() + timeout
        while alive := [
            workers[label]
            for label in outlived
            if proc_identity(workers[label]) == identities[workers[label]]
        ]:
            for label in outlived:
                read(label, workers[label])
            if time.monotonic() > deadline:
                for pid in alive:
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.1)

    with ExitStack() as stack:
        server_log = stack.enter_context(open(args.out / "server.log", "wb"))
        locust_log = stack.enter_context(open(args.out / "locust.log", "wb"))
        server_command = [sys.executable, "-m", "websock_actors", "run", "examples.chat:app",
             "--port", str(args.port), "--no-patch", "--max-connections", str(args.users + 1000),
             "--log-level", "WARNING", "--rate-limit-per", "connection"]  # fmt: skip
        if args.workers is not None:
            redis_server = RedisServer(args.redis_server, server_cpus, args.out)
            stack.callback(redis_server.stop)  # if anything below fails: stopping twice is a no-op
            server_command += ["--workers", str(args.workers), "--redis", redis_server.url]
        server = subprocess.Popen(
            pinned(server_cpus, server_command), cwd=ROOT, stdout=server_log, stderr=subprocess.STDOUT
        )
        processes["server master" if args.workers is not None else "server"] = server.pid
        if redis_server is not None:
            processes["redis"] = redis_server.pid
        locust: subprocess.Popen[bytes] | None = None
        try:
            if (why := wait_for_port(args.port, 20, poll=0.1, connect_timeout=1)) is not None:
                raise RuntimeError(why)
            started = time.monotonic()
            locust_command = [sys.executable, "-m", "locust",
                 "-f", "benchmarks/scale_chat_locustfile.py", "--headless",
                 "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{run_time}s",
                 "--host", f"ws://127.0.0.1:{args.port}", "--csv", str(prefix), "--only-summary",
                 "--think-time", str(args.think_time), "--room-size", str(args.room_size),
                 "--steady-json", str(steady_json)]  # fmt: skip
            if args.locust_processes is not None:
                master_port = str(free_port())  # --processes' master binds *:5557 unless told
                locust_command += ["--processes", str(args.locust_processes),
                    "--master-bind-host", "127.0.0.1", "--master-bind-port", master_port,
                    "--master-port", master_port]  # fmt: skip
            locust = subprocess.Popen(
                pinned(locust_cpus, locust_command), cwd=ROOT, stdout=locust_log, stderr=subprocess.STDOUT
            )
            processes["locust master" if args.locust_processes is not None else "locust"] = locust.pid
            while (done := try_reap(locust)) is None and time.monotonic() - started < run_time + 120:
                timeline.append((time.monotonic() - started, established(args.port)))
                if extended:
                    sample(locust.pid)
                time.sleep(1.0)
            locust_status, locust_usage = done or reap(locust, 0)
            locust_seconds = time.monotonic() - started
            if args.locust_processes is not None:
                follow_locust_workers(60)
        finally:
            if locust is not None and locust.returncode is None:
                alive = proc_children(locust.pid)
                for label, pid in processes.items():  # Locust's workers first (ours, by PID)
                    if label.startswith("locust worker") and pid in alive:
                        os.kill(pid, signal.SIGKILL)
                reap(locust, 0)
            if extended:
                for label, pid in processes.items():
                    if label.startswith("server") or label == "redis":
                        read(label, pid)  # just before the stop
            if redis_server is not None:
                redis_figures = {"calls": redis_server.calls(), "cpu": redis_server.cpu()}
            server.send_signal(signal.SIGTERM)
            server_status, server_usage = reap(server, 30)
            server_seconds = time.monotonic() - started
            if redis_server is not None:
                redis_status, _ = redis_server.stop() or (None, None)

    with open(f"{prefix}_stats.csv", newline="") as f:
        whole = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    if args.locust_processes is not None:
        steady = merge_steady(
            [json.loads(part.read_text()) for part in sorted(args.out.glob("steady.worker*.json"))],
            args.users,
        )
        steady_json.write_text(json.dumps(steady, indent=2))
    else:
        steady = json.loads(steady_json.read_text())
    connected = [t for t, n in timeline if n >= args.users]
    all_connected = connected[-1] - connected[0] if connected else 0.0
    failures = int(whole[("", "Aggregated")]["Failure Count"])
    report = {
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "think_time_s": args.think_time,
        "room_size": args.room_size,
        "locust_run_time_s": run_time,
        "steady_window_s": round(steady["seconds"], 1),
        "seconds_with_all_users_connected": round(all_connected),
        "peak_established": max((n for _, n in timeline), default=0),
        "failures": failures,
        "exit_codes": {"locust": locust_status, "server": server_status},
        "server": usage_of(server_usage, server_seconds),
        "locust": usage_of(locust_usage, locust_seconds),
        "steady": steady,
        "whole_run": {
            f"{kind} {name}": {key: row[key] for key in WHOLE_RUN_COLUMNS}
            for (kind, name), row in whole.items()
            if kind
        },
    }
    if extended:
        report["cpu_pinning"] = pinning
        report["exit_codes"]["redis"] = redis_status
        report["processes"] = process_figures(final, samples, started, steady)
        report["locust_all_processes"] = locust_total(
            report["locust"], [final[label] for label in outlived], locust_seconds
        )
        if redis_server is not None:
            report["redis"] = redis_report(
                redis_figures, final["redis"]["peak_rss_mib"], samples, started, steady, server_seconds
            )
        report["machine"] = machine_report(samples, started, steady)
        report["logs"] = {
            name: log_problems(args.out / f"{name}.log") for name in ("server", "locust", "redis")
        }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    if extended:  # once a second: seconds since the start, established, CPU s per process, Redis's calls
        rows = [
            {"t": round(t, 2), "established": n, "cpu": cpu, "redis_calls": calls}
            for (t, n), (_, cpu, calls) in zip(timeline, samples, strict=True)
        ]
        (args.out / "samples.json").write_text(json.dumps({"started_monotonic": started, "samples": rows}))

    print(
        f"{args.users:,} users in rooms of {args.room_size}, think time {args.think_time:g} s; "
        f"all {args.users:,} connected for {all_connected:.0f} s (peak {report['peak_established']:,} "
        f"established); steady window {steady['seconds']:.0f} s; failures {failures}; "
        f"exit codes: locust {locust_status}, server {server_status}\n"
    )
    print("| message | req/s | failures | p50 ms | p95 ms | p99 ms | whole run p50/p95/p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, figures in steady["per_name"].items():
        if key.startswith("PUSH"):
            continue
        row = whole.get(tuple(key.split(" ", 1)), {})  # type: ignore[call-overload]
        print(
            f"| {key} | {figures['per_second']:,.1f} | {figures['failures']} | {figures['p50_ms']:.1f} "
            f"| {figures['p95_ms']:.1f} | {figures['p99_ms']:.1f} "
            f"| {row.get('50%', '-')} / {row.get('95%', '-')} / {row.get('99%', '-')} |"
        )
    pushes = ", ".join(
        f"{key[5:]} {figures['per_second']:,.0f}/s"
        for key, figures in steady["per_name"].items()
        if key.startswith("PUSH")
    )
    print(f"\npushes received (steady): {pushes}")
    print(
        (
            "Locust GC pauses in the steady window: "
            if args.locust_processes is None
            else f"Locust GC pauses in the steady window ({len(steady['workers'])} Locust workers, summed): "
        )
        + ", ".join(f"{gen} {g['count']} (max {g['max_ms']:.1f} ms)" for gen, g in steady["gc"].items())
    )
    print("\n| process | peak RSS | CPU user | CPU sys | CPU, share of one core |")
    print("|---|---:|---:|---:|---:|")
    for name in ("server", "locust"):
        u = report[name]
        print(
            f"| {name} | {u['peak_rss_mib']} MiB | {u['cpu_user_s']} s | {u['cpu_sys_s']} s "
            f"| {u['cpu_share_of_one_core']:.0%} |"
        )
    if extended:
        print_extended(report, args)
    ok = failures == 0 and locust_status == 0 and all_connected >= args.steady - 5
    return 0 if ok else 1


def merge_steady(parts: list[dict[str, Any]], users: int) -> dict[str, Any]:
    """The steady figures of Locust's workers, over the window common to all (in tenths of a
    second: each worker counted its requests and pushes per tenth), from the moment the last
    of the `users` connected (a worker's own window may start before its last users are
    spawned: it hears the master's "spawning complete" before their spawn message)."""
    if not parts:
        raise SystemExit("no Locust worker wrote its steady window: did every user connect?")
    connects = sorted(t for part in parts for t in part["connect_times"])
    all_connected = connects[users - 1] if len(connects) >= users else 0.0
    first = math.ceil(max(all_connected, *(part["start_monotonic"] for part in parts)) * 10)
    last = math.floor(min(part["end_monotonic"] for part in parts) * 10)  # excluded
    start, end = first / 10, last / 10
    seconds = (last - first) / 10
    keys = sorted({key for part in parts for key in part["buckets"]})
    per_name = {}
    for key in keys:
        count = sum(
            n
            for part in parts
            for tenth, n in part["buckets"].get(key, {}).items()
            if first <= int(tenth) < last
        )
        failures = sum(start <= t < end for part in parts for t in part["failure_times"].get(key, []))
        ordered = sorted(rt for part in parts for t, rt in part["timed"].get(key, []) if start <= t < end)
        per_name[key] = window_figures(count, seconds, failures, ordered)
    gc_pauses = {
        gen: {
            "count": sum(part["gc"][gen]["count"] for part in parts),
            "max_ms": max(part["gc"][gen]["max_ms"] for part in parts),
            "total_ms": sum(part["gc"][gen]["total_ms"] for part in parts),
        }
        for gen in parts[0]["gc"]
    }
    workers = [
        {
            "worker_index": part["worker_index"],
            "pid": part["pid"],
            "users": part["users"],
            "own_window_s": round(part["seconds"], 1),
            "own_window_starts_after_common_s": round(part["start_monotonic"] - start, 1),
        }
        for part in parts
    ]
    return {
        "seconds": seconds,
        "per_name": per_name,
        "gc": gc_pauses,
        "start_monotonic": start,
        "end_monotonic": end,
        "workers": workers,
    }


def window_samples(samples: list[Any], started: float, steady: dict[str, Any]) -> tuple[Any, Any] | None:
    """The first and last samples inside the steady window."""
    inside = [s for s in samples if steady["start_monotonic"] <= started + s[0] <= steady["end_monotonic"]]
    return (inside[0], inside[-1]) if len(inside) >= 2 and inside[-1][0] > inside[0][0] else None


def process_figures(
    final: dict[str, dict[str, Any]], samples: list[Any], started: float, steady: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    window = window_samples(samples, started, steady)
    locust_workers = {w["pid"]: w["worker_index"] for w in steady.get("workers", [])}
    figures: dict[str, dict[str, Any]] = {}
    for label, last in final.items():
        user, system = last["cpu"]
        seconds = last["at"] - started
        entry = {
            "pid": last["pid"],
            "peak_rss_mib": last["peak_rss_mib"],
            "cpu_user_s": round(user, 1),
            "cpu_sys_s": round(system, 1),
            "cpu_share_of_one_core": round((user + system) / seconds, 3) if seconds > 0 else None,
            "steady_cpu_share_of_one_core": None,
        }
        if window is not None and label in window[0][1] and label in window[1][1]:
            (t0, cpu0, _), (t1, cpu1, _) = window
            entry["steady_cpu_share_of_one_core"] = round(
                (sum(cpu1[label]) - sum(cpu0[label])) / (t1 - t0), 3
            )
        if label.startswith("locust worker") and last["pid"] in locust_workers:
            label = f"locust worker {locust_workers[last['pid']]}"  # Locust's own index
        figures[label] = entry
    order = ("server", "redis", "locust")  # each master before its workers, by index
    return dict(sorted(figures.items(), key=lambda kv: (order.index(kv[0].split()[0]), len(kv[0]), kv[0])))


def machine_report(samples: list[Any], started: float, steady: dict[str, Any]) -> dict[str, Any] | None:
    """In the steady window, in cores: the machine's busy CPU, ours (every process of the run),
    the others' (the rest: other people's work on the machine skews the run), the busiest
    second of the others, and steal."""
    inside = [s for s in samples if steady["start_monotonic"] <= started + s[0] <= steady["end_monotonic"]]
    if len(inside) < 2:
        return None

    def ours(cpu0: dict[str, tuple[float, float]], cpu1: dict[str, tuple[float, float]]) -> float:
        common = {label for label in cpu0.keys() & cpu1.keys() if label != "machine"}
        return sum(sum(cpu1[label]) - sum(cpu0[label]) for label in common)

    others = [
        (cpu1["machine"][0] - cpu0["machine"][0] - ours(cpu0, cpu1)) / (t1 - t0)
        for (t0, cpu0, _), (t1, cpu1, _) in itertools.pairwise(inside)
    ]
    (t0, cpu0, _), (t1, cpu1, _) = inside[0], inside[-1]
    seconds = t1 - t0
    busy = (cpu1["machine"][0] - cpu0["machine"][0]) / seconds
    mine = ours(cpu0, cpu1) / seconds
    return {
        "busy_cores": round(busy, 2),
        "ours_cores": round(mine, 2),
        "others_cores": round(busy - mine, 2) + 0.0,  # + 0.0: no "-0.0"
        "others_max_cores_in_a_second": round(max(others), 2),
        "steal_cores": round((cpu1["machine"][1] - cpu0["machine"][1]) / seconds, 3),
        "cores": os.cpu_count(),
    }


def locust_total(master: dict[str, float], outlived: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Locust's CPU, every process: wait4's figure for its master (the workers it reaped
    included) plus the last reading of each worker that outlived it."""
    user = master["cpu_user_s"] + sum(worker["cpu"][0] for worker in outlived)
    system = master["cpu_sys_s"] + sum(worker["cpu"][1] for worker in outlived)
    return {
        "cpu_user_s": round(user, 1),
        "cpu_sys_s": round(system, 1),
        "cpu_share_of_one_core": round((user + system) / seconds, 3),
        "workers_outliving_the_master": len(outlived),
    }


def redis_report(
    figures: dict[str, Any],
    peak_rss_mib: float | None,
    samples: list[Any],
    started: float,
    steady: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """Redis's CPU (INFO cpu, just before the stop), peak RSS (VmHWM), commands over the run
    and, from the once-a-second samples of INFO commandstats, in the steady window."""
    calls = {name: n for name, n in figures["calls"].items() if name not in OWN_COMMANDS}
    cpu = figures["cpu"]
    report: dict[str, Any] = {
        "cpu_user_s": round(cpu["used_cpu_user"], 1),
        "cpu_sys_s": round(cpu["used_cpu_sys"], 1),
        "cpu_share_of_one_core": round((cpu["used_cpu_user"] + cpu["used_cpu_sys"]) / seconds, 3),
        "peak_rss_mib": peak_rss_mib,  # VmHWM: wait4's would count the Python it was forked from
        "commands_whole_run": sum(calls.values()),
        "calls_whole_run": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
        "steady": None,
    }
    window = window_samples(samples, started, steady)
    if window is None:
        return report
    (t0, _, calls0), (t1, _, calls1) = window
    delta = {
        name: n - calls0.get(name, 0)
        for name, n in calls1.items()
        if name not in OWN_COMMANDS and n > calls0.get(name, 0)
    }
    says = steady["per_name"].get("WS say", {}).get("per_second", 0.0)
    total = sum(delta.values()) / (t1 - t0)
    publish = delta.get("publish", 0) / (t1 - t0)
    report["steady"] = {
        "seconds": round(t1 - t0, 1),
        "commands_per_s": round(total, 1),
        "publish_per_s": round(publish, 1),
        "per_s": {name: round(n / (t1 - t0), 1) for name, n in sorted(delta.items(), key=lambda kv: -kv[1])},
        "commands_per_say": round(total / says, 2) if says else None,
        "publish_per_say": round(publish / says, 2) if says else None,
    }
    return report


def log_problems(path: Path) -> dict[str, Any] | None:
    """Lines of a log that are not the server's own progress lines: warnings, errors, tracebacks."""
    if not path.exists():
        return None
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if path.name == "server.log":
        lines = [line for line in lines if not line.startswith("websock-actors: ")]
    elif path.name == "locust.log":
        lines = [line for line in lines if re.search(r"WARNING|ERROR|CRITICAL|Traceback|Error", line)]
    else:  # redis.log: '#' marks its warnings, and a few lines of every start and stop
        lines = [line for line in lines if " # " in line and not REDIS_ROUTINE.search(line)]
    return {"lines": len(lines), "first": lines[:10]}


def print_extended(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nCPU pinning: {report['cpu_pinning']}")
    if "workers" in report["steady"]:
        print(
            "Locust workers' own steady windows: "
            + ", ".join(
                f"worker {w['worker_index']} {w['users']:,} users {w['own_window_s']:.0f} s"
                for w in report["steady"]["workers"]
            )
            + f"; merged over the common {report['steady']['seconds']:.0f} s"
        )
    print("\n| process | pid | peak RSS (VmHWM) | CPU user | CPU sys | CPU, of a core | in steady window |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, u in report["processes"].items():
        steady_share = u["steady_cpu_share_of_one_core"]
        print(
            f"| {label} | {u['pid']} | {u['peak_rss_mib']} MiB | {u['cpu_user_s']} s | {u['cpu_sys_s']} s "
            f"| {u['cpu_share_of_one_core']:.0%} | {'-' if steady_share is None else f'{steady_share:.0%}'} |"
        )
    total = report["locust_all_processes"]
    print(
        f"| locust, all processes | | | {total['cpu_user_s']} s | {total['cpu_sys_s']} s "
        f"| {total['cpu_share_of_one_core']:.0%} | |"
    )
    print(
        "(server processes read just before the server is stopped, Locust's until each exits; the"
        " server and locust rows above are wait4's: the server's workers included, but not Locust's"
        f" workers that outlived its master ({total['workers_outliving_the_master']} here))"
    )
    machine = report.get("machine")
    if machine is not None:
        print(
            f"\nMachine in the steady window ({machine['cores']} cores): busy {machine['busy_cores']} cores,"
            f" of which this run's processes {machine['ours_cores']}, other processes'"
            f" {machine['others_cores']} (at most {machine['others_max_cores_in_a_second']} in a"
            f" second); steal {machine['steal_cores']}"
        )
    redis_figures = report.get("redis")
    if redis_figures is not None:
        print(
            f"\nRedis: CPU {redis_figures['cpu_user_s']} s user + {redis_figures['cpu_sys_s']} s sys over "
            f"the run ({redis_figures['cpu_share_of_one_core']:.0%} of a core; INFO cpu), peak RSS (VmHWM) "
            f"{redis_figures['peak_rss_mib']} MiB, {redis_figures['commands_whole_run']:,} commands in all"
        )
        window = redis_figures["steady"]
        if window is not None:
            top = ", ".join(f"{name} {n:,.0f}" for name, n in list(window["per_s"].items())[:8])
            print(
                f"Redis in the steady window ({window['seconds']:.0f} s): "
                f"{window['commands_per_s']:,.0f} commands/s, PUBLISH {window['publish_per_s']:,.0f}/s; "
                f"per `say`: {window['commands_per_say']} commands, {window['publish_per_say']} PUBLISH; "
                f"per second: {top}"
            )
    for name, problems in report["logs"].items():
        if problems is None:
            continue
        if problems["lines"]:
            print(f"\n{name}.log: {problems['lines']} warning/error lines; the first:")
            for line in problems["first"]:
                print(f"    {line}")
        else:
            print(f"{name}.log: no warning or error")
    failures_csv = args.out / "chat_failures.csv"
    if failures_csv.exists() and len(failures_csv.read_text().splitlines()) > 1:
        print(f"\nLocust failures ({failures_csv}):\n{failures_csv.read_text()}")


if __name__ == "__main__":
    sys.exit(main())
