"""Fuzz the opening handshake's HTTP side: ServerHandshake, parse_response, parse_extensions.

Input layout: byte 0 holds flags (bit 0: a policy with permessage-deflate; bit 1: feed the
head in two receive_data calls; bit 2: a policy that restricts Origin), byte 1 says where
to split, the rest is the bytes a client (or, for parse_response, a server) sent.

fuzz/http.dict holds the tokens of a handshake, for libFuzzer's mutations. One mutation in
fifty instead repeats a byte of the input 129, 1,100 or 4,301 times (long tokens, values,
lines, and numbers past int()'s 4,300-digit limit), which libFuzzer's own mutations reach
only slowly. (With a custom mutator libFuzzer turns its length control off: inputs may be
up to -max_len long from the start, which costs throughput.)

Only LocalHandshakeRefusal and RemoteHandshakeRefusal may come out; anything else is a bug and is
left to propagate, so that atheris reports it and saves the input.

    python fuzz/fuzz_http.py --seconds 60
"""

from __future__ import annotations

import random
from pathlib import Path

import _harness
import atheris

with atheris.instrument_imports(include=["websock_actors"]):
    from websock_actors.errors import LocalHandshakeRefusal, RemoteHandshakeRefusal
    from websock_actors.protocol import (
        DeflateOptions,
        HandshakePolicy,
        Headers,
        Request,
        Response,
        ServerHandshake,
        WebSocketConnection,
        client_accept,
        parse_extensions,
        parse_response,
        server_negotiate,
    )

DICT = Path(__file__).resolve().parent / "http.dict"
ALLOWED = (LocalHandshakeRefusal, RemoteHandshakeRefusal)
OPTIONS = DeflateOptions()
SUBPROTOCOLS = ("chat", "superchat")
POLICIES = {
    (compression, origins): HandshakePolicy(
        subprotocols=SUBPROTOCOLS,
        compression=OPTIONS if compression else None,
        origins=("https://example.test", None) if origins else None,
    )
    for compression in (False, True)
    for origins in (False, True)
}


def _server_handshake(flags: int, split: int, body: bytes) -> None:
    handshake = ServerHandshake(POLICIES[bool(flags & 1), bool(flags & 4)])
    try:
        if flags & 2:
            cut = split * (len(body) + 1) // 256
            request = handshake.receive_data(body[:cut])
            more = handshake.receive_data(body[cut:])
            if request is not None:
                assert more is request
            request = more
        else:
            request = handshake.receive_data(body)
        if request is None:
            return
        assert isinstance(request, Request) and isinstance(request.headers, Headers)
        answer, connection = handshake.accept()
    except LocalHandshakeRefusal as exc:
        # What the server sends back: it must render for any refusal.
        assert handshake.refuse(exc).startswith(b"HTTP/1.1 ")
        return
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"\r\n\r\n")
    assert isinstance(connection, WebSocketConnection)
    # The server hands the bytes that followed the head to the connection: they must not raise.
    connection.receive_data(handshake.rest)
    connection.data_to_send()


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, split, body = data[0], data[1], data[2:]
    _server_handshake(flags, split, body)

    try:
        parsed = parse_response(body)
    except ALLOWED:
        pass
    else:
        if parsed is not None:
            response, rest = parsed
            assert isinstance(response, Response) and isinstance(rest, bytes)

    text = body.decode("latin-1")
    try:
        extensions = parse_extensions(text)
    except ALLOWED:
        pass
    else:
        for name, params in extensions:
            assert isinstance(name, str) and isinstance(params, list)
    # The permessage-deflate negotiation on top of it, both ways.
    try:
        server_negotiate(text, OPTIONS)
    except ALLOWED:
        pass
    try:
        client_accept(text, OPTIONS)
    except ALLOWED:
        pass


def _request(*extra: str, path: str = "/chat") -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: example.test",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def seeds() -> list[bytes]:
    heads = [
        _request(),
        _request("Origin: https://example.test", "Sec-WebSocket-Protocol: superchat, chat"),
        _request("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
        _request(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10;"
            ' client_max_window_bits="9"; server_no_context_takeover, permessage-deflate, x-foo; a=b'
        ),
        _request("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover")
        + b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",  # and a masked "Hello" frame
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n\r\n",
        b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        # Long fields: a status code of 4,000 digits, a header value near the 16 KiB limit.
        b"HTTP/1.1 " + b"1" * 4000 + b" OK\r\nUpgrade: websocket\r\n\r\n",
        _request("X-Long: " + "a" * 16000),
        _request(*(f"X-{i}: {i}" for i in range(127))),
        b"permessage-deflate; client_max_window_bits=15; server_no_context_takeover",
    ]
    out = []
    for head in heads:
        out.append(b"\x00\x00" + head)
        out.append(b"\x01\x80" + head)
        out.append(b"\x07\x40" + head)
    return out


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if len(data) < 3 or rng.random() >= 0.02:
        return atheris.Mutate(data, max_size)
    pos = rng.randrange(2, len(data))
    run = data[pos : pos + 1] * rng.choice((129, 1100, 4301))
    out = data[:pos] + run + data[pos:]
    return out[:max_size]


if __name__ == "__main__":
    _harness.main(
        "fuzz_http",
        test_one_input,
        seeds=seeds(),
        flags=[f"-dict={DICT}"],
        custom_mutator=custom_mutator,
    )
