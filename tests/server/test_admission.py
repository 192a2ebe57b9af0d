"""Per-IP admission at accept time (issue 24, item 2): silent sockets from one address cannot
hold the handshake slots, over ws and over wss, since the per-IP caps are checked from the
peer's address when its socket is accepted, before a byte is read and before TLS.

Real sockets: the crowd connects from 127.0.0.1, the other client from 127.0.0.2.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import trustme

from websock_actors import WebSocketApp, tls_context

from ..support.raw import closed_unanswered, split_response, upgrade_request
from ..support.waits import wait_until

SETTINGS: dict[str, Any] = {
    "max_handshakes": 100,
    "max_connections_per_ip": 5,
    "max_handshakes_per_second_per_ip": 5,
}


def echo() -> WebSocketApp:
    return WebSocketApp()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, str, str]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("admission-tls")
    chain, key = folder / "chain.pem", folder / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    with open(chain, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    return ca, str(chain), str(key)


@contextmanager
def silent_crowd(port: int, count: int, host: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    """`count` sockets connected from `host` that never send a byte."""
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), source_address=(host, 0))
            socks.append(stack.enter_context(sock))
        yield socks


def settled(server: Any, count: int) -> None:
    """Wait until the server has taken all `count` sockets: refused at once or handshaking."""
    inner = server.server

    def taken() -> bool:
        return bool(server.call(lambda: inner.refused_sockets + inner.admission.handshaking >= count))

    wait_until(taken, 10, f"the server to take the {count} sockets")


def handshake_from(port: int, host: str, context: ssl.SSLContext | None = None) -> float:
    """A WebSocket handshake from `host`: the seconds it took; fails unless answered 101."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(host, 0)) as raw:
        sock: socket.socket = raw
        if context is not None:
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(upgrade_request())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"closed during the handshake after {data!r}"
            data += chunk
        took = time.perf_counter() - started
        assert split_response(data)[0] == 101
        if context is not None:
            sock.close()
    return took


def closed_by_server(socks: list[socket.socket], expected: int) -> int:
    """How many of `socks` the server has closed (EOF or reset), once `expected` are (or 5 s
    passed): the others are looked at without waiting for them."""

    def count() -> int:
        closed = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    closed += 1
            except ConnectionResetError:
                closed += 1
            except BlockingIOError:
                pass
        return closed

    deadline = time.monotonic() + 5
    while (closed := count()) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return closed


def test_silent_sockets_from_one_address_leave_room_for_another_over_ws(serve) -> None:
    server = serve(echo(), **SETTINGS)
    with silent_crowd(server.port, 100) as crowd:
        settled(server, 100)
        handshake_from(server.port, "127.0.0.2")
        assert closed_by_server(crowd, 95) == 95  # beyond the 5 per IP: closed at accept time


def test_silent_sockets_from_one_address_leave_room_for_another_over_wss(serve, tls_files) -> None:
    ca, chain, key = tls_files
    server = serve(echo(), ssl_context=tls_context(chain, key), **SETTINGS)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with silent_crowd(server.port, 100) as crowd:
        settled(server, 100)
        handshake_from(server.port, "127.0.0.2", client)
        assert closed_by_server(crowd, 95) == 95
    assert server.call(lambda: server.server.refused_sockets) == 95  # no TLS spent on those


def test_one_address_holds_a_tenth_of_the_handshake_slots(serve) -> None:
    # No cap on connections per IP: the share of the slots (a tenth: 2) stops the crowd.
    server = serve(echo(), max_handshakes=20, max_handshakes_per_second_per_ip=1000)
    with silent_crowd(server.port, 30) as crowd:
        settled(server, 30)
        handshake_from(server.port, "127.0.0.2")
        assert closed_by_server(crowd, 28) == 28


def test_refused_at_accept_time_means_not_a_byte_read(serve) -> None:
    server = serve(echo(), max_connections_per_ip=1)
    with silent_crowd(server.port, 1):
        settled(server, 1)
        assert closed_unanswered(server.port, upgrade_request())
        assert closed_unanswered(server.port)  # silent: closed all the same, at once
        handshake_from(server.port, "127.0.0.2")


def test_the_per_ip_counts_go_back_to_zero(serve) -> None:
    server = serve(echo(), max_connections_per_ip=2)
    with silent_crowd(server.port, 4):
        settled(server, 4)
    inner = server.server

    def empty() -> bool:
        per_ip = inner.admission.per_ip
        return bool(server.call(lambda: not per_ip.sockets and not per_ip.handshaking))

    wait_until(empty, 10, "the per-IP counts to empty")
    handshake_from(server.port, "127.0.0.1")  # the address is admitted again
