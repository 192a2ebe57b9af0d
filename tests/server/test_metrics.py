"""GET /metrics: a scripted session moves each counter by exactly what it did (prometheus_client
parses the exposition); with --workers 2, the figures are the sum over the workers."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from websock_actors.client import connect

from ..support.apps import fresh_chat_app as chat_app
from ..support.raw import free_port, refuse
from ..support.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET `url`, by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


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
        during = scrape(url)
        assert value(during, "websock_connections") == 2
        ann.close(4001, "bye")  # bob hears member_left: 1 delivery
        assert bob.recv_json(timeout=5)["type"] == "message"
    wait_until(lambda: value(scrape(url), "websock_connections") == 0, 5, "both closes counted")
    after = scrape(url)
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


@pytest.mark.timeout(60)
def test_with_two_workers_the_figures_are_summed(tmp_path) -> None:
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
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
