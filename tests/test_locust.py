"""The Locust users of locustfiles/ against real servers, Locust in subprocesses (it
monkey-patches the process it runs in), the servers in this one. Asserts on Locust's CSV stats.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from examples.chat import app as chat_app
from websock_actors import Connection, WebSocketApp

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(90)


def locust(locustfile: str, url: str, csv_prefix: Path, *extra: str) -> subprocess.Popen[str]:
    """Locust headless in a subprocess; `locustfile` is relative to locustfiles/ (or absolute)."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "locust", "-f", str(ROOT / "locustfiles" / locustfile),
            "--headless", "--host", url, "--csv", str(csv_prefix), "--only-summary",
            "--loglevel", "WARNING", *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def stats(csv_prefix: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(f"{csv_prefix}_stats.csv", newline="") as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}


def finish(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_chat_and_echo_users_against_real_servers(serve, tmp_path: Path) -> None:
    closes: list[int] = []
    all_closed = threading.Event()
    echo = WebSocketApp()

    @echo.on_message
    def reply(conn: Connection, message: str | bytes) -> None:
        conn.send(message)

    @echo.on_close
    def closed(conn: Connection, code: int, reason: str) -> None:
        closes.append(code)
        if len(closes) == 20:
            all_closed.set()

    chat_server, echo_server = serve(chat_app), serve(echo)
    # Both runs at once: 40 chatters in rooms of 5, acting every ~0.1 s; 20 echo users.
    chat_run = locust(
        "chat.py", chat_server.url, tmp_path / "chat",
        "-u", "40", "-r", "40", "-t", "3s", "--room-size", "5", "--think-time", "0.1",
    )  # fmt: skip
    echo_run = locust("echo.py", echo_server.url, tmp_path / "echo", "-u", "20", "-r", "20", "-t", "3s")
    chat_output, echo_output = finish(chat_run), finish(echo_run)

    chat = stats(tmp_path / "chat")
    for name in ("connect", "join", "say", "leave"):
        row = chat[("WS", name)]
        assert int(row["Request Count"]) > 0, (name, chat_output)
        assert float(row["Average Response Time"]) > 0, name
        assert int(row["Failure Count"]) == 0, name
    assert int(chat[("WS", "connect")]["Request Count"]) == 40
    # Everyone in a room hears everything said in it: at least as many pushes as says.
    with open(tmp_path / "chat_pushes.csv", newline="") as f:
        pushes = {row["Type"]: int(row["Count"]) for row in csv.DictReader(f)}
    assert pushes["message"] >= int(chat[("WS", "say")]["Request Count"])
    assert "said" not in pushes  # a reply never counts as a push, even at the stop
    assert "pushes received: message" in chat_output
    # Pushes are not requests: the Aggregated row is the requests' own figure.
    assert not [key for key in chat if key[0] == "PUSH"]
    requests = sum(int(row["Request Count"]) for key, row in chat.items() if key[0] == "WS")
    assert int(chat[("", "Aggregated")]["Request Count"]) == requests
    assert int(chat[("", "Aggregated")]["Failure Count"]) == 0

    echoes = stats(tmp_path / "echo")
    for name in ("connect", "echo text", "echo binary"):
        assert int(echoes[("WS", name)]["Request Count"]) > 0, (name, echo_output)
    assert int(echoes[("", "Aggregated")]["Failure Count"]) == 0
    # Stopping closed every connection cleanly.
    assert all_closed.wait(10)
    assert closes == [1000] * 20
    assert echo_server.call(lambda: len(echo_server.server.connections)) == 0


FAILING_LOCUSTFILE = """
from locust import constant, task
from websock_actors.contrib.locust import WebSocketUser

class Unlucky(WebSocketUser):
    wait_time = constant(0.01)
    request_timeout = 0.2

    @task
    def unlucky(self):
        self.request({"type": "refused"})   # an error reply
        self.request({"type": "ignored"})   # no reply: a timeout
        self.request({"type": "bye"})       # the server closes with 4000; the next request reconnects
"""


def test_failures_are_reported_by_code(serve, tmp_path: Path) -> None:
    app = WebSocketApp()

    @app.on_message
    def unlucky(conn: Connection, message: str | bytes) -> None:
        request = json.loads(message)
        if request["type"] == "refused":
            conn.send(json.dumps({"type": "error", "id": request["id"], "code": "nope", "detail": "no"}))
        elif request["type"] == "bye":
            conn.close(4000, "bye")

    server = serve(app)
    locustfile = tmp_path / "unlucky.py"
    locustfile.write_text(FAILING_LOCUSTFILE)
    run = locust(str(locustfile), server.url, tmp_path / "unlucky", "-u", "3", "-r", "3", "-t", "2s")
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 1, output  # Locust's exit code when requests failed
    with open(tmp_path / "unlucky_failures.csv", newline="") as f:
        failures = {(row["Name"], row["Error"]) for row in csv.DictReader(f)}
    assert failures == {
        ("refused", "WebSocketFailure('nope')"),
        ("ignored", "WebSocketFailure('timeout')"),
        ("bye", "WebSocketFailure('closed 4000')"),
    }, output
    unlucky_stats = stats(tmp_path / "unlucky")
    assert int(unlucky_stats[("WS", "connect")]["Request Count"]) > 3  # reconnected after each bye
    assert int(unlucky_stats[("WS", "connect")]["Failure Count"]) == 0


def test_push_types_and_failure_names() -> None:
    """The helpers of the Locust module, checked in a subprocess: importing locust patches."""
    code = """
from websock_actors.contrib.locust import failure_of, push_type
from websock_actors.errors import ConnectionClosed, HandshakeError, RequestError, RequestTimeout
assert push_type('{"type":"message","text":"x"}') == "message"
assert push_type('{"room": "r", "type": "member_left"}') == "member_left"
assert push_type('{"type":"a\\\\"b"}') == 'a"b'
assert push_type("not json") == push_type("[1]") == "text"
assert push_type(b"{}") == "binary"
names = [str(failure_of(e)) for e in (
    RequestError("not_in_room", "join first"), RequestTimeout(3, 1.0), TimeoutError("open"),
    ConnectionClosed(1006), HandshakeError(503, "busy"), ConnectionRefusedError(111, "refused"),
)]
assert names == ["not_in_room", "timeout", "timeout", "closed 1006", "handshake 503",
                 "ConnectionRefusedError"], names
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
