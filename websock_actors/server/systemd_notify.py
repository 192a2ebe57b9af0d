"""Telling systemd how the service is doing (sd_notify), for a unit with `Type=notify`.

systemd passes `$NOTIFY_SOCKET`, a unix datagram socket: a path, or an abstract name written
with a leading "@". Each state is one datagram of "KEY=VALUE" lines:

    READY=1        the port listens (under --workers: every worker does); systemd starts
                   the units ordered after this one, and `systemctl start` returns
    RELOADING=1    a reload began (with MONOTONIC_USEC, as `Type=notify-reload` wants);
                   READY=1 again when it is over
    STOPPING=1     the drain began

Without `$NOTIFY_SOCKET` (not under systemd, or another `Type=`) every call does nothing. A
failure to send is logged at DEBUG and never raised: serving matters more than telling.
No dependency on libsystemd: the protocol is a single `sendto`.

The socket is the original (unpatched) class, whatever the command line monkey-patched: the
prefork master calls this too, and must not start a gevent hub before it forks.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

from gevent import monkey

__all__ = ["NOTIFY_SOCKET", "Notifier"]

NOTIFY_SOCKET = "NOTIFY_SOCKET"

log = logging.getLogger("websock_actors")

_socket_class: type[socket.socket] = monkey.get_original("socket", "socket")


class Notifier:
    """One service's messages to systemd; READY=1 is sent once per start or reload."""

    def __init__(self, address: str | None) -> None:
        self.address = _socket_address(address) if address else None
        self._ready = False  # sent since the start or the last RELOADING=1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier of `$NOTIFY_SOCKET` (of os.environ unless given)."""
        return cls((os.environ if environ is None else environ).get(NOTIFY_SOCKET))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self) -> bool:
        """READY=1, once: a second call before the next reloading() sends nothing."""
        if self._ready:
            return False
        self._ready = True
        return self.send("READY=1")

    def reloading(self) -> bool:
        """RELOADING=1; the next ready() tells systemd the reload is over."""
        self._ready = False
        return self.send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """A line `systemctl status` shows."""
        return self.send("STATUS=" + text.replace("\n", " "))

    def send(self, message: str) -> bool:
        """One datagram; whether it was sent (False too without $NOTIFY_SOCKET)."""
        if self.address is None:
            return False
        try:
            with _socket_class(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)  # systemd reads at once; never hang a shutdown on it
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            log.debug("cannot notify systemd at %r: %s", self.address, exc)
            return False
        return True


def _socket_address(value: str) -> str | None:
    """A path, or "@name" for the abstract namespace (a leading NUL byte to the kernel).
    Other forms (systemd's vsock: addresses, a relative path) are not ours to reach."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("$%s=%r is neither a path nor an @abstract name: not notifying systemd", NOTIFY_SOCKET, value)
    return None
