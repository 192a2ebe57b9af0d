"""Admission at accept time: the handshake slots and the per-IP caps, from the peer's
address alone, before any byte is read.

`Admission` owns what a server counts per socket and per client IP: the handshakes in
progress (against `max_handshakes`), the sockets refused at accept, the `PerIPLimits`, and
the IP each accepted socket was counted under. The server tells it each event of a
connection's life in one call: accepted, handed to an actor (or not), handshake ended,
request read, opened, finished. A trusted proxy's sockets are not counted at accept: its
clients are, once their requests are read (`check_upgrade`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..protocol.http import Response
from .edge import PerIPLimits, TrustedProxies, handshake_share, peer_ip
from .metrics import ServerStats
from .server_options import LimitOptions

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Admission"]

log = logging.getLogger("websock_actors")


class Admission:
    """The handshake slots and per-IP caps of one server (see the module docstring)."""

    def __init__(
        self, limits: LimitOptions, trusted_proxies: TrustedProxies | None, stats: ServerStats
    ) -> None:
        self.max_handshakes = limits.handshakes
        self.handshaking = 0  # connections still in their opening handshake
        self.refused_sockets = 0  # closed at accept: handshakes in progress, a per-IP cap
        self.trusted_proxies = trusted_proxies
        self._stats = stats
        per_ip = limits.max_connections_per_ip, limits.max_handshakes_per_second_per_ip
        share = handshake_share(self.max_handshakes)
        self.per_ip = (
            PerIPLimits(*per_ip, ipv6_prefix=limits.ipv6_prefix, handshakes_in_progress=share)
            if per_ip != (None, None)
            else None
        )
        self._accepted_ip: dict[Connection, str] = {}  # checked at accept time: the peer's key

    def accept(self, address: Any) -> str | None:
        """At accept time, from the peer's address alone: None closes the socket at once
        (nothing read, no TLS), else the IP counted against the per-IP caps ("" for none:
        no cap, or a trusted proxy, whose clients are checked once their requests are read).
        Counted here, not in the actor, so that a burst of accepts sees its own sockets."""
        if self.max_handshakes is not None and self.handshaking >= self.max_handshakes:
            self.refused_sockets += 1
            self._stats.failed("overload")
            log.debug("%s: %d handshakes in progress: closed at once", address, self.max_handshakes)
            return None
        per_ip = self.per_ip
        ip = ""
        if per_ip is not None:
            ip = peer_ip(address)
            proxies = self.trusted_proxies
            if proxies is not None and ip in proxies:
                ip = ""
            else:
                ip = per_ip.key(address)  # an IPv6 client counts as its network
                refused = per_ip.accept(ip)
                if refused is not None:
                    self.refused_sockets += 1
                    self._stats.failed("per_ip")
                    log.debug("%s: %s: closed at once", address, refused)
                    return None
        self.handshaking += 1
        return ip

    def started(self, conn: Connection, accepted_ip: str) -> None:
        """The accepted socket has its actor: remember the IP it was counted under."""
        if accepted_ip:
            self._accepted_ip[conn] = accepted_ip

    def not_started(self, accepted_ip: str) -> None:
        """No actor will end this handshake: give back what `accept` counted."""
        self.handshaking -= 1
        if accepted_ip and self.per_ip is not None:
            self.per_ip.handshake_ended(accepted_ip)
            self.per_ip.released(accepted_ip)

    def handshake_ended(self, conn: Connection) -> None:
        self.handshaking -= 1
        if self._accepted_ip:
            ip = self._accepted_ip.get(conn)
            if ip is not None and self.per_ip is not None:
                self.per_ip.handshake_ended(ip)

    def check_upgrade(self, conn: Connection) -> Response | None:
        """An upgrade request read from a trusted proxy's socket: its client against the
        per-IP caps (an HTTP answer refuses it). Sockets counted at accept pass."""
        per_ip = self.per_ip
        if per_ip is not None and conn not in self._accepted_ip:  # a proxy's client
            answer = per_ip.admit(per_ip.key(conn.address))
            if answer is not None:
                log.debug("%r: refused: %s", conn, answer.body[:64])
                return answer
        return None

    def opened(self, conn: Connection) -> None:
        """The connection is admitted: it counts as open for its client."""
        if self.per_ip is not None:
            self.per_ip.opened(self.per_ip.key(conn.address))

    def finished(self, conn: Connection, was_open: bool) -> None:
        """The connection's actor has ended: out of the per-IP counts."""
        if self._accepted_ip:
            ip = self._accepted_ip.pop(conn, None)
            if ip is not None and self.per_ip is not None:
                self.per_ip.released(ip)
        if was_open and self.per_ip is not None:
            self.per_ip.closed(self.per_ip.key(conn.address))
