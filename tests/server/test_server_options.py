"""Server's option groups: the defaults of the flat keywords they replace, the deprecated flat
keywords (a warning naming the group, the same effect), and the checks of bad values."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest

from examples.echo import app as echo_app
from websock_actors import ConfigurationError, Server
from websock_actors.protocol.connection import DEFAULT_MAX_FRAGMENTS
from websock_actors.protocol.deflate import DeflateOptions
from websock_actors.protocol.http import DEFAULT_MAX_HEADER_BYTES, Request, Response
from websock_actors.server import (
    EndpointOptions,
    HandshakeOptions,
    LimitOptions,
    ListenOptions,
    TimeoutOptions,
)
from websock_actors.server.server_options import FLAT_KEYWORDS, GROUPS

from ..support.raw import refuse

# Server's flat keywords and their defaults before the groups (`backplane` stays a keyword).
FLAT_DEFAULTS: dict[str, Any] = {
    "max_connections": 10_000,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "handshake_timeout": 10.0,
    "close_timeout": 10.0,
    "max_message_size": "app",
    "max_fragments": DEFAULT_MAX_FRAGMENTS,
    "max_header_bytes": DEFAULT_MAX_HEADER_BYTES,
    "max_queue_bytes": 4 * 1024 * 1024,
    "overflow": "close",
    "origins": None,
    "subprotocols": (),
    "on_request": None,
    "backlog": 1024,
    "compression": False,
    "max_handshakes": None,
    "max_connections_per_ip": None,
    "max_handshakes_per_second_per_ip": None,
    "forwarded_allow_ips": None,
    "forwarded_max_bytes": 1024,  # these three came after the groups (issue 24)
    "forwarded_max_entries": 16,
    "ipv6_prefix": 64,
    "ssl_context": None,
    "reuse_port": False,
    "listener": None,
    "health": True,
    "metrics": False,
    "metrics_port": None,
    "metrics_host": "127.0.0.1",
    "metrics_dir": None,
    "status_token": None,
    "max_body_bytes": 1024 * 1024,  # these four came with the server API (issue 25)
    "api_key": None,
    "api_rate": 1000.0,
    "api_burst": 1000,
    "client_js": True,  # the browser client (issue 26)
}


def deny(request: Request) -> Response | None:
    return None


def test_every_flat_keyword_has_a_group_with_its_old_default() -> None:
    assert set(FLAT_KEYWORDS) == {*FLAT_DEFAULTS, "process_request"}
    for name, default in FLAT_DEFAULTS.items():
        group, field = FLAT_KEYWORDS[name]
        assert getattr(GROUPS[group](), field) == default, name
    assert list(GROUPS) == ["limits", "timeouts", "handshake", "listen", "endpoints"]


def test_the_groups_are_frozen_and_slotted() -> None:
    for cls in GROUPS.values():
        assert dataclasses.is_dataclass(cls) and "__slots__" in cls.__dict__
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cls(), dataclasses.fields(cls)[0].name, None)


def test_a_server_without_options_is_configured_as_before() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        server = Server(echo_app)
    assert (server.max_connections, server.max_handshakes) == (10_000, 10_000)
    assert server.ssl_context is None and server.on_request is None and server.trusted_proxies is None
    assert server.status_page is None and server.admission.per_ip is None and server._keepalive is not None
    options = server.options
    assert (options.handshake_timeout, options.close_timeout) == (10.0, 10.0)
    assert (options.max_queue_bytes, options.overflow) == (4 * 1024 * 1024, "close")
    policy = options.handshake
    assert policy.max_message_size == echo_app.max_message_size
    assert (policy.origins, policy.subprotocols, policy.compression) == (None, (), None)
    assert policy.max_fragments == DEFAULT_MAX_FRAGMENTS
    assert policy.max_header_bytes == DEFAULT_MAX_HEADER_BYTES


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_connections", 5),
        ("max_handshakes_per_second_per_ip", 2.5),
        ("overflow", "drop"),
        ("ping_interval", None),
        ("close_timeout", 3.0),
        ("origins", ["https://a.example"]),
        ("compression", True),
        ("on_request", deny),
        ("backlog", 16),
        ("forwarded_allow_ips", ["10.0.0.0/8"]),
        ("health", False),
        ("metrics_dir", "/tmp"),
    ],
)
def test_a_flat_keyword_warns_with_its_group_and_has_the_same_effect(name: str, value: Any) -> None:
    group, field = FLAT_KEYWORDS[name]
    cls = GROUPS[group]
    home = rf"Server\({name}=\.\.\.\).*{group}={cls.__name__}\({field}="
    with pytest.warns(DeprecationWarning, match=home) as seen:
        flat = Server(echo_app, **{name: value})
    assert [w.filename for w in seen] == [__file__]  # the warning points at the caller
    grouped = Server(echo_app, **{group: cls(**{field: value})})
    for each in GROUPS:
        assert getattr(flat, each) == getattr(grouped, each)
    assert flat.options.handshake == grouped.options.handshake
    assert (flat.max_connections, flat.on_request) == (grouped.max_connections, grouped.on_request)
    assert (flat._keepalive is None) == (grouped._keepalive is None)


def test_process_request_warns_and_is_the_on_request_hook() -> None:
    with pytest.warns(DeprecationWarning, match=r"handshake=HandshakeOptions\(on_request="):
        server = Server(echo_app, process_request=deny)
    assert server.on_request is deny and server.handshake.on_request is deny
    with pytest.raises(ConfigurationError, match="same hook"):
        Server(echo_app, on_request=deny, process_request=deny)


def test_flat_keywords_apply_over_a_group_given_too() -> None:
    with pytest.warns(DeprecationWarning):
        server = Server(echo_app, limits=LimitOptions(max_connections=7), overflow="drop")
    assert server.limits == LimitOptions(max_connections=7, overflow="drop")


def test_from_keywords_takes_flat_keywords_and_groups_silently() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = TimeoutOptions(close_timeout=2.0)
        server = Server.from_keywords(echo_app, "127.0.0.1", 0, max_connections=9, health=False, timeouts=t)
    assert server.limits.max_connections == 9 and server.max_connections == 9
    assert server.timeouts == TimeoutOptions(close_timeout=2.0)
    assert server.endpoints == EndpointOptions(health=False)
    assert (server.host, server.port) == ("127.0.0.1", 0)


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="max_conections"):
        Server(echo_app, max_conections=5)
    with pytest.raises(TypeError, match="max_conections"):
        Server.from_keywords(echo_app, max_conections=5)


@pytest.mark.parametrize(
    ("group", "fields", "match"),
    [
        (LimitOptions, {"overflow": "queue"}, "overflow"),
        (LimitOptions, {"max_connections": 0}, "max_connections"),
        (LimitOptions, {"max_handshakes": 0}, "max_handshakes"),
        (LimitOptions, {"max_connections": 10, "max_handshakes": 11}, "max_handshakes"),
        (HandshakeOptions, {"compression": "yes"}, "compression"),
    ],
)
def test_bad_values_raise_configuration_error(group: type[Any], fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        group(**fields)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ConfigurationError, match=match):
            Server(echo_app, **fields)
    with pytest.raises(ConfigurationError, match=match):
        Server.from_keywords(echo_app, **fields)


def test_an_empty_status_token_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        Server(echo_app, endpoints=EndpointOptions(status_token=" "))


def test_sequences_are_kept_as_tuples() -> None:
    handshake = HandshakeOptions(origins=["https://a.example", None], subprotocols=["chat"])
    assert handshake.origins == ("https://a.example", None) and handshake.subprotocols == ("chat",)
    assert HandshakeOptions(compression=True).deflate() == DeflateOptions()
    assert ListenOptions().listener is None


def test_groups_serve_through_the_testing_helpers(serve) -> None:
    server = serve(echo_app, endpoints=EndpointOptions(health=False), limits=LimitOptions(max_connections=3))
    assert server.server.max_connections == 3
    assert refuse(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 426
