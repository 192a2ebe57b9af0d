"""What a benchmark run checks and sets before it starts: CPU pinning when there are two cores,
the tools it needs, the open-files limit, and its watchdog (--max-seconds)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from benchmarks.harness.node import missing_node
from benchmarks.harness.processes import raise_fd_limit

__all__ = ["Watchdog", "add_run_options", "arm_watchdog", "pin_cpus", "prepare_run"]


class Watchdog(Exception):
    """--max-seconds elapsed."""


def add_run_options(parser: argparse.ArgumentParser, max_seconds: int) -> None:
    """--max-seconds, --server-cpu, --client-cpu, --no-pin and --redis-server."""
    parser.add_argument("--max-seconds", type=int, default=max_seconds, help="the whole invocation's limit")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="no taskset")
    parser.add_argument("--redis-server", default="/usr/bin/redis-server")


def pin_cpus(args: argparse.Namespace) -> None:
    """No pinning (server_cpu, client_cpu None) with --no-pin, without taskset or on one CPU."""
    if args.no_pin or not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2:
        args.server_cpu = args.client_cpu = None


def arm_watchdog(seconds: int) -> None:
    """Raise Watchdog in this process's main thread after `seconds` (SIGALRM)."""

    def expired(signum: int, frame: Any) -> None:
        raise Watchdog(f"--max-seconds {seconds} elapsed")

    signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)


def prepare_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The Node-driven Redis benchmarks (redis_broadcast.py, resume_cost.py): CPU pinning, node
    and redis-server present, the open-files limit raised to the hard limit (the nodes and the
    load generator inherit it), and the --max-seconds watchdog."""
    pin_cpus(args)
    if (missing := missing_node()) is not None:
        parser.error(missing)
    if not Path(args.redis_server).exists():
        parser.error(f"no redis-server at {args.redis_server}")
    raise_fd_limit()
    arm_watchdog(args.max_seconds)
