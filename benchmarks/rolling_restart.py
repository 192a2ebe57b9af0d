"""A rolling restart under load: Locust chat users (locustfiles/chat.py --resume) against
`examples.chat` under `--workers 2 --redis`; mid-run the app's code changes and the master
gets SIGHUP.

    .venv/bin/python benchmarks/rolling_restart.py                          # 100 users, 30 s
    .venv/bin/python benchmarks/rolling_restart.py --users 1000 --duration 60 --json out.json

The app is a module of the run's own (in a temporary directory): the chat demo plus a page,
GET /version, answering "VERSION PID" with the version written in its code. At --hup-at
seconds the module is rewritten with the next version and the master gets SIGHUP. Meanwhile
a probe thread opens a TCP connection to the port every few milliseconds and counts the
refused ones. Reported as one JSON object: Locust's failures by kind, the refused
connections (Locust's and the probe's), the resumes (`WS resume`: total, recovered), the
room order checks (`WS order`: a gap or a repeat that nobody reported is a failure there: the
delivery check of this run), how long the restart took, and whether every worker serves the
new version afterwards (GET /version until both workers' PIDs answered).

Bounded: every wait has a timeout, the whole run --duration + 90 s at most; loopback only;
every process is ours, stopped by its PID. Exit 0 when the run completed (whatever it
measured), 2 when the server or Redis did not start.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.ports import free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import Failed, stop_process  # noqa: E402
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402

APP = """import os
from examples.chat import app

app.page("/version", "{version} " + str(os.getpid()), "text/plain; charset=utf-8")
"""


def write_app(directory: Path, version: str) -> None:
    temporary = directory / ".rolling_chat.py.tmp"
    temporary.write_text(APP.format(version=version))
    os.replace(temporary, directory / "rolling_chat.py")  # whole, as an editor saves


class Probe(threading.Thread):
    """TCP connects to the port every `pause` seconds: refused ones counted, with when."""

    def __init__(self, port: int, pause: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.port, self.pause = port, pause
        self.halt = threading.Event()
        self.attempts = self.refused = self.other = 0

    def run(self) -> None:
        while not self.halt.wait(self.pause):
            self.attempts += 1
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    pass
            except ConnectionRefusedError:
                self.refused += 1
            except OSError:
                self.other += 1


def version_of(port: int) -> tuple[str, int] | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        conn.request("GET", "/version")
        body = conn.getresponse().read().decode()
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    version, _, pid = body.partition(" ")
    return (version, int(pid)) if pid.isdigit() else None


def served_by_all(port: int, workers: int, version: str, tries: int = 400) -> dict[str, Any]:
    """GET /version until `workers` PIDs answered: which versions answered, by PID."""
    seen: dict[int, str] = {}
    for _ in range(tries):
        answer = version_of(port)
        if answer is not None:
            seen[answer[1]] = answer[0]
            if len(seen) >= workers and all(v == version for v in seen.values()):
                break
    versions = set(seen.values())
    return {"pids": len(seen), "versions": sorted(versions), "all_new": versions == {version}}


def locust_stats(prefix: Path) -> dict[str, Any]:
    """From Locust's CSV files: requests and failures by name, failures by kind."""
    rows: dict[str, dict[str, int]] = {}
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = f"{row['Type']} {row['Name']}".strip()
            rows[name] = {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"])}
    kinds: dict[str, int] = {}
    failures_file = Path(f"{prefix}_failures.csv")
    if failures_file.exists():
        with open(failures_file, newline="") as f:
            for row in csv.DictReader(f):
                kind = f"{row['Method']} {row['Name']}: {row['Error']}"
                kinds[kind] = kinds.get(kind, 0) + int(row["Occurrences"])
    return {"by_name": rows, "failures_by_kind": kinds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--duration", type=int, default=30, help="seconds of Locust load")
    parser.add_argument("--hup-at", type=float, default=None, help="seconds in (default: a third)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--think-time", type=float, default=2.0)
    parser.add_argument("--no-hup", action="store_true", help="the control run: the same load, no restart")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    hup_at = options.duration / 3 if options.hup_at is None else options.hup_at
    deadline = time.monotonic() + options.duration + 90
    redis_binary = shutil.which("redis-server")
    if redis_binary is None:
        print("redis-server is needed (apt-get install redis-server)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="rolling-restart-"))
    server = locust = redis = None
    try:
        redis = RedisServer(redis_binary, None, workdir)
        write_app(workdir, "v1")
        port = free_port()
        command = [
            sys.executable, "-m", "websock_actors", "run", "rolling_chat:app", "--port", str(port),
            "--workers", str(options.workers), "--redis", redis.url, "--no-patch",
            "--rate-limit-per", "connection", "--max-connections", "10000",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        log = workdir / "server.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        started_up = wait_for_port(port, 20, process=server) is None
        if not started_up or served_by_all(port, options.workers, "v1")["pids"] < options.workers:
            print("the server did not start:\n" + log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 2
        probe = Probe(port)
        probe.start()
        prefix = workdir / "locust"
        locust = subprocess.Popen(
            [
                sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / "chat.py"), "--headless",
                "--host", f"ws://127.0.0.1:{port}",
                "-u", str(options.users), "-r", str(max(1, options.users // 5)),
                "-t", f"{options.duration}s", "--resume", "--think-time", str(options.think_time),
                "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
            ],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(hup_at)  # the load's own pace: the restart lands mid-run
        started = time.monotonic()
        restart_seconds = None
        if not options.no_hup:
            write_app(workdir, "v2")
            server.send_signal(signal.SIGHUP)
        while not options.no_hup and time.monotonic() < deadline and restart_seconds is None:
            if "restart done" in log.read_text(errors="replace"):
                restart_seconds = round(time.monotonic() - started, 3)
            elif "restart is abandoned" in log.read_text(errors="replace"):
                break
            else:
                time.sleep(0.02)
        try:
            output, _ = locust.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            locust.kill()
            output, _ = locust.communicate(timeout=10)
        probe.halt.set()
        probe.join(5)
        after = served_by_all(port, options.workers, "v1" if options.no_hup else "v2")
        stats = locust_stats(prefix)
        by_name = stats["by_name"]
        resume = by_name.get("WS resume", {"requests": 0, "failures": 0})
        order = by_name.get("WS order", {"requests": 0, "failures": 0})
        refused_locust = sum(n for kind, n in stats["failures_by_kind"].items() if "refused" in kind.lower())
        in_order = [line for line in output.splitlines() if line.startswith("room messages in order:")]
        result = {
            "users": options.users,
            "duration_s": options.duration,
            "workers": options.workers,
            "hup_at_s": None if options.no_hup else hup_at,
            "restart_s": restart_seconds,
            "locust_failures": by_name.get("Aggregated", {}).get("failures"),
            "locust_requests": by_name.get("Aggregated", {}).get("requests"),
            "failures_by_kind": stats["failures_by_kind"],
            "refused": {"locust": refused_locust, "probe": probe.refused, "probe_attempts": probe.attempts},
            "resumes": {"total": resume["requests"], "recovered": resume["requests"] - resume["failures"]},
            "order_failures": order["failures"],  # a gap or repeat the client noticed
            "room_messages_in_order": int(in_order[-1].split(":")[1]) if in_order else None,
            "new_version_after": after,
            "server_log": str(log),
        }
        text = json.dumps(result, indent=2)
        print(text)
        if options.json is not None:
            options.json.write_text(text + "\n")
        return 0
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for process in (locust, server):
            if process is not None:
                stop_process(process, 20)
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    sys.exit(main())
