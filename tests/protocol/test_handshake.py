"""The opening handshake: server-side parsing, validation and answers; client side too."""

from __future__ import annotations

import base64

import pytest

from websock_actors.errors import HandshakeError, LocalHandshakeRefusal, RemoteHandshakeRefusal
from websock_actors.protocol import (
    DEFAULT_MAX_HEADER_BYTES,
    Headers,
    Request,
    Response,
    accept_key,
    build_request,
    build_response,
    error_response,
    generate_key,
    parse_request,
    parse_response,
    render_response,
    validate_request,
    validate_response,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

BASE_HEADERS = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def request_bytes(
    headers: list[tuple[str, str]] | None = None,
    *,
    request_line: str = "GET /chat HTTP/1.1",
    replace: dict[str, str | None] | None = None,
    extra: list[str] = (),  # type: ignore[assignment]
) -> bytes:
    """A request head; `replace` swaps (or with None drops) base headers by name."""
    items = list(BASE_HEADERS if headers is None else headers)
    if replace:
        items = [(k, replace.get(k, v)) for k, v in items if replace.get(k, v) is not None]  # type: ignore[misc]
    lines = [request_line, *(f"{k}: {v}" for k, v in items), *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parsed(data: bytes, **options: int) -> Request:
    result = parse_request(data, **options)
    assert result is not None
    request, rest = result
    assert rest == b""
    return request


def refusal(data: bytes) -> LocalHandshakeRefusal:
    with pytest.raises(LocalHandshakeRefusal) as info:
        result = parse_request(data)
        assert result is not None
        validate_request(result[0])
    return info.value


# -- parse_request -----------------------------------------------------------------------


def test_accept_key_rfc_example() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


@pytest.mark.parametrize("cut", [0, 1, 10, 20, -4, -3, -2, -1])
def test_parse_request_incomplete_returns_none(cut: int) -> None:
    data = request_bytes()
    assert parse_request(data[:cut]) is None


def test_parse_request_returns_bytes_after_the_head() -> None:
    data = request_bytes()
    result = parse_request(data + b"\x81\x85rest")
    assert result is not None
    request, rest = result
    assert rest == b"\x81\x85rest"
    assert (request.method, request.path, request.version) == ("GET", "/chat", "HTTP/1.1")
    assert request.headers.get("host") == "server.example.com"
    assert len(request.headers) == len(BASE_HEADERS)


def test_valid_request_gives_key_and_accepting_response() -> None:
    key = validate_request(parsed(request_bytes()))
    assert key == RFC_KEY
    response = build_response(key)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert response.endswith(b"\r\n\r\n")
    lines = response[:-4].split(b"\r\n")[1:]
    assert b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() in lines
    assert b"Upgrade: websocket" in lines
    assert b"Connection: Upgrade" in lines
    # The client side accepts it.
    result = parse_response(response)
    assert result is not None
    assert validate_response(result[0], key) is None


def test_build_response_optional_headers() -> None:
    response = build_response(
        RFC_KEY, subprotocol="chat", extensions="permessage-deflate", extra_headers=[("X-A", "1")]
    )
    result = parse_response(response)
    assert result is not None
    headers = result[0].headers
    assert headers.get("Sec-WebSocket-Protocol") == "chat"
    assert headers.get("Sec-WebSocket-Extensions") == "permessage-deflate"
    assert headers.get("x-a") == "1"
    assert "Sec-WebSocket-Protocol" not in parse_response(build_response(RFC_KEY))[0].headers  # type: ignore[index]


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        ("websocket", "Upgrade"),
        ("WebSocket", "upgrade"),
        ("WEBSOCKET", "UPGRADE"),
        ("websocket", "keep-alive, Upgrade"),
        ("websocket", "Upgrade, keep-alive"),
        ("websocket", "keep-alive,upgrade"),
        ("h2c, websocket", "  Upgrade  "),
    ],
)
def test_upgrade_and_connection_are_case_insensitive_token_lists(upgrade: str, connection: str) -> None:
    data = request_bytes(replace={"Upgrade": upgrade, "Connection": connection})
    assert validate_request(parsed(data)) == RFC_KEY


def test_header_names_are_case_insensitive() -> None:
    headers = [(k.lower(), v) for k, v in BASE_HEADERS]
    assert validate_request(parsed(request_bytes(headers))) == RFC_KEY


def test_connection_tokens_across_repeated_headers() -> None:
    data = request_bytes(replace={"Connection": "keep-alive"}, extra=["Connection: Upgrade"])
    assert validate_request(parsed(data)) == RFC_KEY


