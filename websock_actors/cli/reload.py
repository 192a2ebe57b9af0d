"""`--reload`, for development: a supervisor watches the application's source tree (with
watchfiles, the `reload` extra) and restarts the server on each change to a `.py` file.

The supervisor is a plain process (no gevent, no app): it runs the server as its child, the
same command line with $WEBSOCK_ACTORS_RELOAD_CHILD set, and on a change prints which files
changed and sends the child SIGHUP. A single-process server answers SIGHUP by checking that
the new code imports, draining with 1012 and executing itself anew on the same listening
socket (serve.py, reexec.py): no connection is refused meanwhile, and clients that resume come
back by themselves. A child that has exited (its code did not start) is started anew on the
next change. SIGTERM and SIGINT stop the child, then the supervisor.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from typing import Any

__all__ = ["RELOAD_ENV", "reloaded", "source_root", "supervise"]

RELOAD_ENV = "WEBSOCK_ACTORS_RELOAD_CHILD"


def reloaded() -> bool:
    """This process is the server run by a `--reload` supervisor."""
    return os.environ.get(RELOAD_ENV) == "1"


def source_root(spec: str) -> str:
    """The directory of the application's top-level package (or module): what is watched."""
    top = spec.partition(":")[0].split(".")[0]
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as load_app does
    try:
        found = importlib.util.find_spec(top) if top else None
    except (ImportError, ValueError):
        found = None
    if found is not None and found.submodule_search_locations:
        return os.path.abspath(next(iter(found.submodule_search_locations)))
    if found is not None and found.origin is not None and os.path.isfile(found.origin):
        return os.path.dirname(os.path.abspath(found.origin))
    return os.getcwd()


def supervise(args: argparse.Namespace) -> int:
    """Run the server as a child, restarted on each change to a `.py` file; its exit code."""
    from ..scale.workers import say

    try:
        from watchfiles import PythonFilter, watch
    except ImportError:
        say("error: --reload needs watchfiles: pip install 'websock-actors[reload]'", sys.stderr)
        return 2
    root = source_root(args.app)
    command = list(sys.orig_argv)  # the same interpreter, its options and ours
    env = {**os.environ, RELOAD_ENV: "1"}
    stop = threading.Event()
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: Any) -> None:
        if signum != signal.SIGHUP:
            stop.set()
        if child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    reported = announced = False
    changes_seen = watch(
        root, watch_filter=PythonFilter(), stop_event=stop, yield_on_timeout=True, rust_timeout=500,
        raise_interrupt=False, debounce=400, step=50,
    )  # fmt: skip
    for changes in changes_seen:
        if not announced:  # on the first yield: the watcher is in place by then
            announced = True
            say(f"websock-actors: --reload: watching {root} for changes to .py files")
        if child.poll() is not None and not reported and not stop.is_set():
            reported = True
            code = child.returncode
            say(f"websock-actors: --reload: the server exited (code {code}); waiting for a change")
        if not changes:
            continue
        changed = sorted({os.path.relpath(path, root) for _, path in changes})
        say(f"websock-actors: --reload: {', '.join(changed)} changed: restarting")
        if child.poll() is None:
            child.send_signal(signal.SIGHUP)  # the server drains, checks and re-executes itself
        else:
            reported = False
            child = subprocess.Popen(command, env=env)
    try:
        return child.wait(timeout=args.shutdown_timeout + 15)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()
