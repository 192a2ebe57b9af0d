"""deploy/Caddyfile, run by Debian's Caddy in front of `websock-actors run --workers 2
--forwarded-allow-ips 127.0.0.1`, as tests/deploy/test_nginx.py runs the nginx site.

Caddy runs from a tmp dir with the recipe's site address changed to plain HTTP on a free
port of 127.0.0.1, for any Host (no certificate to fetch), its admin endpoint off. Skipped
without `caddy` (CI does not install it; the nginx recipe is the one CI requires).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.proxied import Client, backend, http_get, stop
from ..support.raw import free_port, wait_listening

REPO_ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = REPO_ROOT / "deploy" / "Caddyfile"
CLIENT_A, CLIENT_B = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    caddy = shutil.which("caddy")
    if caddy is None:
        if os.environ.get("WEBSOCK_ACTORS_REQUIRE_NGINX") == "1":  # CI installs both proxies
            pytest.fail("caddy is required (WEBSOCK_ACTORS_REQUIRE_NGINX=1) but not installed")
        pytest.skip("caddy is not installed (Debian: apt-get install caddy)")
    tmp = tmp_path_factory.mktemp("caddy")
    with backend(tmp, "--max-connections-per-ip", "1") as server_port:
        port = free_port()
        site = CADDYFILE.read_text()
        for old, new in (
            ("chat.example.com {", f"http://:{port} {{\n\tbind 127.0.0.1"),  # any Host, plain HTTP
            ("127.0.0.1:8000", f"127.0.0.1:{server_port}"),
        ):
            assert site.count(old) == 1, f"the recipe has no single {old!r}"
            site = site.replace(old, new)
        (tmp / "Caddyfile").write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
        env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data"), "XDG_CONFIG_HOME": str(tmp / "config")}
        log = tmp / "caddy.log"
        with open(log, "wb") as out:
            args = [caddy, "run", "--config", str(tmp / "Caddyfile"), "--adapter", "caddyfile"]
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, process)
            yield port
        finally:
            stop(process, "caddy", log)


def test_a_websocket_through_caddy_sees_the_real_client(proxy: int) -> None:
    for extra in ("", "X-Forwarded-For: 198.51.100.7\r\n"):  # a forged header changes nothing
        client = Client(proxy, CLIENT_B, extra=extra)
        try:
            assert client.status == 101
            assert client.ask()[0] == CLIENT_B
        finally:
            client.close()


def test_plain_http_through_caddy(proxy: int) -> None:
    status, _, body = http_get(proxy, "/healthz", CLIENT_A)
    assert (status, body) == (200, b"ok\n")


def test_the_per_ip_cap_counts_the_forwarded_address(proxy: int) -> None:
    # Cap 1 under 2 workers: A gets one connection per worker at most (each counts its own).
    held: list[Client] = []
    try:
        statuses = []
        for _ in range(3):
            client = Client(proxy, CLIENT_A)
            statuses.append(client.status)
            held.append(client)
        assert statuses.count(101) <= 2 and set(statuses) <= {101, 429}, statuses
        assert 429 in statuses
        other = Client(proxy, CLIENT_B)
        held.append(other)
        assert other.status == 101 and other.ask()[0] == CLIENT_B
    finally:
        for client in held:
            client.close()
