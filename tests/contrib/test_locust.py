"""The Locust users of locustfiles/ against real servers, Locust in subprocesses (it
monkey-patches the process it runs in), the servers in this one. Asserts on Locust's CSV stats.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from websock_actors import App, CloseCode, Connection, ResumePolicy, WebSocketApp

from ..support.apps import fresh_chat_app

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat.py"

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


def error_report(output: str) -> set[tuple[str, str]]:
    """(name, error) of the error report Locust prints when it quits: final, where the failures
    CSV, rewritten every second, may miss the last second's (or all, in a short run)."""
    report = output.partition("Error report")[2]
    return set(re.findall(r"^\s*\d+\s+WS (.+?): (\S.*?)\s*$", report, re.MULTILINE))


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

    # Its users share one address, so the demo's rate limits would be theirs together.
    chat_server, echo_server = serve(fresh_chat_app()), serve(echo)
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
    assert "session" not in pushes  # the chat's first message (resumption) is the client's own
    assert "pushes received: message" in chat_output
    # Pushes are not requests: the Aggregated row is the requests' own figure.
    assert not [key for key in chat if key[0] == "PUSH"]
    requests = sum(int(row["Request Count"]) for key, row in chat.items() if key[0] == "WS")
    assert int(chat[("", "Aggregated")]["Request Count"]) == requests
    assert int(chat[("", "Aggregated")]["Failure Count"]) == 0

    echoes = stats(tmp_path / "echo")
    for name in ("connect", "echo text", "echo binary"):
        assert int(echoes[("WS", name)]["Request Count"]) > 0, (name, echo_output)
    assert int(echoes[("WS", "connect")]["Request Count"]) == 20  # one per user: the 20 closes below
    assert int(echoes[("", "Aggregated")]["Failure Count"]) == 0
    # Stopping closed every connection cleanly.
    assert all_closed.wait(10)
    assert closes == [1000] * 20
    assert echo_server.call(lambda: len(echo_server.server.connections)) == 0


