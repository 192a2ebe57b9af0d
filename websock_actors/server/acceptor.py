"""The acceptor: gevent's StreamServer taking sockets off the listener, the server's
admission asked before anything is read, and what it does when file descriptors run out.

A socket the admission refuses (too many handshakes in progress, a per-IP cap) is closed
at once: no byte read, no TLS, no greenlet. An accept that fails for want of file
descriptors (EMFILE, ENFILE) logs one line a second at most, with the remedy, and pauses
accepting briefly: the pending connections wait in the backlog instead of the accept
spinning. `check_open_files` compares `max_connections` with the open-files limit at start.
"""

from __future__ import annotations

import _socket
import errno
import logging
import time
from collections.abc import Callable
from typing import Any

from gevent.server import StreamServer
from greenlet import greenlet

__all__ = ["ACCEPT_PAUSE", "FD_HEADROOM", "Acceptor", "check_open_files"]

log = logging.getLogger("websock_actors")

ACCEPT_PAUSE = 0.1  # seconds without accepting once the file descriptors ran out
FD_HEADROOM = 64  # descriptors beyond the connections: listeners, the hub, logs, Redis, ...
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

# The peer's address -> None to refuse the socket, else a value handed to the handler.
Admission = Callable[[Any], str | None]


class Acceptor(StreamServer):
    """A StreamServer that asks `admit` about each socket, then hands it to a plain greenlet
    running `handle(sock, address, admitted)`; the connection's actor closes it."""

    loop_hub: Any = None
    admit: Admission | None = None
    _fd_failures = 0  # accepts failed for want of descriptors since the last line logged
    _next_fd_line = 0.0

    def do_read(self) -> tuple[_socket.socket, Any] | None:  # type: ignore[override]
        listener: Any = self.socket
        try:
            fd, address = listener._accept()
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno not in _OUT_OF_FDS:
                raise  # gevent's own handling: logged, accepting paused
            self._out_of_fds(exc)
            return None
        return _socket.socket(fileno=fd), address

    def do_handle(self, sock: _socket.socket, address: Any) -> None:
        """Admit or close at once; start the connection's actor in a plain greenlet (lighter
        than a gevent Greenlet)."""
        admitted = "" if self.admit is None else self.admit(address)
        if admitted is None:
            sock.close()
            return
        actor = greenlet(self.handle, parent=self.loop_hub)
        self.loop_hub.loop.run_callback(actor.switch, sock, address, admitted)

    def _out_of_fds(self, exc: OSError) -> None:
        """One line a second at most, and a pause: the listener stays readable meanwhile,
        and accepting again at once would only fail again."""
        now = time.monotonic()
        if now < self._next_fd_line:
            self._fd_failures += 1
        else:
            self._next_fd_line = now + 1.0
            more = f" ({self._fd_failures} more since the last such line)" if self._fd_failures else ""
            self._fd_failures = 0
            log.warning(
                "cannot accept connections: %s%s; raise the open-files limit (ulimit -n, now %s)"
                " or lower --max-connections",
                exc.strerror or exc,
                more,
                _soft_limit(),
            )
        self.stop_accepting()
        resume: Any = self._start_accepting_if_started  # type: ignore[attr-defined]  # gevent's
        timer: Any = self.loop.timer(ACCEPT_PAUSE)
        self._timer = timer
        timer.start(resume)


def check_open_files(max_connections: int | None) -> None:
    """Make room for `max_connections` under the open-files limit: raise the soft limit up
    to the hard one when that is enough (as much as needed), else warn once."""
    if max_connections is None:
        return
    try:
        import resource
    except ImportError:  # not a POSIX system
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_HEADROOM
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError):
            pass
        else:
            log.info("open-files limit raised from %d to %d for max_connections", soft, wanted)
            return
    log.warning(
        "max_connections %d is above what the open-files limit allows (ulimit -n %d, hard limit %s,"
        " %d kept for the server itself): raise `ulimit -n` or lower --max-connections",
        max_connections,
        soft,
        "unlimited" if hard == resource.RLIM_INFINITY else hard,
        FD_HEADROOM,
    )


def _soft_limit() -> str:
    try:
        import resource
    except ImportError:
        return "unknown"
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
