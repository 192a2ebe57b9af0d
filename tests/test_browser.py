"""The demo pages in a real browser: headless Chromium (Debian's) driven by Selenium.

Skipped when Chromium or its driver is missing, unless WEBSOCK_ACTORS_REQUIRE_BROWSER=1
(CI sets it, after installing Debian's chromium and chromium-driver).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest

from examples.chat import app as chat_app
from examples.ticker import app as ticker_app

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
def browser() -> Iterator[Callable[[], webdriver.Chrome]]:
    """`browser()` opens one more headless Chromium session (its own profile)."""
    drivers: list[webdriver.Chrome] = []
    profiles: list[str] = []

    def open_browser() -> webdriver.Chrome:
        profile = tempfile.mkdtemp(prefix="chromium-test-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic", f"--user-data-dir={profile}",
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


def test_two_browser_sessions_chat_in_one_room(serve, browser) -> None:
    server = serve(chat_app)
    url = f"http://127.0.0.1:{server.port}/"
    ann, bob = browser(), browser()
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
