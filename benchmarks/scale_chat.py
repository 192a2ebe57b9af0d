"""Scale run: the chat server in one process, Locust headless in another, on loopback.

    .venv/bin/python benchmarks/scale_chat.py                  # 5,000 users, 75 s at full load
    .venv/bin/python benchmarks/scale_chat.py --users 1000 --steady 20

The server (`websock-actors run examples.chat:app`) runs pinned to CPU 0, Locust (the users of
locustfiles/chat.py, through benchmarks/scale_chat_locustfile.py) to CPU 1. Locust spawns
--users at --spawn-rate (it starts floor(rate) users at once each second), holds them for
--steady seconds, then stops them; each closes its connection. Every second this script counts
the server's established connections (`ss`). At the end it prints:
- per message type, for the steady window (all users connected; from the first second after
  spawning to the stop): requests/s, failures, and p50/p95/p99 of the round trip, and the
  same percentiles over the whole run (spawning and stopping included, from Locust's CSV);
- pushes per second per type; Locust's garbage-collector pauses in the steady window;
- peak RSS and CPU time (user, system) of both processes, from wait4().
Bounded: one run, loopback only, both processes ours and stopped by PID. Exits 1 unless there
was no failure and all users stayed connected for the whole steady window.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WHOLE_RUN_COLUMNS = ("Request Count", "Failure Count", "50%", "95%", "99%")


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))  # inherited by both children
    return target


def established(port: int) -> int:
    """Established TCP connections whose local port is `port`: the server's side of each."""
    command = ["ss", "-Htn", "state", "established", f"( sport = :{port} )"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def try_reap(process: subprocess.Popen[bytes]) -> tuple[int, Any] | None:
    """(exit status, resource usage) of `process` (ours) once it has ended, else None."""
    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
    if not pid:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage


def reap(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, Any]:
    """Wait for `process` up to `timeout` (then kill it); its exit status and resource usage."""
    deadline = time.monotonic() + timeout
    while (done := try_reap(process)) is None:
        if time.monotonic() > deadline:
            process.kill()
        time.sleep(0.1)
    return done


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
    args = parser.parse_args()

    fds = raise_fd_limit(args.users + 2000)
    if fds < args.users + 100:
        sys.exit(f"only {fds} file descriptors allowed; {args.users} users need more")
    args.out.mkdir(parents=True, exist_ok=True)
    prefix, steady_json = args.out / "chat", args.out / "steady.json"
    steady_json.unlink(missing_ok=True)
    run_time = int(args.users / args.spawn_rate + args.steady + 0.999)
    timeline: list[tuple[float, int]] = []

    with ExitStack() as stack:
        server_log = stack.enter_context(open(args.out / "server.log", "wb"))
        locust_log = stack.enter_context(open(args.out / "locust.log", "wb"))
        server = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "websock_actors", "run", "examples.chat:app",
             "--port", str(args.port), "--no-patch", "--max-connections", str(args.users + 1000),
             "--log-level", "WARNING"],
            cwd=ROOT, stdout=server_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        locust: subprocess.Popen[bytes] | None = None
        try:
            wait_for_port(args.port, 20)
            started = time.monotonic()
            locust = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, "-m", "locust",
                 "-f", "benchmarks/scale_chat_locustfile.py", "--headless",
                 "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{run_time}s",
                 "--host", f"ws://127.0.0.1:{args.port}", "--csv", str(prefix), "--only-summary",
                 "--think-time", str(args.think_time), "--room-size", str(args.room_size),
                 "--steady-json", str(steady_json)],
                cwd=ROOT, stdout=locust_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            while (done := try_reap(locust)) is None and time.monotonic() - started < run_time + 120:
                timeline.append((time.monotonic() - started, established(args.port)))
                time.sleep(1.0)
            locust_status, locust_usage = done or reap(locust, 0)
            locust_seconds = time.monotonic() - started
        finally:
            if locust is not None and locust.returncode is None:
                reap(locust, 0)
            server.send_signal(signal.SIGTERM)
            server_status, server_usage = reap(server, 30)
            server_seconds = time.monotonic() - started

    with open(f"{prefix}_stats.csv", newline="") as f:
        whole = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
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
    (args.out / "report.json").write_text(json.dumps(report, indent=2))

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
        "Locust GC pauses in the steady window: "
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
    ok = failures == 0 and locust_status == 0 and all_connected >= args.steady - 5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
