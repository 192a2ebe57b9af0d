"""What the server decides about a client's address before the upgrade: who the client
really is behind a trusted proxy, and the per-IP caps.

`TrustedProxies` reads `X-Forwarded-For` and `X-Forwarded-Proto` from the proxies it
trusts only, and only within a bound. `PerIPLimits` caps the open connections of one IP, its
handshakes per second (a token bucket per IP, dropped once full again) and its share of the
sockets still in their handshake. A peer is checked when its socket is accepted (`accept`:
refused, the socket is closed before any byte is read, before TLS); a client known only from
a trusted proxy's headers is checked once its request is read (`admit`: refused with HTTP
429). An IPv6 client counts as its network (`ip_key`: a /64 by default), since one
subscriber holds a whole prefix of addresses.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import time
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigurationError
from ..protocol.http import Request, Response, error_response

__all__ = [
    "DEFAULT_FORWARDED_MAX_BYTES",
    "DEFAULT_FORWARDED_MAX_ENTRIES",
    "DEFAULT_IPV6_PREFIX",
    "NOT_AN_IP",
    "TOO_LONG",
    "PerIPLimits",
    "TrustedProxies",
    "handshake_share",
    "ip_key",
    "parse_ip",
    "peer_ip",
]


# A chain of proxies is a few entries long; anything near these bounds is forged or broken.
DEFAULT_FORWARDED_MAX_BYTES = 1024
DEFAULT_FORWARDED_MAX_ENTRIES = 16
DEFAULT_IPV6_PREFIX = 64

# Why a trusted proxy's X-Forwarded-For was not used (the label of the counter).
NOT_AN_IP = "not_an_ip"
TOO_LONG = "too_long"


def handshake_share(max_handshakes: int | None) -> int | None:
    """How many of the server's handshake slots one IP may hold at once (with per-IP caps
    on): a tenth, so that one address cannot fill them while a shared address (a NAT, an
    office) still handshakes many at once; None when the slots are not capped."""
    return None if max_handshakes is None else max(1, max_handshakes // 10)


def peer_ip(address: Any) -> str:
    """The IP of a socket address ((host, port, ...) or a plain string)."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


