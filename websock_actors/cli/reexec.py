"""SIGHUP to a single-process server (no `--workers`): the new code checked in a fresh
interpreter, the clients drained with 1012, then this process executes itself anew (the same
command line) on the same listening socket.

The socket crosses the exec as an inheritable descriptor named by $WEBSOCK_ACTORS_LISTEN_FD:
it is never closed, so a client connecting meanwhile waits in its backlog for the new code
instead of being refused. The check first: a new code that does not import is reported and
the old one serves on, where an exec into it would leave nobody serving.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import NoReturn

__all__ = ["LISTEN_FD_ENV", "import_problem", "inherited_listener", "reexec"]

LISTEN_FD_ENV = "WEBSOCK_ACTORS_LISTEN_FD"

_CHECK = "import sys\nfrom websock_actors.cli.loading import load_app\nload_app(sys.argv[1])"


def inherited_listener(host: str, port: int) -> socket.socket | None:
    """The listening socket the process before the exec left us, if it is one on `port` (any
    port for 0); taken out of the environment, so that the app's own children do not see it."""
    import gevent.socket

    value = os.environ.pop(LISTEN_FD_ENV, None)
    if value is None or not value.isdigit():
        return None
    try:
        listener = gevent.socket.socket(fileno=int(value))
    except OSError:
        return None
    try:
        listening = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        bound = listener.getsockname()
    except OSError:
        listening, bound = 0, ("", -1)
    if not listening or (port != 0 and bound[1] != port):
        listener.close()
        return None
    os.set_inheritable(listener.fileno(), False)
    return listener


def import_problem(spec: str) -> str | None:
    """None when `MODULE:ATTR` imports in a fresh interpreter (the current directory and our
    own package on its path), else the end of what it printed. gevent's subprocess: the
    server serves on meanwhile, monkey-patched or not."""
    import gevent.subprocess

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
    env.pop(LISTEN_FD_ENV, None)
    done = gevent.subprocess.run(
        [sys.executable, "-c", _CHECK, spec], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-4:]) or f"exit code {done.returncode}"


def reexec(listener_fd: int) -> NoReturn:
    """Execute this command line anew, `listener_fd` (inheritable) handed over."""
    os.set_inheritable(listener_fd, True)
    os.environ[LISTEN_FD_ENV] = str(listener_fd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)
