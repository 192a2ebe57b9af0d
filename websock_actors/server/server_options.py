"""The option groups a `Server` is configured with, and the flat keywords they replace.

    LimitOptions      what one server admits and buffers (connections, sizes, per-IP caps)
    TimeoutOptions    keepalive pings and the handshake and close deadlines
    HandshakeOptions  what the opening handshake accepts (origins, subprotocols, deflate, hook)
    ListenOptions     the listening socket (bind, backlog, SO_REUSEPORT, TLS, trusted proxies)
    EndpointOptions   the server's own HTTP endpoints (health, metrics, the status page, ...)

Each group is checked when it is made: a bad value raises ConfigurationError at once.
`group_flat_keywords` maps the flat keywords (`max_connections=...`) onto the groups, for
`Server.from_keywords` and for the deprecated flat keywords of `Server` itself.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigurationError
from ..protocol.connection import DEFAULT_MAX_FRAGMENTS
from ..protocol.deflate import DeflateOptions
from ..protocol.handshake import HandshakePolicy
from ..protocol.http import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES, Request, Response
from .app import threads_are_greenlets
from .edge import DEFAULT_FORWARDED_MAX_BYTES, DEFAULT_FORWARDED_MAX_ENTRIES, DEFAULT_IPV6_PREFIX
from .options import ConnectionOptions, OverflowPolicy

__all__ = [
    "FLAT_KEYWORDS",
    "GROUPS",
    "EndpointOptions",
    "HandshakeOptions",
    "LimitOptions",
    "ListenOptions",
    "TimeoutOptions",
    "connection_options",
    "group_flat_keywords",
]

RequestHook = Callable[[Request], Response | None]


@dataclass(frozen=True, slots=True)
class LimitOptions:
    """What one server admits and buffers.

    Args:
        max_connections: open connections at most (None: no cap); beyond it 503.
        max_handshakes: sockets still in the opening handshake (None: as many as
            `max_connections`); beyond it a new socket is closed at once, so that silent
            sockets cannot exhaust file descriptors.
        max_connections_per_ip: connections of one client IP (None: no cap).
        max_handshakes_per_second_per_ip: handshakes a second of one client IP (None: no
            cap). With either, one IP also holds a tenth of the `max_handshakes` slots at
            most. The peer's IP is checked when its socket is accepted (beyond a cap, the
            socket is closed before a byte is read); a trusted proxy's client once its
            request is read (beyond a cap, 429 with `Retry-After`).
        ipv6_prefix: the per-IP caps count an IPv6 client as its network of this many bits
            (one subscriber is given a whole /64); an IPv4 client as its address.
        max_message_size: bytes of one message; "app" takes the application's own limit,
            None is no limit.
        max_fragments: frames of one fragmented message (None: no limit).
        max_header_bytes: bytes of the opening request's head.
        max_body_bytes: bytes of a plain HTTP request's body (Content-Length only; chunked
            is refused with 411, a longer one with 413): the server API's JSON.
        max_queue_bytes: bytes an outgoing mailbox holds before `overflow` applies.
        overflow: a full mailbox "close"s its peer (1013) or "drop"s the message.
    """

    max_connections: int | None = 10_000
    max_handshakes: int | None = None
    max_connections_per_ip: int | None = None
    max_handshakes_per_second_per_ip: float | None = None
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    max_message_size: int | Literal["app"] | None = "app"
    max_fragments: int | None = DEFAULT_MAX_FRAGMENTS
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_queue_bytes: int = 4 * 1024 * 1024
    overflow: OverflowPolicy = "close"

    def __post_init__(self) -> None:
        if self.overflow not in ("close", "drop"):
            raise ConfigurationError(f"overflow must be 'close' or 'drop', not {self.overflow!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        if not 1 <= self.ipv6_prefix <= 128:
            raise ConfigurationError("ipv6_prefix must be from 1 to 128")
        handshakes = self.max_handshakes
        if handshakes is not None and (
            handshakes < 1 or (self.max_connections is not None and handshakes > self.max_connections)
        ):
            raise ConfigurationError("max_handshakes must be from 1 to max_connections")

    @property
    def handshakes(self) -> int | None:
        """The cap on handshakes in progress, `max_connections` when none is given."""
        return self.max_connections if self.max_handshakes is None else self.max_handshakes


@dataclass(frozen=True, slots=True)
class TimeoutOptions:
    """Keepalive and deadlines, in seconds.

    Args:
        ping_interval: a ping to a connection quiet this long (None: no keepalive).
        ping_timeout: close with 1011 when the pong is this late (None: never).
        handshake_timeout: the opening handshake (TLS's too) must end within it.
        close_timeout: how long the closing handshake may take.
    """

    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    handshake_timeout: float = 10.0
    close_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class HandshakeOptions:
    """What the opening handshake accepts.

    Args:
        origins: the allowed `Origin` values (None in it: requests without one); others
            get 403. None: any origin.
        subprotocols: the subprotocols offered, in order of preference.
        compression: permessage-deflate: True for the defaults, or a `DeflateOptions`.
        on_request: runs before the upgrade, after the application's own hook: return a
            `Response` to refuse (authentication) or to answer plain HTTP.
    """

    origins: Sequence[str | None] | None = None
    subprotocols: Sequence[str] = ()
    compression: bool | DeflateOptions = False
    on_request: RequestHook | None = None

    def __post_init__(self) -> None:
        if self.origins is not None:
            object.__setattr__(self, "origins", tuple(self.origins))
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        self.deflate()  # checks `compression` now rather than at the first connection

    def deflate(self) -> DeflateOptions | None:
        """The permessage-deflate options, or None without compression."""
        compression = self.compression
        if isinstance(compression, DeflateOptions):
            return compression
        if compression is True or compression is False:
            return DeflateOptions() if compression else None
        raise ConfigurationError(f"compression must be a bool or DeflateOptions, not {compression!r}")


@dataclass(frozen=True, slots=True)
class ListenOptions:
    """The listening socket.

    Args:
        backlog: the listen queue's length.
        reuse_port: set SO_REUSEPORT before the bind, so that several processes
            (`--workers`) listen on one port and the kernel spreads connections over them.
        listener: a socket already bound and listening, served instead of binding one
            (host, port and backlog then come from it; `stop` closes it): where
            SO_REUSEPORT is missing, workers share the socket their master bound.
        ssl_context: serve wss:// and https:// (built once, e.g. by `tls_context`); the
            TLS handshake runs in each connection's actor, within `handshake_timeout`.
        forwarded_allow_ips: the proxies (IPs, networks, or "*") whose `X-Forwarded-For`
            and `X-Forwarded-Proto` give the client's address and scheme; from any other
            peer those headers are ignored.
        forwarded_max_bytes, forwarded_max_entries: how much of `X-Forwarded-For` is read,
            from the right; a client beyond it, or an entry that is not an IP address,
            leaves the peer's own address in place (counted in /metrics).
    """

    backlog: int = 1024
    reuse_port: bool = False
    listener: socket.socket | None = None
    ssl_context: ssl.SSLContext | None = None
    forwarded_allow_ips: Sequence[str] | None = None
    forwarded_max_bytes: int = DEFAULT_FORWARDED_MAX_BYTES
    forwarded_max_entries: int = DEFAULT_FORWARDED_MAX_ENTRIES

    def __post_init__(self) -> None:
        if self.forwarded_max_bytes < 1 or self.forwarded_max_entries < 1:
            raise ConfigurationError("forwarded_max_bytes and forwarded_max_entries must be at least 1")


@dataclass(frozen=True, slots=True)
class EndpointOptions:
    """The server's own HTTP endpoints, answered before the application (endpoints.py).

    Args:
        health: answer GET /healthz and /readyz (health.py).
        metrics: answer GET /metrics (Prometheus, metrics.py) on the WebSocket's port.
        metrics_port: serve the metrics on a port of their own instead (plain HTTP, any
            path; with `reuse_port` too).
        metrics_host: the address `metrics_port` binds: the loopback by default, whatever
            the WebSocket's host, because the figures are for the operator, not the
            clients; give "0.0.0.0" (or an internal address) for a scraper on another host.
        metrics_dir: where the workers' snapshots meet (set by the `--workers` master), so
            that any worker answers with the sum.
        status_token: serve the live status page at GET /_status (status_page.py) to
            whoever gives this token, its WebSocket at /_status/ws. None: off, and
            /_status is the application's like any path.
        api_key: turn on the server API under /_api/ (a typed App's broadcast,
            send_to_user, disconnect_user and presence, typed/api.py) for requests with
            `Authorization: Bearer <api_key>`. None: off, and /_api/ answers 404.
        api_rate: requests per second the API accepts (a token bucket), beyond which 429.
        api_burst: requests the API accepts at once before `api_rate` applies.
        client_js: serve the browser client library at GET /_wsa/client.js (client_js.py).
            False: off, and /_wsa/client.js answers 404 (/_wsa/ stays reserved).
    """

    health: bool = True
    metrics: bool = False
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_dir: str | None = None
    status_token: str | None = None
    api_key: str | None = dataclasses.field(default=None, repr=False)
    api_rate: float = 1000.0
    api_burst: int = 1000
    client_js: bool = True

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigurationError("api_key may not be empty")
        if self.api_rate <= 0 or self.api_burst < 1:
            raise ConfigurationError("api_rate must be above 0 and api_burst at least 1")


# the Server argument of each group -> its class
GROUPS: dict[str, type[Any]] = {
    "limits": LimitOptions,
    "timeouts": TimeoutOptions,
    "handshake": HandshakeOptions,
    "listen": ListenOptions,
    "endpoints": EndpointOptions,
}

# flat keyword -> (the Server argument of its group, the field in that group)
FLAT_KEYWORDS: dict[str, tuple[str, str]] = {
    field.name: (group, field.name) for group, cls in GROUPS.items() for field in dataclasses.fields(cls)
}
FLAT_KEYWORDS["process_request"] = ("handshake", "on_request")  # the same hook under a second name


def group_flat_keywords(
    flat: Mapping[str, Any], groups: Mapping[str, Any], *, warn: bool = False
) -> dict[str, Any]:
    """The option groups with `flat` keywords applied over `groups` (a group missing from it
    starts from its defaults). An unknown keyword raises TypeError, as a bad keyword would.
    `warn`: a DeprecationWarning per flat keyword, naming its group, for `Server`'s caller."""
    if flat.get("process_request") is not None:
        if flat.get("on_request") is not None:
            raise ConfigurationError("on_request and process_request name the same hook: give one")
        flat = {name: value for name, value in flat.items() if name != "on_request"}
    changes: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        try:
            group, field = FLAT_KEYWORDS[name]
        except KeyError:
            raise TypeError(f"Server() got an unexpected keyword argument {name!r}") from None
        changes.setdefault(group, {})[field] = value
        if warn:
            home = f"{group}={GROUPS[group].__name__}({field}=...)"
            warnings.warn(f"Server({name}=...) is deprecated: give Server({home})", DeprecationWarning, 3)
    result = dict(groups)
    for group, fields in changes.items():
        base = groups.get(group)
        result[group] = GROUPS[group](**fields) if base is None else dataclasses.replace(base, **fields)
    return result


def connection_options(
    limits: LimitOptions, timeouts: TimeoutOptions, handshake: HandshakeOptions, app_message_size: int | None
) -> ConnectionOptions:
    """What every connection of a server is given; `app_message_size` is the application's
    own limit, taken where `limits.max_message_size` is "app"."""
    size = limits.max_message_size
    return ConnectionOptions(
        handshake=HandshakePolicy(
            max_header_bytes=limits.max_header_bytes,
            max_body_bytes=limits.max_body_bytes,
            origins=None if handshake.origins is None else tuple(handshake.origins),
            subprotocols=tuple(handshake.subprotocols),
            compression=handshake.deflate(),
            max_message_size=app_message_size if size == "app" else size,
            max_fragments=limits.max_fragments,
        ),
        handshake_timeout=timeouts.handshake_timeout,
        close_timeout=timeouts.close_timeout,
        max_queue_bytes=limits.max_queue_bytes,
        overflow=limits.overflow,
        dormant_when_idle=not threads_are_greenlets(),
    )
