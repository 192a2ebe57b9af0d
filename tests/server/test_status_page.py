"""GET /_status, the live status page: off by default, behind its token when on; its WebSocket
pushes a snapshot a second (connections, rooms, rates); from the command line (a generated
token printed once; with --workers, the figures summed); and the page itself in Chromium,
updating live while a client chats (skipped like tests/test_browser.py without Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from websock_actors import ConfigurationError, EndpointOptions, Server, WebSocketError
from websock_actors.client import ClientConnection, connect
from websock_actors.protocol.http import error_response
from websock_actors.server.metrics import HANDLER_BUCKETS
from websock_actors.server.status_page import histogram_quantile, status_point

from ..support.apps import RecordingEchoApp
from ..support.apps import fresh_chat_app as chat_app
from ..support.raw import free_port, refuse, upgrade_request

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"

pytestmark = pytest.mark.timeout(60)


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any, bytes]:
    """(status, headers, body) of a plain HTTP request, errors included."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def viewer(port: int, token: str = TOKEN) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{port}/_status/ws?token={token}")


def status_until(ws: ClientConnection, condition: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
    """The first status message that satisfies `condition`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            status = ws.recv_json(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        assert status["type"] == "status"
        if condition(status):
            return status
        seen.append(status)
    raise AssertionError(f"no such status within {timeout} s; the last ones: {seen[-3:]}")


# -- off by default, the token ---------------------------------------------------------


def test_off_by_default_status_is_the_apps_path(serve) -> None:
    server = serve(chat_app())
    assert server.server.status_page is None
    status, _, _ = get(f"http://127.0.0.1:{server.port}/_status?token={TOKEN}")
    assert status == 404  # the chat app's own answer for a path it has no page at
    with connect(f"ws://127.0.0.1:{server.port}/_status/ws") as ws:  # the app's WebSocket, any path
        assert ws.request({"type": "join", "room": "r", "name": "ann"})["type"] == "joined"


def test_the_page_needs_its_token(serve) -> None:
    server = serve(chat_app(), status_token=TOKEN)
    base = f"http://127.0.0.1:{server.port}"
    for url, headers in (
        (f"{base}/_status", {}),
        (f"{base}/_status?token=wrong", {}),
        (f"{base}/_status?token=", {}),
        (f"{base}/_status", {"Authorization": "Bearer wrong"}),
        (f"{base}/_status", {"Authorization": f"Basic {TOKEN}"}),
        (f"{base}/_status/ws", {}),
    ):
        status, answer_headers, _ = get(url, headers)
        assert status == 401, url
        assert answer_headers["WWW-Authenticate"] == "Bearer"
    for url, headers in (
        (f"{base}/_status?token={TOKEN}", {}),
        (f"{base}/_status", {"Authorization": f"Bearer {TOKEN}"}),
    ):
        status, answer_headers, body = get(url, headers)
        assert status == 200
        assert answer_headers["Content-Type"] == "text/html; charset=utf-8"
        assert answer_headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in answer_headers["Content-Security-Policy"]
        page = body.decode()
        assert "<title>websock_actors status</title>" in page
        assert f'<meta name="status-token" content="{TOKEN}">' in page  # for its WebSocket
        assert "<script src" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        nonce = re.search(r"script-src 'nonce-([^']+)'", answer_headers["Content-Security-Policy"])
        assert nonce is not None and f'<script nonce="{nonce.group(1)}">' in page
    assert get(f"{base}/_status?token={TOKEN}", method="HEAD")[:3:2] == (200, b"")
    assert get(f"{base}/_status?token={TOKEN}", method="POST")[0] == 405
    assert get(f"{base}/_status/ws?token={TOKEN}")[0] == 426  # not an upgrade
    assert get(f"{base}/_status/other?token={TOKEN}")[0] == 404
    assert get(f"{base}/healthz")[0] == 200  # the rest as before
    assert get(f"{base}/")[0] == 200


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        Server(chat_app(), endpoints=EndpointOptions(status_token=" "))


def test_the_websocket_with_a_wrong_or_no_token_gets_401(serve) -> None:
    server = serve(chat_app(), status_token=TOKEN)
    for path in ("/_status/ws", "/_status/ws?token=wrong", f"/_status/ws?token={TOKEN}x"):
        assert refuse(server.port, upgrade_request(path))[0] == 401, path
    with pytest.raises(WebSocketError, match="401"):
        connect(f"ws://127.0.0.1:{server.port}/_status/ws", headers={"Authorization": "Bearer wrong"})


# -- the snapshots -----------------------------------------------------------------------


def test_a_viewer_gets_a_snapshot_a_second_with_connections_and_rooms(serve) -> None:
    app = chat_app()
    server = serve(app, status_token=TOKEN, ping_interval=None)
    with connect(server.url) as ann:
        ann.request({"type": "join", "room": "lobby", "name": "ann"})
        with viewer(server.port) as ws:
            first = ws.recv_json(timeout=5)  # at once: the history (maybe empty) and the figures now
            assert first["type"] == "status"
            assert first["connections"] == 2  # ann and the viewer itself
            assert first["rooms"] == [{"name": "lobby", "size": 1}]  # the viewer is in no room
            assert first["rooms_total"] == 1
            assert first["rooms_scope"] == "server"
            assert first["summed"] is False
            assert first["interval"] == 1.0 and first["window"] == 300.0
            second = ws.recv_json(timeout=5)
            third = ws.recv_json(timeout=5)
            gap = time.monotonic()
            fourth = ws.recv_json(timeout=5)
            gap = time.monotonic() - gap
            assert 0.3 < gap < 3.0  # about one a second
            for status in (second, third, fourth):
                assert len(status["points"]) == 1  # one new point each
                assert status["connections"] == 2
                assert status["rooms"] == [{"name": "lobby", "size": 1}]
            point = fourth["points"][0]
            assert set(point) == {
                "t",
                "connections",
                "messages_per_second",
                "handler_p99",
                "errors",
                "closes",
            }
            assert point["t"] > third["points"][0]["t"]

            for i in range(5):
                ann.request({"type": "say", "room": "lobby", "text": f"m{i}"})
            ann.send('{"type": "nope"}')
            said = [ann.recv_json(timeout=5) for _ in range(6)]  # her 5 messages (to the room), the error
            assert [m["type"] for m in said] == ["message"] * 5 + ["error"]
            # The 6 messages may fall in two intervals: add up the points until all are seen.
            seen: list[dict[str, Any]] = []

            def errors_counted(status: dict[str, Any]) -> bool:
                seen.extend(status["points"])
                return sum(p["errors"].get("unknown_type", 0) for p in seen) >= 1 and any(
                    "say" in p["handler_p99"] for p in seen
                )

            status_until(ws, errors_counted, 5)
            assert sum(p["errors"].get("unknown_type", 0) for p in seen) == 1
            assert sum(p["messages_per_second"] for p in seen) > 0
            assert all(
                0 < p["handler_p99"]["say"] <= HANDLER_BUCKETS[-1] for p in seen if "say" in p["handler_p99"]
            )
        with connect(server.url) as bob:
            bob.request({"type": "join", "room": "lobby", "name": "bob"})
            with viewer(server.port) as ws:
                history = ws.recv_json(timeout=5)
                assert len(history["points"]) >= 4  # a new viewer gets the points so far
                assert history["rooms"] == [{"name": "lobby", "size": 2}]
                bob.close()
                closes = list(history["points"])

                def both_closes_counted(status: dict[str, Any]) -> bool:  # the first viewer's, bob's
                    closes.extend(status["points"])
                    return sum(p["closes"].get("1000", 0) for p in closes) >= 2

                closed = status_until(ws, both_closes_counted, 5)
                assert sum(sum(p["closes"].values()) for p in closes) == 2
                assert closed["rooms"] == [{"name": "lobby", "size": 1}]


def test_viewers_bypass_the_apps_hooks_and_broadcasts(serve) -> None:
    """The user's on_request (authentication) is not asked about a viewer, and a server-wide
    broadcast does not reach the page."""
    app = RecordingEchoApp()
    server = serve(app, status_token=TOKEN, on_request=lambda request: error_response(403, "nobody"))
    with pytest.raises(WebSocketError, match="403"):
        connect(server.url)
    with connect(
        f"ws://127.0.0.1:{server.port}/_status/ws", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as ws:
        status = ws.recv_json(timeout=5)
        assert status["rooms"] is None and status["rooms_scope"] is None  # a raw app has no rooms
        assert status["connections"] == 1
        assert server.call(server.server.broadcast, "to everyone") == 0
        ws.send("ignored")
        assert ws.recv_json(timeout=5)["type"] == "status"
    assert app.conns == []  # never reached the application


def test_the_quantile_and_the_point_come_from_the_interval_only() -> None:
    counts = [0] * (len(HANDLER_BUCKETS) + 1)
    assert histogram_quantile(0.99, counts) is None
    counts[3] = 100  # all in (0.0005, 0.001]
    assert histogram_quantile(0.99, counts) == pytest.approx(0.0005 + 0.0005 * 0.99)
    counts[-1] = 50  # a third above the last bound: the p99 is in +Inf
    assert histogram_quantile(0.99, counts) == HANDLER_BUCKETS[-1]
    before = {
        "websock_messages_received_total": {"say": 10, "join": 2},
        "websock_handler_seconds": {"say": {"counts": [10] + [0] * len(HANDLER_BUCKETS), "sum": 0.001}},
        "websock_error_replies_total": {"rate_limited": 3},
        "websock_closes_total": {"1000": 4},
    }
    slow = [10] + [0] * len(HANDLER_BUCKETS)
    slow[9] = 5  # 5 new observations in (0.05, 0.1]
    now = {
        "websock_connections": {"": 7},
        "websock_messages_received_total": {"say": 30, "join": 2, "_unknown": 2},
        "websock_handler_seconds": {
            "say": {"counts": slow, "sum": 0.5},
            "join": {"counts": [0] * 15, "sum": 0},
        },
        "websock_error_replies_total": {"rate_limited": 3, "unknown_type": 2},
        "websock_closes_total": {"1000": 4},
    }
    point = status_point(now, before, 2.0, 1234.5)
    assert point == {
        "t": 1234.5,
        "connections": 7,
        "messages_per_second": 11.0,  # 22 in 2 s
        "handler_p99": {"say": pytest.approx(0.05 + 0.05 * 0.99)},  # the old fast ones do not count
        "errors": {"unknown_type": 2},
        "closes": {},
    }


# -- the command line ------------------------------------------------------------------------


def _start(*arguments: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "websock_actors",
        "run",
        *arguments,
        "--no-patch",
        "--ping-interval",
        "0",
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _line_with(proc: subprocess.Popen[str], text: str, before: str | None = None) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, f"the server ended before saying {text!r}"
        assert before is None or before not in line, f"{before!r} came before {text!r}"
        if text in line:
            return line.strip()


def test_the_command_line_prints_a_generated_token_once() -> None:
    proc = _start("examples.chat:app", "--port", "0", "--status-page")
    try:
        _line_with(proc, " serving ")
        line = _line_with(proc, "status page at ")
        match = re.fullmatch(
            r"websock-actors: status page at (http://127\.0\.0\.1:\d+/_status)\?token=(\S+)", line
        )
        assert match is not None, line
        url, token = match.groups()
        assert len(token) >= 32
        assert get(f"{url}?token={token}")[0] == 200
        assert get(f"{url}?token=wrong")[0] == 401
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_status_token_needs_status_page() -> None:
    from websock_actors.cli import main

    with pytest.raises(SystemExit, match="--status-token needs --status-page"):
        main(["run", "examples.chat:app", "--status-token", "x"])


@pytest.mark.timeout(60)
def test_with_two_workers_every_page_shows_the_sum() -> None:
    port = free_port()
    proc = _start(
        "tests.support.pid_app:app", "--port", str(port), "--workers", "2",
        "--status-page", "--status-token", TOKEN,
    )
    clients: list[ClientConnection] = []
    try:
        line = _line_with(proc, "status page at ", before=" serving ")  # once, by the master
        assert (
            line == f"websock-actors: status page at http://127.0.0.1:{port}/_status"
        )  # a given token: not shown
        served = 0
        while served < 2:
            served += " serving " in _line_with(proc, " serving ")
        pids = set()
        while len(pids) < 2 or len(clients) < 6:  # both workers hold some of them
            assert len(clients) < 40, "the kernel put every connection on one worker"
            ws = connect(f"ws://127.0.0.1:{port}/")
            clients.append(ws)
            ws.send("which")
            pids.add(ws.recv(timeout=5))
        with viewer(port) as page:
            status = status_until(page, lambda s: s["connections"] == len(clients) + 1, 10)
            assert status["summed"] is True and status["rooms"] is None
    finally:
        for ws in clients:
            ws.close()
        proc.terminate()
        assert proc.wait(20) == 0


# -- the page in Chromium ------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER))
if MISSING and os.environ.get("WEBSOCK_ACTORS_REQUIRE_BROWSER") == "1":
    raise RuntimeError("the browser tests are required but chromium/chromedriver are missing")


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium session with a profile of its own (as in tests/test_browser.py)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(MISSING, reason="chromium and chromedriver are not installed")
@pytest.mark.timeout(120)
def test_the_page_renders_and_updates_live_in_chromium(serve, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def wait_for(condition: Callable[[Any], object], timeout: float = 15) -> object:
        return WebDriverWait(browser, timeout).until(condition)

    def shown(selector: str) -> str | None:
        """The text of the first match, read in one script: the page redraws its table and legends
        every second, so an element found in one WebDriver call can be gone by the next."""
        script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;"
        return browser.execute_script(script, selector)  # type: ignore[no-any-return]

    def text(element_id: str) -> str:
        return shown(f"#{element_id}") or ""

    def room_size(driver: Any, room: str) -> str | None:
        return shown(f'#rooms tr[data-room="{room}"] td.size')

    server = serve(chat_app(), status_token=TOKEN, ping_interval=None)
    browser.get(f"http://127.0.0.1:{server.port}/_status?token={TOKEN}")
    assert browser.title == "websock_actors status"
    wait_for(lambda d: text("state") == "live")
    for chart in ("connections", "messages", "p99", "errors", "closes"):
        assert browser.find_element(By.CSS_SELECTOR, f"#chart-{chart} svg")
    wait_for(lambda d: text("connections") == "1")  # the page's own WebSocket
    assert browser.find_elements(By.CSS_SELECTOR, "#rooms tbody tr") == []

    with connect(server.url) as ann, connect(server.url) as bob:
        ann.request({"type": "join", "room": "status-room", "name": "ann"})
        for i in range(5):
            ann.request({"type": "say", "room": "status-room", "text": f"hello {i}"})
        wait_for(lambda d: text("connections") == "3")
        wait_for(lambda d: room_size(d, "status-room") == "1")
        messages = "return +document.getElementById('chart-messages').dataset.max"
        wait_for(lambda d: d.execute_script(messages) > 0)  # a non-zero point on the chart
        drawn = "return document.querySelectorAll('#chart-messages svg path').length"
        assert browser.execute_script(drawn) == 1
        wait_for(lambda d: "say" in (shown("#chart-p99 .legend") or ""))
        bob.request({"type": "join", "room": "status-room", "name": "bob"})
        wait_for(lambda d: room_size(d, "status-room") == "2")
    wait_for(lambda d: text("connections") == "1")
    wait_for(lambda d: room_size(d, "status-room") is None)  # both left: the room is gone
    wait_for(lambda d: "1000" in (shown("#chart-closes .legend") or ""))
