"""WebSocketUser's settings, each through a real Locust run in a subprocess against a server in
this process: wss:// with a private CA, a path and headers per user, and error replies that
are part of the load (`expect_errors`)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import trustme

from examples.echo import app as echo_app
from websock_actors import Connection, WebSocketApp, tls_context

from .test_locust import ROOT

pytestmark = pytest.mark.timeout(90)


def locust(locustfile: Path | str, url: str, csv_prefix: Path, *extra: str) -> subprocess.Popen[str]:
    """Locust headless in a subprocess, with no CA of the environment's to trust. Its run-time
    timer fires early by about its start-up time (seen: 0.35 s into a 2 s run), so the runs
    here are long enough for a loaded box."""
    env = {key: value for key, value in os.environ.items() if key not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    return subprocess.Popen(
        [
            sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--host", url,
            "--csv", str(csv_prefix), "--json-file", str(csv_prefix), "--only-summary",
            "--loglevel", "WARNING", *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def final(prefix: Path) -> dict[str, dict[str, float]]:
    """The final stats per name (the CSV of stats is rewritten every second, not at the end)."""
    with open(f"{prefix}.json") as f:
        return {entry["name"]: entry for entry in json.load(f)}


def failures(csv_prefix: Path) -> set[tuple[str, str]]:
    """(name, error) of the failures CSV: Locust rewrites it every second, so the last second's
    may be missing (the final counts are in the JSON file)."""
    with open(f"{csv_prefix}_failures.csv", newline="") as f:
        return {(row["Name"], row["Error"]) for row in csv.DictReader(f)}


def test_wss_with_a_private_ca(serve, tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    server = serve(echo_app, ssl_context=tls_context(str(chain), str(key)))
    url = f"wss://127.0.0.1:{server.port}/"
    # The CA on the command line; the CA as a class setting; no CA at all.
    by_option = locust(
        ROOT / "locustfiles" / "echo.py", url, tmp_path / "option", "-u", "5", "-r", "5", "-t", "5s",
        "--ws-ca-file", str(ca_file),
    )  # fmt: skip
    by_class = tmp_path / "by_class.py"
    by_class.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'locustfiles')!r})\n"
        "import echo\n\n"  # not its class: Locust would run every User class it finds here
        "class Trusting(echo.EchoUser):\n"
        f"    ca_file = {str(ca_file)!r}\n"
    )
    by_attribute = locust(by_class, url, tmp_path / "attribute", "-u", "5", "-r", "5", "-t", "5s")
    echo = ROOT / "locustfiles" / "echo.py"
    untrusted = locust(echo, url, tmp_path / "none", "-u", "2", "-r", "2", "-t", "5s")
    for run, prefix in ((by_option, "option"), (by_attribute, "attribute")):
        output, _ = run.communicate(timeout=60)
        assert run.returncode == 0, output
        echoes = final(tmp_path / prefix)
        assert echoes["connect"]["num_requests"] == 5, output
        assert sum(entry["num_requests"] for name, entry in echoes.items() if name.startswith("echo ")) > 0
        assert not any(entry["num_failures"] for entry in echoes.values()), output
    output, _ = untrusted.communicate(timeout=60)
    assert untrusted.returncode == 1, output
    assert failures(tmp_path / "none") <= {("connect", "WebSocketFailure('SSLCertVerificationError')")}
    refused = final(tmp_path / "none")["connect"]
    assert refused["num_failures"] == refused["num_requests"] > 0


BIDDERS = """
import itertools
from functools import cached_property

from locust import constant, task

from websock_actors.contrib.locust import WebSocketFailure, WebSocketUser

numbers = itertools.count()


class Bidder(WebSocketUser):
    wait_time = constant(0.01)
    amount = 0

    @cached_property
    def number(self) -> int:
        return next(numbers)

    def connect_path(self) -> str:
        return f"/bidders/{self.number}?token=t{self.number}"

    def connect_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer b{self.number}"}

    @task
    def bid(self) -> None:
        self.amount += 1   # odd amounts are outbid: bid_too_low, expected
        reply = self.request({"type": "bid", "amount": self.amount}, expect_errors={"bid_too_low"})
        wanted = "bid_placed" if self.amount % 2 == 0 else "error"
        if reply is None or reply["type"] != wanted:
            with self.timed("check"):
                raise WebSocketFailure(f"wrong reply {reply}")
        if self.amount % 5 == 0:  # an error not listed stays a failure
            self.request({"type": "bid", "amount": -1}, expect_errors={"bid_too_low"})
"""


def test_expected_errors_and_a_path_and_headers_per_user(serve, tmp_path: Path) -> None:
    app = WebSocketApp()
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    @app.on_connect
    def connected(conn: Connection) -> None:
        assert conn.request is not None
        with lock:
            seen.append((conn.request.path, dict(conn.request.headers).get("Authorization", "")))

    sent: Counter[str] = Counter()

    @app.on_message
    def bid(conn: Connection, message: str | bytes) -> None:
        request = json.loads(message)
        amount = request["amount"]
        code = "auction_closed" if amount < 0 else "bid_too_low" if amount % 2 else ""
        with lock:
            sent[code or "bid_placed"] += 1
        if code:
            conn.send(json.dumps({"type": "error", "id": request["id"], "code": code}))
        else:
            conn.send(json.dumps({"type": "bid_placed", "id": request["id"]}))

    server = serve(app)
    locustfile = tmp_path / "bidders.py"
    locustfile.write_text(BIDDERS)
    run = locust(locustfile, server.url, tmp_path / "bids", "-u", "3", "-r", "3", "-t", "4s")
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 1, output  # the auction_closed failures
    # Only the error not listed failed; the outbids are successes, reported apart by code.
    assert failures(tmp_path / "bids") <= {("bid", "WebSocketFailure('auction_closed')")}, output
    bids = final(tmp_path / "bids")
    assert set(bids) == {"connect", "bid", "bid (bid_too_low)"}, bids  # no "check": replies as sent
    outbid, placed = bids["bid (bid_too_low)"], bids["bid"]
    assert outbid["num_failures"] == 0 and outbid["total_response_time"] > 0
    # Every reply the server sent, counted where it belongs (but those the end of the run cut
    # short: at most one per user).
    assert sent["bid_too_low"] - 3 <= outbid["num_requests"] <= sent["bid_too_low"] > 0, (sent, bids)
    assert sent["auction_closed"] - 3 <= placed["num_failures"] <= sent["auction_closed"] > 0, (sent, bids)
    assert sent["bid_placed"] - 3 <= placed["num_requests"] - placed["num_failures"] <= sent["bid_placed"]
    # Each user opened its own path, with its own token, in the query and in a header.
    assert sorted(seen) == [(f"/bidders/{n}?token=t{n}", f"Bearer b{n}") for n in range(3)], seen
