"""The sans-I/O handshake objects: ServerHandshake and ClientHandshake talk to each other in memory."""

from __future__ import annotations

import pytest

from websock_actors.errors import CloseCode, LocalHandshakeRefusal, RemoteHandshakeRefusal
from websock_actors.protocol import (
    ClientHandshake,
    ConnectionState,
    DeflateOptions,
    HandshakePolicy,
    Headers,
    Response,
    ServerHandshake,
    TextMessage,
    WebSocketConnection,
    encode_frame,
)


def pair(
    policy: HandshakePolicy | None = None, **client: object
) -> tuple[ServerHandshake, ClientHandshake, bytes]:
    server = ServerHandshake(policy or HandshakePolicy())
    peer = ClientHandshake("example.com:8000", "/chat?room=1", **client)  # type: ignore[arg-type]
    return server, peer, peer.data_to_send()


def test_a_request_fed_byte_by_byte_then_accepted_opens_both_ends() -> None:
    server, client, request = pair()
    assert server.state is ConnectionState.CONNECTING
    for i in range(len(request) - 1):
        assert server.receive_data(request[i : i + 1]) is None
    received = server.receive_data(request[-1:])
    assert received is not None and received.path == "/chat?room=1"
    assert received.headers.get("Host") == "example.com:8000"
    answer, conn = server.accept()
    assert server.state is ConnectionState.OPEN and conn.state is ConnectionState.OPEN
    assert client.state is ConnectionState.CONNECTING
    assert client.receive_data(answer[:10]) is None
    peer = client.receive_data(answer[10:])
    assert isinstance(peer, WebSocketConnection) and client.state is ConnectionState.OPEN
    assert client.response is not None and client.response.status == 101
    assert conn.receive_data(peer.send_text("hi")) == [TextMessage("hi")]
    assert peer.receive_data(conn.send_text("yo")) == [TextMessage("yo")]


def test_bytes_after_the_heads_are_kept_as_rest() -> None:
    server, client, request = pair()
    frame = encode_frame(1, b"early", mask=True)
    assert server.receive_data(request + frame) is not None
    assert server.rest == frame
    answer, conn = server.accept()
    assert client.receive_data(answer + encode_frame(1, b"pushed")) is not None
    assert client.rest == encode_frame(1, b"pushed")
    assert conn.receive_data(server.rest) == [TextMessage("early")]


def test_subprotocol_is_the_servers_first_choice_among_the_offered() -> None:
    server, client, request = pair(HandshakePolicy(subprotocols=("v2", "v1")), subprotocols=("v1", "v2"))
    server.receive_data(request)
    answer, _ = server.accept()
    assert server.subprotocol == "v2"
    assert client.receive_data(answer) is not None and client.subprotocol == "v2"


def test_origin_not_allowed_is_refused_with_403_and_rendered() -> None:
    server, _, request = pair(HandshakePolicy(origins=("https://ok.example",)), origin="https://evil.example")
    server.receive_data(request)
    with pytest.raises(LocalHandshakeRefusal) as info:
        server.accept()
    assert info.value.status == 403
    answer = server.refuse(info.value)
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"origin not allowed" in answer
    assert server.state is ConnectionState.CLOSED


def test_a_plain_answer_instead_of_the_upgrade() -> None:
    server, _, request = pair()
    server.receive_data(request)
    page = server.respond(Response(200, "OK", Headers([("Content-Type", "text/plain")]), b"hello"))
    assert page.startswith(b"HTTP/1.1 200 OK\r\n") and page.endswith(b"\r\n\r\nhello")
    assert server.state is ConnectionState.CLOSED


def test_accept_before_the_request_is_a_bug_of_the_driver() -> None:
    with pytest.raises(RuntimeError):
        ServerHandshake(HandshakePolicy()).accept()


def test_compression_is_negotiated_and_declines_are_reported() -> None:
    options = DeflateOptions()
    server, client, request = pair(HandshakePolicy(compression=options), compression=options)
    server.receive_data(request)
    answer, conn = server.accept()
    peer = client.receive_data(answer)
    assert conn.deflate is not None and peer is not None and peer.deflate is not None
    assert conn.receive_data(peer.send_text("a" * 1000)) == [TextMessage("a" * 1000)]
    _, _, plain_request = pair()
    offer = b"\r\nSec-WebSocket-Extensions: permessage-deflate; x=1\r\n\r\n"
    strict = ServerHandshake(HandshakePolicy(compression=options))
    strict.receive_data(plain_request.replace(b"\r\n\r\n", offer))
    _, plain = strict.accept()
    assert plain.deflate is None and strict.declined == ["unknown parameter 'x'"]