def test_header_values_are_stripped() -> None:
    data = request_bytes(replace={"Sec-WebSocket-Key": f"\t{RFC_KEY}  "})
    assert validate_request(parsed(data)) == RFC_KEY


# -- refusals ------------------------------------------------------------------------------

KEY_8 = base64.b64encode(b"12345678").decode()
KEY_17 = base64.b64encode(b"0123456789abcdefg").decode()

REFUSALS = [
    pytest.param(request_bytes(request_line="POST /chat HTTP/1.1"), 405, id="post"),
    pytest.param(request_bytes(request_line="get /chat HTTP/1.1"), 405, id="lowercase-get"),
    pytest.param(request_bytes(request_line="GET /chat HTTP/1.0"), 400, id="http-1.0"),
    pytest.param(request_bytes(replace={"Host": None}), 400, id="no-host"),
    pytest.param(request_bytes(extra=["Host: other"]), 400, id="two-hosts"),
    pytest.param(request_bytes(replace={"Upgrade": None}), 426, id="no-upgrade"),
    pytest.param(request_bytes(replace={"Upgrade": "h2c"}), 426, id="upgrade-h2c"),
    pytest.param(request_bytes(replace={"Connection": None}), 400, id="no-connection"),
    pytest.param(request_bytes(replace={"Connection": "keep-alive"}), 400, id="connection-keep-alive"),
    pytest.param(request_bytes(replace={"Connection": "upgraded"}), 400, id="connection-not-a-token"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Version": "8"}), 426, id="version-8"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Version": None}), 426, id="no-version"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Key": None}), 400, id="no-key"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Key": ""}), 400, id="empty-key"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Key": KEY_8}), 400, id="short-key"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Key": KEY_17}), 400, id="long-key"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Key": "not base64 at all!!!!!=="}), 400, id="bad-key"),
    pytest.param(request_bytes(replace={"Sec-WebSocket-Key": RFC_KEY[:-2]}), 400, id="unpadded-key"),
    pytest.param(request_bytes(extra=[f"Sec-WebSocket-Key: {RFC_KEY}"]), 400, id="two-keys"),
    pytest.param(request_bytes(extra=["NoColonHere"]), 400, id="header-without-colon"),
    pytest.param(request_bytes(extra=["Bad Name: x"]), 400, id="space-in-name"),
    pytest.param(request_bytes(extra=["Name : x"]), 400, id="space-before-colon"),
    pytest.param(request_bytes(extra=[" folded: x"]), 400, id="obs-fold"),
    pytest.param(request_bytes(extra=[": empty-name"]), 400, id="empty-name"),
    pytest.param(request_bytes(extra=["X-Name: caf\xe9"]), 400, id="non-ascii-value"),
    pytest.param(request_bytes(request_line="GET /chat"), 400, id="short-request-line"),
    pytest.param(request_bytes(request_line="GET /a b HTTP/1.1"), 400, id="long-request-line"),
    pytest.param(request_bytes(request_line="GET /caf\xe9 HTTP/1.1"), 400, id="non-ascii-path"),
    pytest.param(request_bytes(request_line="GET /chat HTTP/2.0"), 505, id="http-2"),
    pytest.param(b"\r\n\r\n", 400, id="empty-head"),
]


@pytest.mark.parametrize(("data", "status"), REFUSALS)
def test_refusals(data: bytes, status: int) -> None:
    assert refusal(data).status == status


def test_non_get_refusal_names_allowed_method() -> None:
    exc = refusal(request_bytes(request_line="PUT /chat HTTP/1.1"))
    assert exc.status == 405
    assert ("Allow", "GET") in exc.headers


def test_missing_upgrade_refusal_carries_upgrade_headers() -> None:
    exc = refusal(request_bytes(replace={"Upgrade": None}))
    assert exc.status == 426
    assert ("Upgrade", "websocket") in exc.headers


@pytest.mark.parametrize("version", ["8", "7", "14", "13, 8", None])
def test_wrong_version_answers_426_with_supported_version(version: str | None) -> None:
    exc = refusal(request_bytes(replace={"Sec-WebSocket-Version": version}))
    assert exc.status == 426
    assert ("Sec-WebSocket-Version", "13") in exc.headers
    answer = render_response(error_response(exc.status, exc.reason, exc.headers))
    assert answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer


# -- header size limit -----------------------------------------------------------------------


