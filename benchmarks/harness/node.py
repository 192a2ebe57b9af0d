"""The Node `ws` load drivers of benchmarks/ (`npm install` there once): typed_load.js and
tls_load.js, and the broadcast driver's stdin/stdout handshake."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.harness.processes import ChildProcess, Failed, pinned

__all__ = ["BENCH", "TLS_LOAD", "TYPED_LOAD", "BroadcastLoad", "add_broadcast_options", "missing_node"]

BENCH = Path(__file__).resolve().parents[1]
TYPED_LOAD = BENCH / "typed_load.js"
TLS_LOAD = BENCH / "tls_load.js"


def missing_node() -> str | None:
    """Why the drivers cannot run here (no node, or no `npm install`), or None."""
    if not shutil.which("node") or not (BENCH / "node_modules" / "ws").is_dir():
        return "node and `npm install` in benchmarks/ are needed"
    return None


def add_broadcast_options(parser: argparse.ArgumentParser, messages: int, timeout: float) -> None:
    """The options of `BroadcastLoad` (--conns, --messages, --window, --settle, --timeout...)."""
    parser.add_argument("--conns", type=int, default=1000, help="room members (receivers)")
    parser.add_argument("--messages", type=int, default=messages, help="broadcasts (says by the one sender)")
    parser.add_argument("--window", type=int, default=8, help="says in flight")
    parser.add_argument("--settle", type=int, default=300, help="ms without a frame before saying")
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds for the deliveries of a run")
    parser.add_argument("--join-timeout", type=float, default=120.0, help="seconds to connect and join")


class BroadcastLoad(ChildProcess):
    """`typed_load.js broadcast` run with `--sync` (on args.client_cpu, with the options of
    `add_broadcast_options` and `where`: its --urls and the like): it joins every member and
    prints READY on stderr, says on "go" and prints DONE, and on a second "go" its JSON figures."""

    def __init__(self, args: argparse.Namespace, where: list[str]) -> None:
        options = ["--conns", str(args.conns), "--messages", str(args.messages), "--window", str(args.window)]
        options += [*where, "--settle", str(args.settle), "--sync", "--timeout", str(args.timeout)]
        options += ["--limit", str(args.timeout + args.join_timeout + 60)]
        command = pinned(args.client_cpu, ["node", str(TYPED_LOAD), "broadcast", *options])
        super().__init__("load generator", command, stdin=True)

    def wait_joined(self, timeout: float) -> None:
        self.expect("stderr", "READY", timeout)

    def say_all(self, timeout: float) -> None:
        """Send the broadcasts; return once the last delivery arrived."""
        self.send_line("go")
        self.expect("stderr", "DONE", timeout)

    def figures(self, timeout: float = 30.0) -> dict[str, Any]:
        """Its JSON line; raises Failed unless it then exits 0."""
        self.send_line("go")
        result: dict[str, Any] = json.loads(self.expect("stdout", "{", timeout))
        if self.proc.wait(timeout) != 0:
            raise Failed(f"load generator exited with {self.proc.returncode}")
        return result

    def errors(self) -> list[str]:
        """What it printed on stderr besides its READY and DONE."""
        return [line for line in self.seen["stderr"] if line not in ("READY", "DONE")]