class TrustedProxies:
    """The proxies whose forwarding headers are believed: IPs, networks ("10.0.0.0/8"),
    or "*" for any peer (as uvicorn's `--forwarded-allow-ips`).

    Only the right-most `max_entries` entries of `X-Forwarded-For` within its last
    `max_bytes` bytes are read, so that a long header costs no more than a short one. The
    client is the first entry from the right that is not a trusted proxy; when it is not an
    IP address, or when every entry read is a trusted proxy and the header goes on beyond
    the bound, the peer's own address is used and `counts` (by reason: "not_an_ip",
    "too_long") goes up by one. (What lies left of the client is whatever the client sent:
    it is never read, so a client cannot make itself count as the proxy by padding it.)"""

    def __init__(
        self,
        allowed: Iterable[str],
        max_bytes: int = DEFAULT_FORWARDED_MAX_BYTES,
        max_entries: int = DEFAULT_FORWARDED_MAX_ENTRIES,
        counts: dict[str, int] | None = None,
    ) -> None:
        self.any = False
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.counts: dict[str, int] = {} if counts is None else counts
        self._ips: set[bytes] = set()  # packed
        self._literals: set[str] = set()  # entries that are no IP: compared with the peer as given
        self._networks: list[tuple[int, int, int]] = []  # (packed length, network, netmask)
        for entry in allowed:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.any = True
            elif "/" in entry:
                try:
                    network = ipaddress.ip_network(entry, strict=False)
                except ValueError as exc:
                    raise ConfigurationError(f"forwarded_allow_ips: {exc}") from None
                size = 4 if network.version == 4 else 16
                self._networks.append((size, int(network.network_address), int(network.netmask)))
            else:
                packed = _packed(entry)
                if packed is None:
                    self._literals.add(entry)
                else:
                    self._ips.add(packed)

    def __contains__(self, host: object) -> bool:
        if self.any:
            return True
        if not isinstance(host, str):
            return False
        packed = _packed(host)
        return host in self._literals if packed is None else self._trusts(packed)

    def _trusts(self, packed: bytes) -> bool:
        if packed in self._ips:
            return True
        if self._networks:
            ip, size = int.from_bytes(packed, "big"), len(packed)
            return any(size == length and ip & mask == network for length, network, mask in self._networks)
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
            client = self._client(forwarded)
            if isinstance(client, str):
                self.counts[client] = self.counts.get(client, 0) + 1
            elif client is not None:
                address = (_text(client), 0)
        scheme = request.scheme
        if proto is not None:
            # The proxy nearest to us appended the last value.
            last = proto.rsplit(",", 1)[-1].strip().lower()
            if last in ("https", "wss"):
                scheme = "wss"
            elif last in ("http", "ws"):
                scheme = "ws"
        return address, scheme

    def _client(self, forwarded: str) -> bytes | str | None:
        """The client's packed IP in `forwarded`, None when it names none, or why the peer's
        own address is to be used instead (NOT_AN_IP, TOO_LONG)."""
        cut = len(forwarded) > self.max_bytes
        hosts = forwarded[-self.max_bytes :].split(",") if cut else forwarded.split(",")
        if cut:
            del hosts[0]  # maybe the tail of an entry: never taken for a whole one
        over = cut or len(hosts) > self.max_entries  # the bound leaves entries unread
        if self.any:  # every entry is trusted: the left-most, if the whole header was read
            if over:
                return TOO_LONG
            first = next((host for host in hosts if host.strip()), None)
            return None if first is None else _packed(first.strip()) or NOT_AN_IP
        client: bytes | None = None
        for host in hosts[: -self.max_entries - 1 : -1]:  # right to left, within the bound
            host = host.strip()
            if not host:
                continue
            client = _packed(host)
            if client is None:
                return NOT_AN_IP
            if not self._trusts(client):
                return client
        if over:  # the client lies beyond what was read
            return TOO_LONG
        return client  # every entry is a trusted proxy: the left-most


def _packed(host: str) -> bytes | None:
    """`host` as a packed IP address (4 bytes for IPv4 and IPv4-mapped IPv6, else 16), or None
    when it is none: a name, a port, a zone, anything else. "[...]" around IPv6 is allowed.
    (inet_pton: strict, and far cheaper than `ipaddress` on every handshake.)"""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        if ":" not in host:
            return socket.inet_pton(socket.AF_INET, host)
        packed = socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return None
    return packed[12:] if packed.startswith(_V4_MAPPED) else packed


_V4_MAPPED = bytes(10) + b"\xff\xff"


