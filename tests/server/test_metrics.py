"""GET /metrics: a scripted session moves each counter by exactly what it did (prometheus_client
parses the exposition); with --workers 2, the figures are the sum over the workers, fresh at
scrape time. Scrapes within a second get one render; --metrics-host; plain HTTP requests are
no handshake failures."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from websock_actors import WebSocketApp
from websock_actors.client import connect

from ..support.apps import fresh_chat_app as chat_app
from ..support.raw import free_port, refuse, split_response
from ..support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET `url`, by (name, sorted labels)."""
    return parse(scrape_bytes(url))


def scrape_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        body: bytes = response.read()
    return body


def parse(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = body.decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def gauge_is(samples: dict[Any, float], name: str, expected: float) -> dict[Any, float] | None:
    """`samples` when its `name` is `expected` (for wait_until), else None."""
    return samples if value(samples, name) == expected else None


def test_a_scripted_session_moves_each_counter_by_its_amount(serve) -> None:
    app = chat_app()
    server = serve(app, metrics=True, ping_interval=None)
    url = f"http://127.0.0.1:{server.port}/metrics"
    before = scrape(url)
    assert value(before, "websock_connections_total") == 0
    no_key = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    assert refuse(server.port, no_key)[0] == 400
    with connect(server.url) as ann, connect(server.url) as bob:
        ann.request({"type": "join", "room": "r", "name": "ann"})
        bob.request({"type": "join", "room": "r", "name": "bob"})  # 1 delivery: member_joined to ann
        for i in range(3):
            ann.request({"type": "say", "room": "r", "text": f"m{i}"})  # 2 deliveries, and "said"
        ann.send("not json")
        ann.send('{"type": "nope"}')
        assert ann.recv_json(timeout=5)["type"] == "member_joined"
        for _ in range(3):
            ann.recv_json(timeout=5)
        assert ann.recv_json(timeout=5)["code"] == "invalid_json"
        assert ann.recv_json(timeout=5)["code"] == "unknown_type"
        # a scrape within a second of the last one gets its bytes: wait for a fresh render
        during = wait_until(lambda: gauge_is(scrape(url), "websock_connections", 2), 5, "2 open")
        ann.close(4001, "bye")  # bob hears member_left: 1 delivery
        assert bob.recv_json(timeout=5)["type"] == "message"
    after = wait_until(lambda: gauge_is(scrape(url), "websock_connections", 0), 5, "both closes counted")
    assert value(after, "websock_connections_total") == 2
    assert value(after, "websock_closes_total", code="4xxx") == 1
    assert value(after, "websock_closes_total", code="1000") == 1
    assert value(after, "websock_handshake_failures_total", status="400") == 1
    assert value(after, "websock_messages_received_total", type="join") == 2
    assert value(after, "websock_messages_received_total", type="say") == 3
    assert value(after, "websock_messages_received_total", type="_invalid") == 1
    assert value(after, "websock_messages_received_total", type="_unknown") == 1
    assert value(after, "websock_handler_seconds_count", type="say") == 3
    assert value(after, "websock_handler_seconds_bucket", type="say", le="+Inf") == 3
    assert value(after, "websock_error_replies_total", code="invalid_json") == 1
    assert value(after, "websock_error_replies_total", code="unknown_type") == 1
    # member_joined 1 + three says to 2 members 6 + member_left 1 (+ bob's own leaving: nobody left)
    assert value(after, "websock_broadcast_deliveries_total") == 8
    # the chat's first message on each connection (`session`: 2), replies (2 joined + 3 said
    # + 2 errors), and the 8 deliveries
    assert value(after, "websock_messages_sent_total") == 17
    assert value(after, "websock_bytes_received_total") > value(during, "websock_bytes_received_total") > 0
    assert value(after, "websock_bytes_sent_total") > 0
    assert value(after, "websock_backplane_publish_failures_total") == 0
    assert ("websock_mailbox_bytes", ()) in after


def test_metrics_are_off_by_default(serve) -> None:
    server = serve(chat_app())
    assert refuse(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404  # the app's pages


@contextmanager
def two_workers() -> Iterator[tuple[int, int]]:
    """`run tests.support.pid_app:app --workers 2 --metrics-port`, both workers serving:
    (the port, the metrics port); stopped (exit status 0) after the block."""
    port, metrics_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "websock_actors", "run", "tests.support.pid_app:app", "--port", str(port)
    ]
    proc = subprocess.Popen(
        [*command, "--no-patch", "--workers", "2", "--metrics-port", str(metrics_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        served = 0
        while served < 2:  # the master's line, then each worker's
            line = proc.stdout.readline()
            assert line, "the server ended"
            served += " serving " in line
        yield port, metrics_port
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


@pytest.mark.timeout(60)
def test_with_two_workers_the_figures_are_summed(tmp_path) -> None:
    with two_workers() as (port, metrics_port):
        pids = set()
        for _ in range(16):
            with connect(f"ws://127.0.0.1:{port}/") as ws:
                for _ in range(3):
                    ws.send("which")
                    pids.add(ws.recv(timeout=5))
        assert len(pids) == 2  # both workers served some
        url = f"http://127.0.0.1:{metrics_port}/metrics"

        def summed() -> bool:
            samples = scrape(url)
            return (
                value(samples, "websock_connections_total") == 16
                and value(samples, "websock_messages_received_total", type="text") == 48
                and value(samples, "websock_closes_total", code="1000") == 16
            )

        wait_until(summed, 10, "the sum over both workers")  # each worker writes every second


def test_a_burst_of_scrapes_is_answered_from_one_render_a_second(serve) -> None:
    """A gauge moves between the scrapes of a burst; every scrape within a second of a render
    gets its bytes, so there are at most as many distinct answers (and renders) as the burst
    has begun seconds. (On main every scrape rendered: 20 answers, 20 different ones.)"""
    server = serve(chat_app(), metrics=True, ping_interval=None)
    url = f"http://127.0.0.1:{server.port}/metrics"
    bodies = []
    with ExitStack() as stack:
        began = time.monotonic()
        for _ in range(20):
            bodies.append(scrape_bytes(url))
            stack.enter_context(connect(server.url))  # websock_connections + 1 for the next scrape
        seconds = time.monotonic() - began
        assert len(set(bodies)) <= 1 + int(seconds), seconds
        renders = server.call(lambda: server.server._metrics.renders)
        assert len(set(bodies)) <= renders <= 1 + int(seconds), (renders, seconds)
        first = parse(bodies[0])
        assert value(first, "websock_connections") == 0
        # a later render (a second on) sees every connection, and the scrapes answered before it
        fresh = wait_until(lambda: gauge_is(scrape(url), "websock_connections", 20), 10, "a fresh render")
        assert value(fresh, "websock_http_requests_total", status="200") >= 20


def test_scrapes_that_come_during_a_render_wait_for_it(serve) -> None:
    """Ten scrapes sent at once (on ten sockets) cost one render (on main: ten, and the
    answers differed, each counting the bytes of the answers written before it)."""
    server = serve(chat_app(), metrics=True, ping_interval=None)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(10)]
    try:
        began = time.monotonic()
        for sock in socks:
            sock.sendall(request)
        answers = [split_response(read_all(sock)) for sock in socks]
        seconds = time.monotonic() - began
    finally:
        for sock in socks:
            sock.close()
    assert [status for status, _, _ in answers] == [200] * 10
    assert len({body for _, _, body in answers}) <= 1 + int(seconds)  # one, unless over a second
    assert server.call(lambda: server.server._metrics.renders) <= 1 + int(seconds)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(("pages", "status"), [(True, 404), (False, 426)])
def test_a_plain_http_request_is_no_handshake_failure(serve, pages: bool, status: int) -> None:
    """A browser's favicon (404 from an app with pages, the chat's; 426 from one without) counts in
    websock_http_requests_total, not in websock_handshake_failures_total."""
    server = serve(chat_app() if pages else WebSocketApp(), metrics=True, ping_interval=None)
    assert refuse(server.port, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n")[0] == status
    no_key = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    assert refuse(server.port, no_key)[0] == 400  # an upgrade that fails still counts
    samples = scrape(f"http://127.0.0.1:{server.port}/metrics")
    assert value(samples, "websock_handshake_failures_total", status=str(status)) == 0
    assert value(samples, "websock_handshake_failures_total", status="400") == 1
    assert value(samples, "websock_http_requests_total", status=str(status)) == 1


def test_the_metrics_port_binds_the_metrics_host(serve) -> None:
    server = serve(chat_app(), metrics_port=0, metrics_host="127.0.0.2", ping_interval=None)
    address = server.call(lambda: server.server.metrics_address)
    assert address is not None and address[0] == "127.0.0.2"
    assert value(scrape(f"http://127.0.0.2:{address[1]}/metrics"), "websock_connections_total") == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", address[1]), timeout=5).close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("flags", "metrics_host"), [((), "127.0.0.1"), (("--metrics-host", "127.0.0.3"), "127.0.0.3")]
)
def test_the_metrics_port_is_on_the_loopback_unless_told(flags: tuple[str, ...], metrics_host: str) -> None:
    """`--host 127.0.0.2` is the WebSocket's address only: the metrics port takes
    --metrics-host, 127.0.0.1 by default (on main it bound --host)."""
    port, metrics_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "websock_actors", "run", "tests.support.pid_app:app", "--no-patch",
        "--host", "127.0.0.2", "--port", str(port), "--metrics-port", str(metrics_port), *flags,
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        while " serving " not in (line := proc.stdout.readline()):
            assert line, "the server ended"
        samples = scrape(f"http://{metrics_host}:{metrics_port}/metrics")
        assert value(samples, "websock_connections_total") == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", metrics_port), timeout=5).close()
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


@pytest.mark.timeout(60)
def test_with_two_workers_a_scrape_shows_what_every_worker_counts_now() -> None:
    """Right after connections to both workers open and each answers a message, one scrape
    shows them all: the answering worker asks the other for its snapshot. (On main the other
    worker's figures were those it wrote up to a second before.)"""
    with two_workers() as (port, metrics_port), ExitStack() as stack:
        clients = []
        pids: set[str] = set()
        while len(clients) < 8 or len(pids) < 2:
            assert len(clients) < 64, "the kernel sent every connection to one worker"
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{port}/"))
            clients.append(ws)
            ws.send("which")
            pids.add(ws.recv(timeout=5))
        for ws in clients:  # the last thing each worker did: answer a message
            ws.send("which")
        for ws in clients:
            ws.recv(timeout=5)
        samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert value(samples, "websock_connections") == len(clients)
        assert value(samples, "websock_connections_total") == len(clients)
        assert value(samples, "websock_messages_received_total", type="text") == 2 * len(clients)
