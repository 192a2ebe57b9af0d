"""Loopback ports: a free one for a server to bind, the wait until a server accepts on one, and
what `ss` tells of the connections on one."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from typing import Any

__all__ = ["data_segments_out", "established", "free_port", "wait_for_port"]


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now (the caller's server binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    timeout: float,
    *,
    process: Any = None,
    green: bool = False,
    poll: float = 0.05,
    connect_timeout: float = 0.5,
) -> str | None:
    """Connect to 127.0.0.1:`port` until it accepts (None) or `timeout` seconds pass; a
    `process` (a Popen) that exits ends the wait early. Not None: why it is not listening.

    `green`: the caller runs gevent without monkey-patching, so the connects and sleeps must be
    gevent's, or they would block its hub."""
    if green:
        import gevent
        import gevent.socket

        connect: Any = gevent.socket.create_connection
        sleep: Any = gevent.sleep
    else:
        connect, sleep = socket.create_connection, time.sleep
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return f"the server exited with status {process.returncode}"
        try:
            connect(("127.0.0.1", port), timeout=connect_timeout).close()
            return None
        except OSError:
            sleep(poll)
    return f"nothing listens on 127.0.0.1:{port} after {timeout:g}s"


def _ss(port: int, info: bool) -> str:
    """`ss` on the established TCP sockets whose local port is `port`."""
    command = ["ss", "-Htin" if info else "-Htn", "state", "established", f"( sport = :{port} )"]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout


def established(port: int) -> int:
    """Established TCP connections whose local port is `port`: the server's side of each."""
    return sum(1 for line in _ss(port, info=False).splitlines() if line.strip())


def data_segments_out(port: int) -> int:
    """TCP data segments sent so far by the established sockets of local port `port` (`ss -ti`
    data_segs_out): with TCP_NODELAY, about one per send, so frames sent together count once."""
    return sum(int(n) for n in re.findall(r"\bdata_segs_out:(\d+)", _ss(port, info=True)))
