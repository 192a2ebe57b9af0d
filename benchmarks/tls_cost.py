"""The cost of TLS: websock_actors and websockets, plain (ws://) and TLS (wss://), side by side.

    python benchmarks/tls_cost.py                 # 3 rounds, a few minutes
    python benchmarks/tls_cost.py --quick         # 1 round, shorter and smaller: a smoke run

Servers: benchmarks/bench_app.py through `websock-actors run` (--certfile/--keyfile for TLS)
and benchmarks/tls_websockets_peer.py, on CPU 0; the load generator benchmarks/tls_load.js on
CPU 1 (`npm install` in benchmarks/ once); a trustme certificate the client checks. Each with a
fresh server: echo (100 connections x 1 in flight, messages/s), broadcast (1,000 receivers, 200
`broadcast:` messages, 8 in flight, deliveries/s), 1 MiB echo (1 connection, MB/s) and idle
memory (VmRSS over 5,000 idle connections, KiB each). Prints the medians as a markdown table
with the TLS/plain ratios, then every round as a JSON line. Loopback only; every step has a
time limit; the servers are stopped by their PID.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.node import BENCH, TLS_LOAD, missing_node  # noqa: E402
from benchmarks.harness.ports import free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import pinned, raise_fd_limit, stop_process  # noqa: E402
from benchmarks.harness.procstat import cpu_seconds, rss_kib  # noqa: E402
from benchmarks.harness.stats import median  # noqa: E402

SERVERS = ("websock_actors", "websockets")
MODES = ("plain", "tls")
METRICS = {  # name: (label, unit, higher is better)
    "echo": ("echo, 100 conns x 1 in flight", "msg/s", True),
    "broadcast": ("broadcast to 1,000 conns", "deliveries/s", True),
    "big_echo": ("1 MiB echo, 1 conn", "MB/s", True),
    "idle_kib": ("idle memory, 5,000 conns", "KiB/conn", False),
}


FIGURE = {"echo": "msgs_per_s", "broadcast": "deliveries_per_s", "big_echo": "mb_per_s"}  # in tls_load.js


def make_certificates(folder: Path) -> tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = folder / "chain.pem", folder / "key.pem", folder / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    with open(chain, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return str(chain), str(key), str(ca_file)


def server_command(server: str, port: int, tls: tuple[str, str] | None) -> list[str]:
    if server == "websock_actors":
        command = [
            sys.executable, "-m", "websock_actors", "run", "benchmarks.bench_app:app", "--port", str(port),
            "--no-patch", "--ping-interval", "0", "--log-level", "WARNING", "--max-connections", "20000",
        ]  # fmt: skip
    else:
        command = [sys.executable, str(BENCH / "tls_websockets_peer.py"), str(port)]
    if tls is not None:
        command += ["--certfile", tls[0], "--keyfile", tls[1]]
    return pinned(0, command)


ERRORS: dict[str, int] = {}  # server/mode: lines with ERROR or Traceback its stderr had


@contextmanager
def running(server: str, tls: tuple[str, str] | None) -> Iterator[tuple[int, int]]:
    """A fresh server: (its PID, its port); SIGTERM by PID afterwards, SIGKILL if it lingers.
    Its stderr goes to a temporary file whose ERROR lines are counted in ERRORS."""
    port = free_port()
    key = f"{server}/{'tls' if tls else 'plain'}"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            server_command(server, port, tls), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            if (why := wait_for_port(port, 20, process=proc)) is not None:
                raise SystemExit(why)
            time.sleep(0.5)  # settle before any reading
            yield proc.pid, port
        finally:
            stop_process(proc, 10)
            log.seek(0)
            ERRORS[key] = ERRORS.get(key, 0) + sum(" ERROR " in line for line in log)


def load_command(scenario: str, url: str, ca_file: str, *args: object) -> list[str]:
    return pinned(1, ["node", str(TLS_LOAD), scenario, "--url", url, "--ca", ca_file, *map(str, args)])


def run_load(command: list[str], timeout: float, pid: int) -> dict[str, object]:
    """Run the load generator; its JSON line, with the server's CPU use over the measured
    window as `server_cpu` (1.0: one CPU busy all the time)."""
    deadline = time.monotonic() + timeout
    marks: list[tuple[float, float]] = []  # (server CPU seconds, wall time) at the window's ends
    lines: list[str] = []
    node = subprocess.Popen(command, cwd=BENCH, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert node.stdout is not None and node.stderr is not None
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([node.stdout], [], [], left)
            line = node.stdout.readline() if ready else ""
            if not line:
                break
            if line.startswith("window "):
                marks.append((cpu_seconds(pid), time.monotonic()))
            else:
                lines.append(line)
        node.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(5)
    if node.returncode != 0 or not lines or len(marks) != 2:
        error = node.stderr.read().strip()[-500:]
        raise RuntimeError(f"{' '.join(command)} failed ({node.returncode}): {error}")
    result: dict[str, object] = json.loads(lines[-1])
    (cpu0, t0), (cpu1, t1) = marks
    result["server_cpu"] = round((cpu1 - cpu0) / (t1 - t0), 2)
    return result


def measure_idle(pid: int, command: list[str], hold: float, timeout: float) -> dict[str, object]:
    before = rss_kib(pid)
    node = subprocess.Popen(command, cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert node.stdin is not None and node.stdout is not None
    try:
        ready, _, _ = select.select([node.stdout], [], [], timeout)
        line = node.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the idle connections did not open within {timeout}s")
        opened = json.loads(line)
        time.sleep(hold)
        after = rss_kib(pid)
        node.stdin.close()
        final = json.loads(node.stdout.readline() or "{}")
        node.wait(20)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(5)
    conns = int(opened["opened"])
    return {"idle_kib": round((after - before) / conns, 2), "rss_before_kib": before, "rss_after_kib": after,
            "idle_open_s": opened["open_s"], "closed_by_server": final.get("closed_by_server")}  # fmt: skip


def one_round(args: argparse.Namespace, certs: tuple[str, str, str]) -> dict[str, dict[str, object]]:
    chain, key, ca_file = certs
    figures: dict[str, dict[str, object]] = {}
    for server in SERVERS:
        for mode in MODES:
            tls = (chain, key) if mode == "tls" else None
            scheme = "wss" if tls else "ws"
            got: dict[str, object] = {}
            with running(server, tls) as (pid, port):
                url = f"{scheme}://127.0.0.1:{port}/"
                got.update(measure_idle(pid, load_command("idle", url, ca_file, "--conns", args.idle_conns,
                                                          "--hold", 60), args.hold, 90))  # fmt: skip
            for metric, load, limit in (
                ("echo", ["echo", "--conns", 100, "--window", 1, "--duration", args.duration], 60),
                ("broadcast", ["broadcast", "--conns", args.broadcast_conns, "--messages", args.messages,
                               "--window", 8], 90),
                ("big_echo", ["echo", "--conns", 1, "--window", 1, "--size", 1 << 20, "--binary",
                              "--duration", args.duration], 60),
            ):  # fmt: skip
                with running(server, tls) as (pid, port):
                    url = f"{scheme}://127.0.0.1:{port}/"
                    result = run_load(load_command(str(load[0]), url, ca_file, *load[1:]), limit, pid)
                got[metric] = result[FIGURE[metric]]
                got[f"{metric}_cpu"] = [result["server_cpu"], result["client_cpu"]]
            figures[f"{server}/{mode}"] = got
            print(f"  {server:15} {mode:5} {json.dumps(got)}", file=sys.stderr, flush=True)
    return figures


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def table(rounds: list[dict[str, dict[str, object]]]) -> str:
    def middle(key: str, metric: str) -> float:
        return median(float(r[key][metric]) for r in rounds) or 0.0  # type: ignore[arg-type]

    head = "| measurement | " + " | ".join(f"{s} plain | {s} TLS | TLS/plain" for s in SERVERS) + " |"
    lines = [head, "|---" * (1 + 3 * len(SERVERS)) + "|"]
    for metric, (label, unit, _) in METRICS.items():
        cells = [f"{label} ({unit})"]
        for server in SERVERS:
            plain, tls = middle(f"{server}/plain", metric), middle(f"{server}/tls", metric)
            cells += [number(plain), number(tls), f"{tls / plain:.2f}" if plain else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per echo measurement")
    parser.add_argument("--idle-conns", type=int, default=5000)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds the idle connections are held first")
    parser.add_argument("--broadcast-conns", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1 round, 1 s echoes, 500 idle, 200 receivers")
    parser.add_argument("--max-time", type=float, default=900.0, help="limit for the whole run, seconds")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.idle_conns = 1, 1.0, 500
        args.broadcast_conns, args.messages = 200, 50
    if (missing := missing_node()) is not None:
        raise SystemExit(missing)
    wanted = raise_fd_limit(args.idle_conns + 1000)  # the server and node inherit it
    if wanted < args.idle_conns + 100:
        raise SystemExit(f"file descriptor limit {wanted} is too low for {args.idle_conns} connections")

    def out_of_time(*_: object) -> None:
        raise TimeoutError("--max-time reached")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(args.max_time))
    started = time.monotonic()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tls-cost-") as folder:
        certs = make_certificates(Path(folder))
        rounds = []
        for number_ in range(1, args.rounds + 1):
            print(f"round {number_}/{args.rounds}", file=sys.stderr, flush=True)
            rounds.append(one_round(args, certs))
    signal.alarm(0)
    print(f"\nMedians of {args.rounds} round(s), {time.monotonic() - started:.0f} s, "
          f"{os.cpu_count()} CPUs, servers on CPU 0, load generator on CPU 1, load average "
          f"{load_before[0]:.2f} before and {os.getloadavg()[0]:.2f} after:\n")  # fmt: skip
    print(table(rounds))
    print("\n`*_cpu`: [server, load generator] CPU use over the measured window (1.0 = one CPU busy)")
    print(f"server stderr lines with ERROR: {json.dumps(ERRORS)}\n")
    for figures in rounds:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
