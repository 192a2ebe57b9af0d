"""The demo pages in a real browser: headless Chromium (Debian's) driven by Selenium.

Skipped when Chromium or its driver is missing, unless WEBSOCK_ACTORS_REQUIRE_BROWSER=1
(CI sets it, after installing Debian's chromium and chromium-driver).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from examples.chat import app as chat_app
from examples.ticker import app as ticker_app
from websock_actors import tls_context
from websock_actors.client import connect

from .support.apps import fresh_chat_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER))
if MISSING and os.environ.get("WEBSOCK_ACTORS_REQUIRE_BROWSER") == "1":
    raise RuntimeError("the browser tests are required but chromium/chromedriver are missing")

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.skipif(MISSING, reason="chromium and chromedriver are not installed"),
              pytest.mark.timeout(120)]


@pytest.fixture
def browser() -> Iterator[Callable[..., webdriver.Chrome]]:
    """`browser(*flags)` opens one more headless Chromium session (its own profile), with
    these command-line flags added."""
    drivers: list[webdriver.Chrome] = []
    profiles: list[str] = []

    def open_browser(*flags: str) -> webdriver.Chrome:
        profile = tempfile.mkdtemp(prefix="chromium-test-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", f"--user-data-dir={profile}", *flags,
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        drivers.append(driver)
        return driver

    yield open_browser
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


Condition = Callable[[webdriver.Chrome], object]


def wait_for(driver: webdriver.Chrome, condition: Condition, timeout: float = 15) -> object:
    return WebDriverWait(driver, timeout).until(condition)


def log_text(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.ID, "log").text)


def log_lines(driver: webdriver.Chrome) -> list[str]:
    """The log's lines, one per message, as the page wrote them (textContent)."""
    lines: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#log p'), (p) => p.textContent)"
    )
    return lines


@pytest.fixture(scope="module")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """A trustme certificate for 127.0.0.1: (chain file, key file, the base64 SHA-256 of its
    public key, which `--ignore-certificate-errors-spki-list` makes Chromium accept)."""
    folder = tmp_path_factory.mktemp("browser-tls")
    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    chain, key = folder / "chain.pem", folder / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    with open(chain, "wb") as out:
        for blob in leaf.cert_chain_pems:
            out.write(blob.bytes())
    public_key = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_key()
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return str(chain), str(key), base64.b64encode(hashlib.sha256(spki).digest()).decode()


def chat_in_one_room(ann: webdriver.Chrome, bob: webdriver.Chrome, url: str) -> None:
    """Two sessions open the chat page at `url`, join room "browsers", talk and one leaves."""
    for driver, name in ((ann, "ann"), (bob, "bob")):
        driver.get(url)
        wait_for(driver, lambda d: "connected" in log_text(d))
        driver.find_element(By.ID, "name").send_keys(name)
        driver.find_element(By.ID, "room").clear()
        driver.find_element(By.ID, "room").send_keys("browsers")
        driver.find_element(By.ID, "join").click()
        wait_for(driver, lambda d: "you joined browsers" in log_text(d))
    wait_for(ann, lambda d: "bob joined" in log_text(d))
    assert "ann, bob" in ann.find_element(By.ID, "members").text

    ann.find_element(By.ID, "text").send_keys("hello from ann")
    ann.find_element(By.ID, "send").click()
    wait_for(bob, lambda d: "ann: hello from ann" in log_text(d))
    wait_for(ann, lambda d: "ann: hello from ann" in log_text(d))  # the sender sees it too

    bob.find_element(By.ID, "text").send_keys("hi ann <b>not bold</b>")
    bob.find_element(By.ID, "send").click()
    wait_for(ann, lambda d: "bob: hi ann <b>not bold</b>" in log_text(d))  # shown as text, not HTML

    bob.find_element(By.ID, "leave").click()
    wait_for(ann, lambda d: "bob left" in log_text(d))


def ann_on_the_page(ann: webdriver.Chrome, port: int, room: str) -> webdriver.Chrome:
    """The chat page in `ann`'s browser, connected and joined to `room` as "ann"."""
    ann.get(f"http://127.0.0.1:{port}/")
    wait_for(ann, lambda d: "connected" in log_lines(d))
    ann.find_element(By.ID, "name").send_keys("ann")
    ann.find_element(By.ID, "room").clear()
    ann.find_element(By.ID, "room").send_keys(room)
    ann.find_element(By.ID, "join").click()
    wait_for(ann, lambda d: f"you joined {room}" in log_lines(d))
    return ann


def members_named(server: Any, room: str, name: str) -> list[Any]:
    """The server's connections in `room` under `name` (call it in the server's hub)."""
    conns = server.server.connections.values()
    return [c for c in conns if c.state.get("names", {}).get(room) == name]