def test_the_client_rejects_a_refusal_with_its_real_status() -> None:
    _, client, _ = pair()
    with pytest.raises(RemoteHandshakeRefusal) as info:
        client.receive_data(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n")
    assert info.value.status == 503
    assert info.value.response.headers.get("Retry-After") == "1"
    assert client.state is ConnectionState.CLOSED


def test_the_client_rejects_a_wrong_accept_as_a_101() -> None:
    server, _, request = pair()
    server.receive_data(request)
    answer, _ = server.accept()
    other = ClientHandshake("example.com:8000", "/chat")  # another key
    with pytest.raises(RemoteHandshakeRefusal, match="Sec-WebSocket-Accept") as info:
        other.receive_data(answer)
    assert info.value.status == 101


def test_the_server_closing_during_the_handshake_has_no_status() -> None:
    _, client, _ = pair()
    with pytest.raises(RemoteHandshakeRefusal) as info:
        client.receive_data(b"")
    assert info.value.status is None


def test_the_connection_records_how_it_closed() -> None:
    server, client, request = pair()
    server.receive_data(request)
    answer, conn = server.accept()
    peer = client.receive_data(answer)
    assert peer is not None and conn.close_code is None
    conn.receive_data(peer.send_close(4001, "bye"))
    assert (conn.state, conn.close_code, conn.close_reason) == (ConnectionState.CLOSED, 4001, "bye")
    peer.receive_data(encode_frame(1, b"hello", mask=True))  # a masked server frame: a protocol error
    assert (peer.close_code, peer.state) == (CloseCode.PROTOCOL_ERROR, ConnectionState.CLOSED)
    lost = WebSocketConnection(conn.role)
    lost.connection_lost("timed out")
    assert (lost.close_code, lost.close_reason) == (CloseCode.ABNORMAL, "timed out")


def test_packed_headers_read_back_the_same() -> None:
    """An open connection keeps its request's headers packed; reading them unpacks them."""
    from websock_actors.protocol.http import Headers

    items = [("Host", "a:8000"), ("X-Two", "1"), ("x-two", "2, 3"), ("Empty", ""), ("Tab", "a\tb")]
    headers = Headers(items)
    headers.pack()
    assert headers._items is None and headers._packed  # held as bytes
    assert headers.get("x-TWO") == "1, 2, 3" and headers.get("host") == "a:8000"
    assert list(headers) == items and len(headers) == 5 and "empty" in headers
    empty = Headers()
    empty.pack()
    assert list(empty) == [] and empty.get("x") is None
    wide = Headers([("Name", "caf\u00e9")])  # not ASCII (made by hand): kept as it is
    wide.pack()
    assert wide.get("name") == "caf\u00e9"


def test_a_plain_request_body_is_read_by_content_length_and_bounded() -> None:
    head = b"POST /_api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
    handshake = ServerHandshake(HandshakePolicy())
    assert handshake.receive_data(head + b"hello") is None  # the body is not complete yet
    request = handshake.receive_data(b" world")
    assert request is not None and request.body == b"hello world" and handshake.rest == b""
    whole = ServerHandshake(HandshakePolicy()).receive_data(head + b"hello worldEXTRA")
    assert whole is not None and whole.body == b"hello world"
    for headers, status in (
        (b"Content-Length: 12\r\n", 413),
        (b"Content-Length: -1\r\n", 400),
        (b"Content-Length: 1\r\nContent-Length: 1\r\n", 400),
        (b"Transfer-Encoding: chunked\r\n", 411),
    ):
        refusing = ServerHandshake(HandshakePolicy(max_body_bytes=11))
        with pytest.raises(LocalHandshakeRefusal) as refused:
            refusing.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
        assert refused.value.status == status, headers
    upgrade = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nframe"
    opening = ServerHandshake(HandshakePolicy())
    request = opening.receive_data(upgrade)
    assert request is not None and request.body == b"" and opening.rest == b"frame"  # frames, not a body
