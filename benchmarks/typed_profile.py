"""Where a typed echo's server time goes, in figures that a loaded host distorts little.

    .venv/bin/python benchmarks/typed_profile.py [--app benchmarks.typed_echo_app:app]
        [--conns 100] [--window 1] [--strace] [--switches] [--cprofile N] [--tree DIR]
    .venv/bin/python benchmarks/typed_profile.py --mode raw --app benchmarks.bench_app:shared_app

One server (pinned to CPU 0) and the Node load generator (typed_load.js, CPU 1). Over a
2-second window in the middle of the load it reports, per reply: the server's CPU time
(utime + stime, and each apart: the kernel's share is mostly the read and the write),
greenlet switches (`--switches`: greenlet.settrace counting, which slows the server),
syscalls by name (`--strace`: `strace -c -f -p`, which slows it much more; the
per-reply counts stay right) and the N functions with the most own time (`--cprofile N`).
Use one instrument per run: each distorts the CPU figure of the others. `--tree DIR` serves
the websock_actors of another checkout (for before and after, back to back). `--mode raw`
loads a raw echo (32 bytes of text); its messages are counted by a wrapper around the app's
`handle_message`, which costs a call per message.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.node import TYPED_LOAD, missing_node  # noqa: E402
from benchmarks.harness.ports import free_port, wait_for_port  # noqa: E402
from benchmarks.harness.processes import pinned, stop_process  # noqa: E402

WINDOW = 2.0  # seconds measured, after 1.5 s of warm-up


def serve(args: argparse.Namespace) -> None:
    """In the server process: the app served, a window opened and closed by SIGUSR1."""
    import cProfile
    import importlib
    import pstats

    import gevent
    import greenlet

    from websock_actors.cli import main

    module, name = args.app.split(":")
    app = getattr(importlib.import_module(module), name)
    dispatcher = getattr(app, "dispatcher", None)
    counted = [0]
    if dispatcher is None:  # a raw app: count its messages with a wrapper
        handle = app.handle_message

        def counting(conn: object, message: str | bytes) -> None:
            counted[0] += 1
            handle(conn, message)

        app.handle_message = counting
    switches = [0]
    if args.switches:
        greenlet.settrace(lambda event, _args: switches.__setitem__(0, switches[0] + 1))
    profile = cProfile.Profile() if args.cprofile else None
    marks: list[tuple[float, float, int, int]] = []

    def mark() -> None:
        times = os.times()
        if dispatcher is None:
            replies = counted[0]
        else:
            replies = sum(live.received for live in dispatcher.live.values())
        marks.append((times.user, times.system, replies, switches[0]))
        if profile is not None:
            profile.enable() if len(marks) == 1 else profile.disable()
        if len(marks) == 2:
            (user0, sys0, n0, s0), (user1, sys1, n1, s1) = marks
            n = max(1, n1 - n0)
            user, system = (user1 - user0) * 1e6 / n, (sys1 - sys0) * 1e6 / n
            result = {"replies": n1 - n0, "cpu_us_per_reply": round(user + system, 2),
                      "user_us": round(user, 2), "sys_us": round(system, 2)}  # fmt: skip
            if args.switches:
                result["switches_per_reply"] = round((s1 - s0) / n, 2)
            print(json.dumps(result), flush=True)
            if profile is not None:
                stats = pstats.Stats(profile, stream=sys.stdout)
                stats.sort_stats("tottime").print_stats(args.cprofile)
                sys.stdout.flush()

    gevent.signal_handler(signal.SIGUSR1, mark)
    main(["run", args.app, "--port", str(args.port), "--no-patch", "--ping-interval", "0",
          "--log-level", "WARNING"])  # fmt: skip


def drive(args: argparse.Namespace) -> int:
    port = free_port()
    tree = str(Path(args.tree).resolve()) if args.tree else str(ROOT)
    me = [sys.executable, __file__, "--serve", "--port", str(port), "--app", args.app, "--tree", tree]
    if args.switches:
        me.append("--switches")
    if args.cprofile:
        me += ["--cprofile", str(args.cprofile)]
    env = {**os.environ, "PYTHONPATH": tree}
    server = subprocess.Popen(pinned(0, me), cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
    try:
        if (why := wait_for_port(port, 10, process=server, poll=0.1)) is not None:
            print(why, file=sys.stderr)
            return 1
        load = ["echo", "--mode", args.mode, "--conns", str(args.conns), "--window", str(args.window),
                "--duration", str(WINDOW + 2), "--url", f"ws://127.0.0.1:{port}/"]  # fmt: skip
        loader = subprocess.Popen(pinned(1, ["node", str(TYPED_LOAD), *load]), cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(1.5)
        tracer = None
        if args.strace:
            tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(server.pid)],
                                      stderr=subprocess.PIPE, text=True)  # fmt: skip
            time.sleep(0.3)
        server.send_signal(signal.SIGUSR1)
        time.sleep(WINDOW)
        server.send_signal(signal.SIGUSR1)
        if tracer is not None:
            time.sleep(0.1)
            tracer.send_signal(signal.SIGINT)
            _, table = tracer.communicate(timeout=10)
        print(loader.communicate(timeout=30)[0], end="")
    finally:
        stop_process(server, 10)
    out = server.stdout.read() if server.stdout else ""
    print(out, end="")
    if tracer is not None:
        replies = json.loads(next(line for line in out.splitlines() if line.startswith("{")))["replies"]
        print(f"syscalls per reply ({replies} replies in the window; strace's own window is a bit longer):")
        for line in table.splitlines():
            cells = line.split()
            if len(cells) >= 5 and cells[0][0].isdigit() and cells[-1] != "total":
                print(f"  {cells[-1]:<16} {int(cells[3]) / max(1, replies):.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="benchmarks.typed_echo_app:app")
    parser.add_argument("--mode", choices=("typed", "raw"), default="typed")
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--switches", action="store_true")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument("--tree", default="", help="the checkout whose websock_actors is served")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        sys.path.insert(0, args.tree)
        serve(args)
        return 0
    if (missing := missing_node()) is not None:
        parser.error(missing)
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