def padded_request(total: int) -> bytes:
    """A valid request head of exactly `total` bytes (terminator included)."""
    base = request_bytes(extra=["X-Pad: "])
    pad = total - len(base)
    assert pad >= 0
    data = request_bytes(extra=["X-Pad: " + "a" * pad])
    assert len(data) == total
    return data


def test_default_header_limit_is_16_kib() -> None:
    assert DEFAULT_MAX_HEADER_BYTES == 16 * 1024


def test_headers_at_default_limit_accepted_and_over_it_431() -> None:
    assert validate_request(parsed(padded_request(DEFAULT_MAX_HEADER_BYTES))) == RFC_KEY
    with pytest.raises(HandshakeError) as info:
        parse_request(padded_request(DEFAULT_MAX_HEADER_BYTES + 1))
    assert info.value.status == 431


def test_incomplete_head_over_default_limit_431() -> None:
    data = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * DEFAULT_MAX_HEADER_BYTES
    with pytest.raises(HandshakeError) as info:
        parse_request(data)
    assert info.value.status == 431


@pytest.mark.parametrize("limit", [300, 1024])
def test_custom_header_limit(limit: int) -> None:
    assert validate_request(parsed(padded_request(limit), max_header_bytes=limit)) == RFC_KEY
    with pytest.raises(HandshakeError) as info:
        parse_request(padded_request(limit + 1), max_header_bytes=limit)
    assert info.value.status == 431
    # Incomplete, but already over the limit: refused without waiting for the rest.
    with pytest.raises(HandshakeError) as info:
        parse_request(padded_request(limit + 10)[:-4], max_header_bytes=limit)
    assert info.value.status == 431
    # Incomplete and under the limit: wait.
    assert parse_request(padded_request(limit)[:-4], max_header_bytes=limit) is None


def test_too_many_header_lines_431() -> None:
    data = request_bytes(extra=[f"X-{i}: v" for i in range(200)])
    assert len(data) < DEFAULT_MAX_HEADER_BYTES
    with pytest.raises(HandshakeError) as info:
        parse_request(data)
    assert info.value.status == 431


# -- error answers -----------------------------------------------------------------------------


def test_error_response_and_render() -> None:
    response = error_response(400, "bad key", [("X-Why", "key")])
    assert (response.status, response.reason, response.body) == (400, "Bad Request", b"bad key\n")
    data = render_response(response)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request"
    assert b"X-Why: key" in lines
    assert b"Content-Length: 8" in lines
    assert b"Connection: close" in lines
    assert body == b"bad key\n"


def test_render_response_replaces_length_and_connection_headers() -> None:
    response = Response(
        404, "Not Found", Headers([("Content-Length", "999"), ("connection", "keep-alive")]), b"x"
    )
    head = render_response(response).split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head.count(b"Content-Length: 1") == 1
    assert b"Content-Length: 999" not in head
    assert b"connection: keep-alive" not in head


def test_error_response_unknown_status_and_empty_detail() -> None:
    assert error_response(599).reason == "Error"
    assert error_response(431).body == b"Request Header Fields Too Large\n"


# -- Headers ---------------------------------------------------------------------------------


def test_headers_lookup() -> None:
    headers = Headers([("A", "1"), ("b", "2"), ("a", "3")])
    assert headers.get("a") == "1, 3"
    assert headers.get_all("A") == ["1", "3"]
    assert headers.get("missing") is None
    assert headers.get("missing", "d") == "d"
    assert "B" in headers
    assert "c" not in headers
    assert 1 not in headers
    assert list(headers) == [("A", "1"), ("b", "2"), ("a", "3")]


# -- client side -------------------------------------------------------------------------------


def test_generate_key_is_16_random_bytes() -> None:
    keys = {generate_key() for _ in range(4)}
    assert len(keys) == 4
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