def _text(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def parse_ip(host: str) -> str | None:
    """`host` as an IP address in its canonical text (an IPv4-mapped IPv6 one as its IPv4),
    or None when it is not an IP address."""
    packed = _packed(host)
    return None if packed is None else _text(packed)


def ip_key(ip: str, ipv6_prefix: int) -> str:
    """What the per-IP caps count `ip` as: an IPv4 address itself, an IPv6 one its network
    of `ipv6_prefix` bits ("2001:db8:1:2::/64"), as one subscriber is given a whole /64."""
    if ":" not in ip:
        return ip
    packed = _packed(ip)
    if packed is None:
        return ip
    if len(packed) == 4 or ipv6_prefix >= 128:
        return _text(packed)
    shift = 128 - ipv6_prefix
    network = (int.from_bytes(packed, "big") >> shift << shift).to_bytes(16, "big")
    return f"{_text(network)}/{ipv6_prefix}"


class PerIPLimits:
    """Open connections per IP (`max_connections`), handshakes per second per IP
    (`max_handshakes_per_second`, with a burst of as many) and sockets of one IP in their
    handshake at once (`handshakes_in_progress`); None is no cap. The counts are by `key`: an
    IPv4 address, or an IPv6 address's network of `ipv6_prefix` bits."""

    def __init__(
        self,
        max_connections: int | None,
        max_handshakes_per_second: float | None,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
        handshakes_in_progress: int | None = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ConfigurationError("max_connections_per_ip must be at least 1")
        if max_handshakes_per_second is not None and not max_handshakes_per_second > 0:
            raise ConfigurationError("max_handshakes_per_second_per_ip must be above 0")
        self.max_connections = max_connections
        self.rate = max_handshakes_per_second
        self.ipv6_prefix = ipv6_prefix
        self.burst = float(max(1, math.ceil(max_handshakes_per_second or 1)))
        self.handshakes_in_progress = handshakes_in_progress
        self.open: dict[str, int] = {}  # IP -> admitted connections still open
        self.sockets: dict[str, int] = {}  # IP -> sockets accepted and not finished
        self.handshaking: dict[str, int] = {}  # IP -> of those, still in their handshake
        self._buckets: dict[str, list[float]] = {}  # IP -> [tokens, stamp]
        self._next_sweep = 0.0

    def key(self, address: Any) -> str:
        """What the caps count the client at socket `address` as (`ip_key`)."""
        return ip_key(peer_ip(address), self.ipv6_prefix)

    # -- at accept time: the peer's address, nothing read yet ------------------------------

    def accept(self, ip: str) -> str | None:
        """Count a socket just accepted from `ip` (and one handshake against its rate), or
        say why it is refused: the caller closes it then, and counts nothing."""
        sockets = self.sockets.get(ip, 0)
        if self.max_connections is not None and sockets >= self.max_connections:
            return "too many connections from this address"
        handshaking = self.handshaking.get(ip, 0)
        share = self.handshakes_in_progress
        if share is not None and handshaking >= share:
            return "too many handshakes in progress from this address"
        if self.rate is not None and self._take(ip) is not None:
            return "too many handshakes from this address"
        self.sockets[ip] = sockets + 1
        self.handshaking[ip] = handshaking + 1
        return None

    def handshake_ended(self, ip: str) -> None:
        """An accepted socket of `ip` ended its handshake (upgraded, refused or answered)."""
        _decrement(self.handshaking, ip)

    def released(self, ip: str) -> None:
        """An accepted socket of `ip` is closed."""
        _decrement(self.sockets, ip)

    # -- once the request is read: the client behind a trusted proxy -----------------------

    def admit(self, ip: str) -> Response | None:
        """Count one handshake of `ip`, or the 429 answer that refuses it."""
        if self.max_connections is not None and self.open.get(ip, 0) >= self.max_connections:
            return error_response(429, "too many connections from this address", [("Retry-After", "1")])
        if self.rate is not None:
            wait = self._take(ip)
            if wait is not None:
                retry = [("Retry-After", str(wait))]
                return error_response(429, "too many handshakes from this address", retry)
        return None

    def _take(self, ip: str) -> int | None:
        """Take a token from the bucket of `ip`: None, or the seconds until one is there."""
        rate = self.rate
        assert rate is not None
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
            return math.ceil((1.0 - bucket[0]) / rate)
        bucket[0] -= 1.0
        return None

    def opened(self, ip: str) -> None:
        if self.max_connections is not None:
            self.open[ip] = self.open.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        if self.max_connections is not None:
            _decrement(self.open, ip)

    def _sweep(self, now: float) -> None:
        """Drop the buckets that are full again (at most once a second)."""
        rate, burst = self.rate or 1.0, self.burst
        full = [ip for ip, (tokens, stamp) in self._buckets.items() if tokens + (now - stamp) * rate >= burst]
        for ip in full:
            del self._buckets[ip]
        self._next_sweep = now + 1.0


def _decrement(counts: dict[str, int], ip: str) -> None:
    left = counts.get(ip, 0) - 1
    if left > 0:
        counts[ip] = left
    else:
        counts.pop(ip, None)
