"""X-Forwarded-For from a trusted proxy, over real sockets (issue 24, item 3): entries that are
not IP addresses and headers beyond the bound leave the peer's own address (counted in
/metrics), and the per-IP caps count an IPv6 client as its /64."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from websock_actors import App, ConfigurationError, Context, Message
from websock_actors.server import LimitOptions, ListenOptions

from ..support.raw import split_response, upgrade_request

PROXY = "127.0.0.1"  # the tests' own sockets play the trusted proxy


class WhoAmI(Message):
    type: Literal["whoami"]


class YouAre(Message):
    type: Literal["you_are"] = "you_are"
    address: list[Any]


def echo_app() -> App:
    app = App("whoami")

    @app.handler
    def whoami(msg: WhoAmI, ctx: Context) -> YouAre:
        return YouAre(address=list(ctx.address))

    return app


def whoami(url: str, forwarded: str) -> list[Any]:
    """The address the server sees for a client whose proxy sent `forwarded`."""
    with connect(url, additional_headers={"X-Forwarded-For": forwarded}, open_timeout=5) as ws:
        ws.send('{"type": "whoami", "id": 1}')
        address: list[Any] = json.loads(ws.recv(timeout=5))["address"]
    return address


def invalid_counts(port: int) -> dict[str, float]:
    """websock_forwarded_invalid_total by reason, from GET /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "websock_forwarded_invalid_total":
                counts[sample.labels["reason"]] = sample.value
    return counts


class Upgrades:
    """Upgrade requests on raw sockets kept open, so that admitted ones go on counting."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []

    def status(self, forwarded: str) -> int:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sockets.append(sock)
        sock.sendall(upgrade_request(extra=f"X-Forwarded-For: {forwarded}\r\n"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed without an answer: {data!r}"
            data += chunk
        return split_response(data)[0]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def upgrades() -> Iterator[Any]:
    made: list[Upgrades] = []

    def make(port: int) -> Upgrades:
        made.append(Upgrades(port))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_entries_that_are_not_addresses_count_as_the_proxy_itself(serve, upgrades) -> None:
    server = serve(echo_app(), forwarded_allow_ips=[PROXY], max_connections_per_ip=5, metrics=True)
    clients = upgrades(server.port)
    statuses = [clients.status(f"not-an-ip-{n}") for n in range(20)]
    assert statuses == [101] * 5 + [429] * 15  # not 20 different clients
    assert server.open_per_ip() == {PROXY: 5}
    assert invalid_counts(server.port) == {"not_an_ip": 20.0}


@pytest.mark.parametrize(
    "forwarded",
    ["unknown", "203.0.113.7:8080", "[2001:db8::1]:443", "203.0.113.07", "fe80::1%eth0", "203.0.113.7 x"],
)
def test_a_port_a_name_or_garbage_is_not_an_address(serve, forwarded: str) -> None:
    server = serve(echo_app(), forwarded_allow_ips=[PROXY, "10.0.0.0/8"], metrics=True)
    address = whoami(server.url, f"198.51.100.1, {forwarded}, 10.1.2.3")
    assert address[0] == PROXY and address[1] != 0  # the peer's own socket address
    assert invalid_counts(server.port) == {"not_an_ip": 1.0}


def test_valid_entries_still_name_the_client(serve) -> None:
    server = serve(echo_app(), forwarded_allow_ips=[PROXY, "10.0.0.0/8"], metrics=True)
    assert whoami(server.url, "not-an-ip, 203.0.113.7, 10.1.2.3") == ["203.0.113.7", 0]  # left of it: unread
    assert whoami(server.url, "[2001:DB8::7]") == ["2001:db8::7", 0]
    assert whoami(server.url, "::ffff:203.0.113.8") == ["203.0.113.8", 0]
    assert invalid_counts(server.port) == {}


def test_twenty_addresses_of_one_ipv6_64_are_one_client(serve, upgrades) -> None:
    server = serve(echo_app(), forwarded_allow_ips=[PROXY], max_connections_per_ip=5)
    clients = upgrades(server.port)
    statuses = [clients.status(f"2001:db8:1:2:{n:x}::{n + 1:x}") for n in range(20)]
    assert statuses == [101] * 5 + [429] * 15
    assert clients.status("2001:db8:1:3::1") == 101  # the next /64 is someone else
    assert server.open_per_ip() == {"2001:db8:1:2::/64": 5, "2001:db8:1:3::/64": 1}
    ipv4 = [clients.status(f"203.0.113.{n}") for n in range(1, 7)]
    assert ipv4 == [101] * 6  # IPv4 stays per address


def test_the_ipv6_prefix_is_configurable(serve, upgrades) -> None:
    server = serve(echo_app(), forwarded_allow_ips=[PROXY], max_connections_per_ip=1, ipv6_prefix=128)
    clients = upgrades(server.port)
    assert [clients.status(f"2001:db8::{n}") for n in range(1, 4)] == [101] * 3
    assert clients.status("2001:db8::1") == 429
    assert server.open_per_ip() == {f"2001:db8::{n}": 1 for n in range(1, 4)}


def test_a_socket_peer_is_keyed_like_a_forwarded_one() -> None:
    from websock_actors.server.edge import ip_key, parse_ip

    assert ip_key("127.0.0.2", 64) == "127.0.0.2"
    assert ip_key("::ffff:127.0.0.2", 64) == "127.0.0.2"  # a dual-stack socket's IPv4 client
    assert ip_key("2001:db8:a:b:c:d:e:f", 48) == "2001:db8:a::/48"
    assert ip_key("2001:db8:a:b:c:d:e:f", 128) == "2001:db8:a:b:c:d:e:f"
    assert parse_ip("1.2.3.4:5") is None and parse_ip("[::1]") == "::1"


def trusted_chain(size: int) -> str:
    """A header of about `size` bytes of trusted proxies' addresses, with a forged client first."""
    hosts = ["198.51.100.1"]
    while len(", ".join(hosts)) < size:
        n = len(hosts)
        hosts.append(f"10.{n // 250}.{n % 250}.{n % 200 + 1}")
    return ", ".join(hosts)