def cutting_chat(after: int, **policy: float) -> App:
    """A fresh copy of the chat demo whose server cuts every connection (a resumed one is a
    new one) right behind its reply to the connection's `after`-th message: a close with
    1012, a restarting server's, after which the session is kept for a resume. Sent with the
    reply, it is read with it: no request is in flight when it comes, nor sent after it."""
    name = "chat_cut_by_the_server"
    spec = importlib.util.spec_from_file_location(name, CHAT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its models' annotations are resolved in it
    spec.loader.exec_module(module)
    app: App = module.app
    assert app.resumption is not None, "the chat demo has resumption on"
    if policy:
        app.resumption.policy = ResumePolicy(**{"window": 120, "history": 1000, "grace": 10, **policy})
    # Its users share one address: the demo's rate limits would be theirs together.
    app.rate_limit, app.type_rate_limits, app.join_rate = None, {}, None
    handle = app.handle_message
    received: dict[int, int] = {}  # connection id -> its messages so far

    def handle_message(conn: Connection, message: str | bytes) -> None:
        handle(conn, message)  # replies at once: no handler of the chat runs in an actor
        count = received[conn.id] = received.get(conn.id, 0) + 1
        if count == after:
            conn.close(CloseCode.SERVICE_RESTART, "cut")

    app.handle_message = handle_message  # this instance's own
    return app


def test_chat_users_resume_their_sessions(serve, tmp_path: Path) -> None:
    app = cutting_chat(after=4)
    resumption = app.resumption
    assert resumption is not None
    server = serve(app)
    # 10 users in rooms of 5, each connection cut after 4 messages: a cut per user about every
    # second, resumed at its next action with what its room said meanwhile. The final stats
    # come from --json-file: the CSV is rewritten every second, not at the end.
    run = locust(
        "chat.py", server.url, tmp_path / "chat",
        "-u", "10", "-r", "10", "-t", "4s", "--room-size", "5", "--think-time", "0.2", "--resume",
        "--json-file", str(tmp_path / "final"),
    )  # fmt: skip
    output = finish(run)  # exit code 0: no failure at all, of `WS order` (a gap, a repeat) either
    with open(tmp_path / "final.json") as f:
        final = {(entry["method"], entry["name"]): entry for entry in json.load(f)}
    assert {name for _, name in final} == {"connect", "join", "say", "leave", "resume"}, final.keys()
    assert not any(entry["num_failures"] for entry in final.values()), output
    assert final[("WS", "connect")]["num_requests"] == 10  # resumed every time, never afresh
    # and on_connect did not run again: a user joined when it connected, then only after leaving
    assert final[("WS", "join")]["num_requests"] <= 10 + final[("WS", "leave")]["num_requests"], final
    resume = final[("WS", "resume")]
    assert resume["num_requests"] >= 10, output
    assert resume["total_response_time"] > 0
    # The server recovered every session it was asked for, and replayed what was missed...
    counts = server.call(lambda: dict(resumption.resumes))
    assert (counts["partial"], counts["fresh"]) == (0, 0), counts
    # Locust reported every resume the server answered, but those cut short by the end of the
    # run (a user stopped while its resume was on its way: at most one per user)
    assert resume["num_requests"] <= counts["recovered"] <= resume["num_requests"] + 10, counts
    assert server.call(lambda: resumption.replayed) > 0
    # ...which the users found in order, with the rest of their rooms' messages: every push is
    # numbered (members joining and leaving too), and all are checked but the first of a
    # room after each join.
    with open(tmp_path / "chat_pushes.csv", newline="") as f:
        pushes = {row["Type"]: int(row["Count"]) for row in csv.DictReader(f)}
    assert set(pushes) <= {"message", "member_joined", "member_left"}, pushes  # no session, no resumed
    match = re.search(r"room messages in order: (\d+)", output)
    assert match is not None, output
    numbered, joins = sum(pushes.values()), final[("WS", "join")]["num_requests"]
    assert numbered - joins <= int(match[1]) <= numbered, (match[1], pushes, joins)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # The sessions expire before the users come back: each resume starts afresh, and
        # on_connect joins the room again.
        ({"window": 0.01, "grace": 0.01}, {("resume", "session not restored")}),
        # One message of history per room: what a busy room said meanwhile is mostly gone,
        # which the users' order check sees too.
        ({"history": 1}, {("resume", "messages lost"), ("order", "gap")}),
    ],
    ids=["expired", "trimmed"],
)
def test_resumes_that_fail(
    serve, tmp_path: Path, policy: dict[str, float], expected: set[tuple[str, str]]
) -> None:
    app = cutting_chat(after=4, **policy)
    resumption = app.resumption
    assert resumption is not None
    server = serve(app)
    run = locust(
        "chat.py", server.url, tmp_path / "chat",
        "-u", "10", "-r", "10", "-t", "3s", "--room-size", "5", "--think-time", "0.2", "--resume",
        "--json-file", str(tmp_path / "final"),
    )  # fmt: skip
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 1, output  # failures
    with open(tmp_path / "final.json") as f:
        final = {(entry["method"], entry["name"]): entry for entry in json.load(f)}
    with open(tmp_path / "chat_failures.csv", newline="") as f:
        failures = {(row["Name"], row["Error"]) for row in csv.DictReader(f)}
    assert failures == {(name, f"WebSocketFailure({error!r})") for name, error in expected}, output
    failed = {name for (_, name), entry in final.items() if entry["num_failures"]}
    assert failed == {name for name, _ in expected}, final
    assert final[("WS", "connect")]["num_requests"] == 10  # a failed resume goes on, never reconnects
    resumes = final[("WS", "resume")]["num_requests"]
    counts = server.call(lambda: dict(resumption.resumes))
    # As above: a resume the server answered can be cut short, unreported, by the end of the run.
    assert resumes <= sum(counts.values()) <= resumes + 10, counts
    if "window" in policy:
        # Every one fresh, and after each the user joined its room again (on_connect): no
        # `say` failed as not_in_room.
        assert counts["recovered"] == counts["partial"] == 0, counts
    else:
        assert counts["partial"] > 0 and counts["fresh"] == 0, counts


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
    assert error_report(output) == {
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