def test_build_request_literal() -> None:
    data = build_request("example.com:8080", "/chat?x=1", RFC_KEY)
    assert data == (
        b"GET /chat?x=1 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )


def test_build_request_is_accepted_by_the_server_side() -> None:
    key = generate_key()
    data = build_request(
        "h", "", key, subprotocols=["chat", "superchat"], origin="http://o", extra_headers=[("X-A", "b")]
    )
    request = parsed(data)
    assert request.path == "/"
    assert validate_request(request) == key
    assert request.headers.get("Sec-WebSocket-Protocol") == "chat, superchat"
    assert request.headers.get("Origin") == "http://o"
    assert request.headers.get("X-A") == "b"
    assert "Sec-WebSocket-Extensions" not in request.headers


def response_bytes(status_line: str = "HTTP/1.1 101 Switching Protocols", headers: list[str] = ()) -> bytes:  # type: ignore[assignment]
    return ("\r\n".join([status_line, *headers]) + "\r\n\r\n").encode("latin-1")


GOOD_RESPONSE_HEADERS = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {RFC_ACCEPT}"]


def test_parse_response_incomplete_and_rest() -> None:
    data = response_bytes(headers=GOOD_RESPONSE_HEADERS)
    assert parse_response(data[:-1]) is None
    assert parse_response(b"") is None
    result = parse_response(data + b"\x81\x00")
    assert result is not None
    response, rest = result
    assert rest == b"\x81\x00"
    assert (response.status, response.reason) == (101, "Switching Protocols")


def test_parse_response_without_reason() -> None:
    result = parse_response(b"HTTP/1.1 101\r\nUpgrade: websocket\r\n\r\n")
    assert result is not None
    assert (result[0].status, result[0].reason) == (101, "")


@pytest.mark.parametrize(
    "status_line", ["HTTP/1.1", "HTTP/1.1 abc OK", "HTTP/2 101 OK", "ICY 200 OK", "HTTP/1.1 \xb2 OK", ""]
)
def test_parse_response_malformed_status_line_has_no_status(status_line: str) -> None:
    with pytest.raises(RemoteHandshakeRefusal) as info:
        parse_response(response_bytes(status_line))
    assert info.value.status is None  # not HTTP: no status is made up


def test_parse_response_header_limit() -> None:
    data = response_bytes(headers=[*GOOD_RESPONSE_HEADERS, "X-Pad: " + "a" * 500])
    with pytest.raises(RemoteHandshakeRefusal, match="response headers too large") as info:
        parse_response(data, max_header_bytes=400)
    assert info.value.status is None


def validated(
    headers: list[str], status_line: str = "HTTP/1.1 101 Switching Protocols", **kw: object
) -> object:
    result = parse_response(response_bytes(status_line, headers))
    assert result is not None
    return validate_response(result[0], RFC_KEY, **kw)  # type: ignore[arg-type]


def test_validate_response_ok_case_insensitive() -> None:
    headers = ["upgrade: WebSocket", "connection: keep-alive, upgrade", f"sec-websocket-accept: {RFC_ACCEPT}"]
    assert validated(headers) is None


def test_validate_response_returns_offered_subprotocol() -> None:
    headers = [*GOOD_RESPONSE_HEADERS, "Sec-WebSocket-Protocol: chat"]
    assert validated(headers, subprotocols=["superchat", "chat"]) == "chat"


CLIENT_REFUSALS = [
    pytest.param(
        ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: AAAA"], 101, id="wrong-accept"
    ),
    pytest.param(
        ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept_key(generate_key())}"],
        101,
        id="accept-for-another-key",
    ),
    pytest.param(["Upgrade: websocket", "Connection: Upgrade"], 101, id="no-accept"),
    pytest.param(["Connection: Upgrade", f"Sec-WebSocket-Accept: {RFC_ACCEPT}"], 101, id="no-upgrade"),
    pytest.param(["Upgrade: websocket", f"Sec-WebSocket-Accept: {RFC_ACCEPT}"], 101, id="no-connection"),
    pytest.param([*GOOD_RESPONSE_HEADERS, "Sec-WebSocket-Protocol: chat"], 101, id="unoffered-subprotocol"),
    pytest.param([*GOOD_RESPONSE_HEADERS, "Sec-WebSocket-Extensions: x"], 101, id="unoffered-extension"),
]


@pytest.mark.parametrize(("headers", "status"), CLIENT_REFUSALS)
def test_validate_response_refusals(headers: list[str], status: int) -> None:
    with pytest.raises(RemoteHandshakeRefusal) as info:
        validated(headers)
    assert info.value.status == status  # the real status: a 101 that breaks RFC 6455
    assert info.value.response is not None and info.value.response.status == status


@pytest.mark.parametrize("status", [200, 400, 403, 426, 503])
def test_validate_response_non_101_carries_the_status(status: int) -> None:
    with pytest.raises(RemoteHandshakeRefusal) as info:
        validated(GOOD_RESPONSE_HEADERS, status_line=f"HTTP/1.1 {status} Nope")
    assert info.value.status == status
    assert info.value.response is not None and info.value.response.reason == "Nope"
