"""What the server decides about a client's address before the upgrade: who the client
really is behind a trusted proxy, and the per-IP caps.

`TrustedProxies` reads `X-Forwarded-For` and `X-Forwarded-Proto` from the proxies it
trusts only. `PerIPLimits` caps the open connections of one IP and its handshakes per
second (a token bucket per IP, dropped once full again); both refuse with HTTP 429.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigurationError
from ..protocol.http import Request, Response, error_response

__all__ = ["PerIPLimits", "TrustedProxies", "peer_ip"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def peer_ip(address: Any) -> str:
    """The IP of a socket address ((host, port, ...) or a plain string)."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


class TrustedProxies:
    """The proxies whose forwarding headers are believed: IPs, networks ("10.0.0.0/8"),
    or "*" for any peer (as uvicorn's `--forwarded-allow-ips`)."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.any = False
        self._literals: set[str] = set()
        self._networks: list[_Network] = []
        for entry in allowed:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.any = True
            elif "/" in entry:
                try:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError as exc:
                    raise ConfigurationError(f"forwarded_allow_ips: {exc}") from None
            else:
                self._literals.add(_normal(entry))

    def __contains__(self, host: object) -> bool:
        if self.any:
            return True
        if not isinstance(host, str):
            return False
        host = _normal(host)
        if host in self._literals:
            return True
        if self._networks:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return False
            return any(ip in network for network in self._networks)
        return False

    def resolve(self, request: Request, peer: Any) -> tuple[Any, str] | None:
        """The client's (address, scheme) from a trusted proxy's headers, or None when `peer`
        is not trusted or sent none. The address is the right-most X-Forwarded-For entry
        that is not a trusted proxy itself (the left-most when all are), with port 0."""
        if peer_ip(peer) not in self:
            return None
        forwarded = request.headers.get("X-Forwarded-For")
        proto = request.headers.get("X-Forwarded-Proto")
        if forwarded is None and proto is None:
            return None
        address = peer
        if forwarded is not None:
            hosts = [host.strip() for host in forwarded.split(",") if host.strip()]
            if hosts:
                client = hosts[0]
                if not self.any:
                    for host in reversed(hosts):
                        if host not in self:
                            client = host
                            break
                address = (client[:64], 0)
        scheme = request.scheme
        if proto is not None:
            # The proxy nearest to us appended the last value.
            last = proto.rsplit(",", 1)[-1].strip().lower()
            if last in ("https", "wss"):
                scheme = "wss"
            elif last in ("http", "ws"):
                scheme = "ws"
        return address, scheme


def _normal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host


class PerIPLimits:
    """Open connections per IP (`max_connections`) and handshakes per second per IP
    (`max_handshakes_per_second`, with a burst of as many); None is no cap."""

    def __init__(self, max_connections: int | None, max_handshakes_per_second: float | None) -> None:
        if max_connections is not None and max_connections < 1:
            raise ConfigurationError("max_connections_per_ip must be at least 1")
        if max_handshakes_per_second is not None and not max_handshakes_per_second > 0:
            raise ConfigurationError("max_handshakes_per_second_per_ip must be above 0")
        self.max_connections = max_connections
        self.rate = max_handshakes_per_second
        self.burst = float(max(1, math.ceil(max_handshakes_per_second or 1)))
        self.open: dict[str, int] = {}  # IP -> admitted connections still open
        self._buckets: dict[str, list[float]] = {}  # IP -> [tokens, stamp]
        self._next_sweep = 0.0

    def admit(self, ip: str) -> Response | None:
        """Count one handshake of `ip`, or the 429 answer that refuses it."""
        if self.max_connections is not None and self.open.get(ip, 0) >= self.max_connections:
            return error_response(429, "too many connections from this address", [("Retry-After", "1")])
        rate = self.rate
        if rate is not None:
            now = time.monotonic()
            if now >= self._next_sweep:
                self._sweep(now)
            bucket = self._buckets.get(ip)
            if bucket is None:
                bucket = self._buckets[ip] = [self.burst, now]
            else:
                bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * rate)
                bucket[1] = now
            if bucket[0] < 1.0:
                wait = math.ceil((1.0 - bucket[0]) / rate)
                retry = [("Retry-After", str(wait))]
                return error_response(429, "too many handshakes from this address", retry)
            bucket[0] -= 1.0
        return None

    def opened(self, ip: str) -> None:
        if self.max_connections is not None:
            self.open[ip] = self.open.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        if self.max_connections is not None:
            left = self.open.get(ip, 0) - 1
            if left > 0:
                self.open[ip] = left
            else:
                self.open.pop(ip, None)

    def _sweep(self, now: float) -> None:
        """Drop the buckets that are full again (at most once a second)."""
        rate, burst = self.rate or 1.0, self.burst
        full = [ip for ip, (tokens, stamp) in self._buckets.items() if tokens + (now - stamp) * rate >= burst]
        for ip in full:
            del self._buckets[ip]
        self._next_sweep = now + 1.0
