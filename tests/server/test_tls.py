"""TLS on the server: wss:// with websockets and with our client, mutual TLS, and what plain TCP,
garbage or silence on the TLS port get (real sockets, certificates made by trustme)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import gevent
import pytest
import trustme
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

from websock_actors import WebSocketApp, tls_context
from websock_actors.client import connect
from websock_actors.errors import ConfigurationError

from ..support.apps import RecordingEchoApp
from ..support.dormancy import sweep_idle
from ..support.raw import TEXT, free_port, masked_frame, upgrade_request

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    folder = tmp_path_factory.mktemp("tls")
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = folder / "chain.pem", folder / "key.pem", folder / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    with open(chain, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return str(chain), str(key), str(ca_file)


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def tls_url(server) -> str:  # type: ignore[no-untyped-def]
    return f"wss://127.0.0.1:{server.port}/"


def wss_echoes(
    url: str, context: ssl.SSLContext, *messages: str | bytes, **options: object
) -> list[str | bytes]:
    """Send each message with websockets' asyncio client and read one answer to each.

    Not its sync client: that one reads and writes one SSL socket from two threads, and about
    one TLS connection in a thousand then never gets its request out (measured against
    websockets' own sync server as well as ours), which made CI fail once."""

    async def exchange() -> list[str | bytes]:
        async with ws_connect(url, ssl=context, open_timeout=10, **options) as ws:  # type: ignore[arg-type]
            answers = []
            for message in messages:
                await ws.send(message)
                answers.append(await asyncio.wait_for(ws.recv(), 10))
            return answers

    return asyncio.run(exchange())


def test_wss_with_websockets_and_with_our_client(serve, ca, cert_files) -> None:
    chain, key, _ = cert_files
    server = serve(RecordingEchoApp(), ssl_context=tls_context(chain, key))
    big = b"\x01" * (3 << 20)  # many TLS records each way
    answers = wss_echoes(tls_url(server), client_context(ca), "over tls", big, max_size=None)
    assert answers == ["over tls", big]
    with connect(tls_url(server), ssl_context=client_context(ca)) as ours:
        ours.send("ours")
        assert ours.recv(timeout=5) == "ours"
        assert ours.ping(timeout=5) >= 0
    conns = server.app.conns
    assert conns and conns[0].tls_version in ("TLSv1.2", "TLSv1.3")


def test_an_inline_app_over_tls_runs_in_the_actor(serve, ca, cert_files) -> None:
    # TLS records may need waiting to read or write: an inline app's handler runs in the actor.
    chain, key, _ = cert_files
    app = WebSocketApp(inline=True)
    where: list[bool] = []

    @app.on_message
    def echo(conn, message) -> None:
        where.append(gevent.getcurrent() is gevent.get_hub())
        conn.send(message)

    server = serve(app, ssl_context=tls_context(chain, key))
    assert wss_echoes(tls_url(server), client_context(ca), "one", "two", b"\x02" * (1 << 20)) == [
        "one",
        "two",
        b"\x02" * (1 << 20),
    ]
    assert where == [False, False, False]


def test_a_typed_app_over_tls(serve, ca, cert_files) -> None:
    from examples.chat import app as chat

    chain, key, _ = cert_files
    server = serve(chat, ssl_context=tls_context(chain, key))
    with connect(tls_url(server), ssl_context=client_context(ca)) as ws:
        joined = ws.request({"type": "join", "room": "tls", "name": "ann"})
        assert joined["members"] == ["ann"]
        ws.request({"type": "say", "room": "tls", "text": "hi"})
        assert ws.recv_json(timeout=5)["text"] == "hi"
    page = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with client_context(ca).wrap_socket(page, server_hostname="127.0.0.1") as https:
        https.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := https.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"<html" in answer.lower()


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x05hello", b""])
def test_plain_tcp_garbage_or_silence_on_the_tls_port_is_dropped(serve, cert_files, junk: bytes) -> None:
    chain, key, _ = cert_files
    server = serve(RecordingEchoApp(), ssl_context=tls_context(chain, key), handshake_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        if junk:
            sock.sendall(junk)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert not data.startswith(b"HTTP/")  # never an unencrypted answer
    assert server.wait_all_gone(5)
    assert server.app.conns == []


def test_mutual_tls_requires_a_client_certificate(serve, ca, cert_files) -> None:
    chain, key, ca_file = cert_files
    mutual = tls_context(chain, key, ca_certs=ca_file, verify_client=True)
    server = serve(RecordingEchoApp(), ssl_context=mutual)
    refused = (ssl.SSLError, OSError, InvalidMessage, ConnectionClosed)
    with pytest.raises(refused):
        wss_echoes(tls_url(server), client_context(ca), "no certificate")
    assert server.app.conns == []  # refused in the TLS handshake: no WebSocket connection
    client_cert = ca.issue_cert("client@example")
    context = client_context(ca)
    client_cert.configure_cert(context)
    assert wss_echoes(tls_url(server), context, "with certificate") == ["with certificate"]
    assert server.app.conns[-1].peer_certificate is not None
    with pytest.raises(ConfigurationError):
        tls_context(chain, key, verify_client=True)


@pytest.mark.timeout(60)
def test_cli_serves_wss(ca, cert_files) -> None:
    chain, key, _ = cert_files
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", "examples.echo:app", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--no-patch", "--certfile", chain, "--keyfile", key],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert f"wss://127.0.0.1:{port}/" in proc.stdout.readline()
        (echo,) = wss_echoes(f"wss://127.0.0.1:{port}/", client_context(ca), json.dumps({"a": 1}))
        assert json.loads(echo) == {"a": 1}
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    missing = [*command, "--no-patch", "--certfile", "/nonexistent.pem"]
    bad = subprocess.run(missing, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and bad.stderr.startswith("error: cannot load the TLS certificate")


def test_a_client_that_vanishes_right_after_sending_ends_quietly(serve, ca, cert_files, caplog) -> None:
    chain, key, _ = cert_files
    app = RecordingEchoApp()
    server = serve(app, ssl_context=tls_context(chain, key))
    caplog.set_level(logging.ERROR, logger="websock_actors")
    for _ in range(5):
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        tls = client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(upgrade_request())
        assert tls.recv(65536).startswith(b"HTTP/1.1 101")
        # A message and the end of the TCP stream at once, no close frame, no close_notify:
        # the echo is written after TLS saw the end.
        tls.sendall(masked_frame(TEXT, b"x" * 100_000))
        tls.shutdown(socket.SHUT_WR)  # a FIN, without TLS's close_notify
        tls.close()
    assert server.wait_all_gone(5)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert {code for code, _ in app.closes} == {1006}


def test_a_push_to_an_idle_tls_connection_goes_out_encrypted(serve, ca, cert_files) -> None:
    # Mail for a dormant actor may be written from the hub, but TLS records only by the actor.
    chain, key, _ = cert_files
    server = serve(RecordingEchoApp(), ssl_context=tls_context(chain, key))
    with connect(tls_url(server), ssl_context=client_context(ca)) as ours:
        ours.send("hello")
        assert ours.recv(timeout=5) == "hello"
        sweep_idle(server)
        hub_server = server.server
        server.call(lambda: [conn.send("pushed") for conn in hub_server.connections.values()])
        assert ours.recv(timeout=5) == "pushed"
        ours.send("again")
        assert ours.recv(timeout=5) == "again"