def test_two_browser_sessions_chat_in_one_room(serve, browser) -> None:
    server = serve(chat_app)
    chat_in_one_room(browser(), browser(), f"http://127.0.0.1:{server.port}/")


def test_two_browser_sessions_chat_over_https_and_wss(serve, browser, tls_certificate) -> None:
    chain, key, spki = tls_certificate
    server = serve(chat_app, ssl_context=tls_context(chain, key))
    # Chromium accepts this one certificate (its key), not any: no --ignore-certificate-errors.
    trust = f"--ignore-certificate-errors-spki-list={spki}"
    ann, bob = browser(trust), browser(trust)
    url = f"https://127.0.0.1:{server.port}/"
    chat_in_one_room(ann, bob, url)
    for driver in (ann, bob):
        assert driver.current_url == url
        assert driver.execute_script("return location.protocol") == "https:"


def test_ticker_prices_arrive_and_the_chart_updates(serve, browser) -> None:
    server = serve(ticker_app)
    driver = browser()
    driver.get(f"http://127.0.0.1:{server.port}/")
    wait_for(driver, lambda d: d.find_element(By.ID, "status").text == "live")
    wait_for(driver, lambda d: int(d.find_element(By.ID, "count").text) >= 8)
    chart = "return document.querySelector('[data-symbol=ACME] canvas').toDataURL()"
    first = driver.execute_script(chart)
    seen = int(driver.find_element(By.ID, "count").text)
    wait_for(driver, lambda d: int(d.find_element(By.ID, "count").text) >= seen + 8)
    assert driver.execute_script(chart) != first  # the line was redrawn with new prices
    price = driver.find_element(By.CSS_SELECTOR, "[data-symbol=ACME] .price").text
    assert float(price) > 0
    points = "return +document.querySelector('[data-symbol=GLOBEX]').dataset.points"
    assert int(driver.execute_script(points)) > 2


def test_the_page_reconnects_and_resumes_without_losing_or_repeating_messages(serve, browser) -> None:
    server = serve(chat_app)
    room = "resumers"

    def resumption_counts() -> tuple[int, int]:
        resumption = server.app.resumption  # the app is the module's: its counters outlive a test
        return resumption.replayed, resumption.resumes["recovered"]

    replayed_before, recovered_before = server.call(resumption_counts)
    ann = ann_on_the_page(browser(), server.port, room)

    with connect(server.url) as bob:
        assert bob.request({"type": "join", "room": room, "name": "bob"})["members"] == ["ann", "bob"]
        wait_for(ann, lambda d: "bob joined" in log_lines(d))

        def anns() -> list[Any]:
            return members_named(server, room, "ann")

        [dropped] = server.call(anns)
        server.call(dropped.abort)  # no close frame (1006): the page's session waits to be resumed
        # Said at once: the page is still waiting its first reconnect delay (>= 250 ms).
        texts = [f"missed {i} of 5" for i in range(1, 6)]
        for text in texts:
            assert bob.request({"type": "say", "room": room, "text": text})["type"] == "said"

        def bobs(text: str) -> Callable[[webdriver.Chrome], bool]:
            return lambda d: any(line.endswith(f"  bob: {text}") for line in log_lines(d))

        wait_for(ann, bobs(texts[-1]))
        # Once this one is shown, everything sent before it has been shown: any repeat too.
        assert bob.request({"type": "say", "room": room, "text": "after the replay"})["type"] == "said"
        wait_for(ann, bobs("after the replay"))

        lines = log_lines(ann)
        said = [line.split("  bob: ", 1)[1] for line in lines if "  bob: " in line]
        assert said == [*texts, "after the replay"]  # each once, in order
        reconnected = [line for line in lines if line.startswith("reconnected")]
        assert len(reconnected) == 1, lines
        match = re.fullmatch(r"reconnected \((\d+) missed messages?\)", reconnected[0])
        assert match is not None, reconnected  # not "(new session)": the session was restored
        missed = int(match.group(1))
        # The replayed messages came before the `resumed` answer, the live ones after it.
        before = lines[: lines.index(reconnected[0])]
        assert sum("  bob: " in line for line in before) == missed
        assert "ann, bob" in ann.find_element(By.ID, "members").text  # the UI state was kept
        assert ann.find_element(By.ID, "text").is_enabled()

        replayed, recovered = server.call(resumption_counts)
        assert recovered == recovered_before + 1
        assert replayed - replayed_before == missed > 0  # the page got them by replay
        [resumed] = server.call(anns)  # the page's new connection, in the room as ann
        assert resumed is not dropped

        # Bob heard nothing of ann's drop (no member_left, no member_joined): only his own messages.
        heard = []
        while True:
            try:
                heard.append(bob.recv_json(timeout=0.5))
            except TimeoutError:
                break
        assert [(m["type"], m["name"], m["text"]) for m in heard] == [
            ("message", "bob", text) for text in [*texts, "after the replay"]
        ]