@pytest.mark.parametrize("allowed", [[PROXY, "10.0.0.0/8"], ["*"]])
def test_a_header_beyond_the_bound_leaves_the_peer_and_is_counted(serve, allowed: list[str]) -> None:
    server = serve(echo_app(), forwarded_allow_ips=allowed, metrics=True)
    address = whoami(server.url, trusted_chain(13_800))
    assert address[0] == PROXY and address[1] != 0
    assert invalid_counts(server.port) == {"too_long": 1.0}


def test_padding_left_of_the_client_does_not_hide_it(serve) -> None:
    # What the client sent itself comes first; the proxy appends the address it saw.
    server = serve(echo_app(), forwarded_allow_ips=[PROXY, "10.0.0.0/8"], metrics=True)
    padded = f"{trusted_chain(12_000)}, 203.0.113.7, 10.1.2.3"
    assert whoami(server.url, padded) == ["203.0.113.7", 0]
    assert invalid_counts(server.port) == {}


def test_the_bound_on_entries_is_configurable(serve) -> None:
    allowed = [PROXY, "10.0.0.0/8"]
    server = serve(echo_app(), forwarded_allow_ips=allowed, forwarded_max_entries=2, metrics=True)
    assert whoami(server.url, "203.0.113.7, 10.0.0.1") == ["203.0.113.7", 0]
    assert whoami(server.url, "203.0.113.7, 10.0.0.1, 10.0.0.2")[0] == PROXY
    assert invalid_counts(server.port) == {"too_long": 1.0}


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        LimitOptions(ipv6_prefix=0)
    with pytest.raises(ConfigurationError):
        LimitOptions(ipv6_prefix=129)
    with pytest.raises(ConfigurationError):
        ListenOptions(forwarded_max_bytes=0)
    with pytest.raises(ConfigurationError):
        ListenOptions(forwarded_max_entries=0)
