"""The typed-path benchmark: raw echo vs typed (validated) echo vs chat broadcast, on loopback.

    .venv/bin/python benchmarks/typed_bench.py [--rounds 3] [--inline]
    benchmarks/typed_bench.sh [PYTHON]           (the same: ROUNDS=5, INLINE=1 in its environment)

Each server (`websock-actors run APP --no-patch --ping-interval 0`) on CPU 0, the Node load
generator (typed_load.js; `npm install` in benchmarks/ once) on CPU 1, a fresh server per run.
Each run prints its JSON line; the last lines are the medians over rounds and typed/raw.
--inline: both echo apps declared inline (Application.inline).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.node import TYPED_LOAD, missing_node  # noqa: E402
from benchmarks.harness.ports import free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import pinned, stop_process  # noqa: E402
from benchmarks.harness.stats import median  # noqa: E402

ECHO_RUNS = ((100, 16), (1, 1))  # (connections, messages in flight each)


def run(app: str, python: str, *load: str) -> dict[str, object] | None:
    """One fresh server of `app` and one load generator run against it: its JSON line."""
    port = free_port()
    command = [python, "-m", "websock_actors", "run", app, "--port", str(port), "--no-patch",
               "--ping-interval", "0", "--log-level", "WARNING", "--max-connections", "20000"]  # fmt: skip
    server = subprocess.Popen(
        pinned(0, command), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if (why := wait_for_port(port, 10, process=server, poll=0.1)) is not None:
            print(f"{app}: {why}", file=sys.stderr)
            return None
        driver = [*pinned(1, ["node", str(TYPED_LOAD), *load]), "--url", f"ws://127.0.0.1:{port}/"]
        out = subprocess.run(driver, cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    finally:
        stop_process(server, 10)
    print(out, end="", flush=True)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inline", action="store_true", help="the inline variants of both echo apps")
    parser.add_argument("--python", default=sys.executable, help="the servers' Python")
    args = parser.parse_args()
    if (missing := missing_node()) is not None:
        parser.error(missing)
    variant = "inline_app" if args.inline else "app"
    apps = {"raw": f"examples.echo:{variant}", "typed": f"benchmarks.typed_echo_app:{variant}"}
    runs: list[dict[str, object]] = []
    for _ in range(args.rounds):
        for conns, window in ECHO_RUNS:
            for mode, app in apps.items():
                load = ["--mode", mode, "--conns", str(conns), "--window", str(window), "--duration", "3"]
                runs.append(run(app, args.python, "echo", *load) or {})
        broadcast = ["broadcast", "--conns", "1000", "--messages", "200", "--window", "8"]
        runs.append(run("benchmarks.chat_unlimited:app", args.python, *broadcast) or {})

    def rate(mode: str, conns: int, window: int) -> float:
        rates = [r["msgs_per_s"] for r in runs if r.get("mode") == mode and r.get("conns") == conns
                 and r.get("window") == window]  # fmt: skip
        return median(float(x) for x in rates) or 0  # type: ignore[arg-type]

    for conns, window in ECHO_RUNS:
        raw, typed = rate("raw", conns, window), rate("typed", conns, window)
        ratio = typed / raw if raw else 0
        print(f"median echo C={conns} W={window}: raw {raw:,.0f} msg/s, typed {typed:,.0f} msg/s, "
              f"typed/raw {ratio:.2f}")  # fmt: skip
    deliveries = [r["deliveries_per_s"] for r in runs if r.get("scenario") == "broadcast"]
    if deliveries:
        print(f"median broadcast to 1,000: {median(float(x) for x in deliveries):,.0f} deliveries/s")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