def test_the_page_joins_again_when_its_session_cannot_be_resumed(serve, browser) -> None:
    server = serve(chat_app)
    room = "newcomers"
    ann = ann_on_the_page(browser(), server.port, room)
    with connect(server.url) as bob:
        assert bob.request({"type": "join", "room": room, "name": "bob"})["members"] == ["ann", "bob"]
        wait_for(ann, lambda d: "bob joined" in log_lines(d))

        def anns() -> list[Any]:
            return members_named(server, room, "ann")

        [first] = server.call(anns)
        # Not resumable (a close frame from the server that is not a drain: the session ends at
        # once) but not final either, as 1008 or 4000 would be: the page comes back, fresh.
        server.call(first.close, 1001, "going away")
        wait_for(ann, lambda d: "reconnected (new session)" in log_lines(d))
        wait_for(ann, lambda d: log_lines(d).count(f"you joined {room}") == 2)  # joined again, as ann
        assert ann.find_element(By.ID, "members").text == f"In {room}: bob, ann"
        [second] = server.call(anns)
        assert second is not first
        heard = [bob.recv_json(timeout=5) for _ in range(2)]
        assert [(m["type"], m["name"]) for m in heard] == [("member_left", "ann"), ("member_joined", "ann")]
        ann.find_element(By.ID, "text").send_keys("back again")
        ann.find_element(By.ID, "send").click()
        assert bob.recv_json(timeout=5)["text"] == "back again"
        assert not any("missed message" in line for line in log_lines(ann))


def bob_said(driver: webdriver.Chrome) -> list[str]:
    """What the page showed of bob's messages, in order."""
    return [line.split("  bob: ", 1)[1] for line in log_lines(driver) if "  bob: " in line]


def test_the_page_on_the_library_survives_a_cut_while_50_messages_are_sent(serve, browser) -> None:
    server = serve(fresh_chat_app())  # without the demo's rate limits: bob says 51 at once
    room = "cut-mid-stream"
    ann = ann_on_the_page(browser(), server.port, room)
    loaded = "return performance.getEntriesByName(location.origin + '/_wsa/client.js').length"
    assert ann.execute_script(loaded) == 1  # the page runs the served library

    with connect(server.url) as bob:
        bob.request({"type": "join", "room": room, "name": "bob"})
        texts = [f"message {i}" for i in range(1, 51)]
        for i, text in enumerate(texts, 1):
            bob.request({"type": "say", "room": room, "text": text})
            if i == 20:
                [dropped] = server.call(lambda: members_named(server, room, "ann"))
                server.call(dropped.abort)  # no close frame: 1006, the session is resumable
        bob.request({"type": "say", "room": room, "text": "end"})
        wait_for(ann, lambda d: bob_said(d)[-1:] == ["end"])
        assert bob_said(ann) == [*texts, "end"]  # each once, in order
        resumed = [line for line in log_lines(ann) if line.startswith("reconnected")]
        assert len(resumed) == 1, resumed
        assert re.fullmatch(r"reconnected \(\d+ missed messages?\)", resumed[0])  # not a new session


def test_two_tabs_of_one_user_both_receive(serve, browser) -> None:
    """One browser, two tabs of the page as "ann": two clients, each with its own socket and
    session; a cut of one tab's connection loses neither tab a message."""
    server = serve(chat_app)
    room = "two-tabs"
    driver = browser()
    ann_on_the_page(driver, server.port, room)
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    ann_on_the_page(driver, server.port, room)
    second = driver.current_window_handle
    assert len(server.call(lambda: members_named(server, room, "ann"))) == 2

    with connect(server.url) as bob:
        bob.request({"type": "join", "room": room, "name": "bob"})
        bob.request({"type": "say", "room": room, "text": "to both"})
        for tab in (first, second):
            driver.switch_to.window(tab)
            wait_for(driver, lambda d: bob_said(d) == ["to both"])
        one = server.call(lambda: members_named(server, room, "ann"))[0]
        server.call(one.abort)
        for text in ("after the cut 1", "after the cut 2"):
            bob.request({"type": "say", "room": room, "text": text})
        for tab in (first, second):
            driver.switch_to.window(tab)
            wait_for(driver, lambda d: bob_said(d)[-1:] == ["after the cut 2"])
            assert bob_said(driver) == ["to both", "after the cut 1", "after the cut 2"]
        assert len(server.call(lambda: members_named(server, room, "ann"))) == 2
