"""deploy/nginx-websock-actors.conf, run by Debian's nginx in front of `websock-actors run
--workers 2 --forwarded-allow-ips 127.0.0.1`.

nginx runs from a tmp dir (`-p`, `-c`, `-g 'daemon off; pid ...; error_log ...;'`), no system
service; the site file is the recipe itself, with only its ports (and, for the keepalive
case, its read timeout) changed. Clients connect from 127.0.0.2 and 127.0.0.3 as two remote
clients would, so nginx's $remote_addr differs per client, while nginx reaches the server
from 127.0.0.1, the one trusted proxy. The server's app (tests/support/address_app.py)
answers with the client address it sees.

Skipped without nginx, unless WEBSOCK_ACTORS_REQUIRE_NGINX=1 (CI installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..support.frames import PING, PONG, masked_frame, read_frame
from ..support.proxied import Client, backend, http_get, stop
from ..support.raw import free_port, wait_listening

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE = REPO_ROOT / "deploy" / "nginx-websock-actors.conf"
READ_TIMEOUT = 2  # seconds: the site's proxy_read_timeout, shortened; the server pings every 0.5 s
CLIENT_A, CLIENT_B = "127.0.0.2", "127.0.0.3"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        if os.environ.get("WEBSOCK_ACTORS_REQUIRE_NGINX") == "1":
            pytest.fail("nginx is required (WEBSOCK_ACTORS_REQUIRE_NGINX=1) but not installed")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    return found


@dataclass
class Stack:
    proxy: int  # nginx's port
    server: int  # websock-actors' port


def _site(server_port: int, proxy_port: int) -> str:
    site = SITE.read_text()
    for old, new in (
        ("listen 80;", f"listen 127.0.0.1:{proxy_port};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{server_port};"),
        ("proxy_read_timeout 60s;", f"proxy_read_timeout {READ_TIMEOUT}s;"),
    ):
        assert site.count(old) == 1, f"the recipe has no single {old!r}"
        site = site.replace(old, new)
    return site


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx = _nginx()
    tmp = tmp_path_factory.mktemp("nginx")
    options = ("--max-connections-per-ip", "1", "--ping-interval", "0.5", "--ping-timeout", "5")
    with backend(tmp, *options) as server_port:
        proxy_port = free_port()
        (tmp / "site.conf").write_text(_site(server_port, proxy_port))
        for name in TEMP_PATHS:  # nginx's own defaults are system paths
            (tmp / name).mkdir()
        (tmp / "nginx.conf").write_text(
            "worker_processes 1;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    access_log off;\n"
            + "".join(f"    {name}_temp_path {tmp / name};\n" for name in TEMP_PATHS)
            + f"    include {tmp / 'site.conf'};\n"
            "}\n"
        )
        nginx_log = tmp / "nginx.log"
        args = [
            nginx, "-p", str(tmp), "-e", str(nginx_log), "-c", str(tmp / "nginx.conf"),
            "-g", f"daemon off; pid {tmp / 'nginx.pid'}; error_log {nginx_log} info;",
        ]
        check = subprocess.run([*args, "-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        proxy = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_listening(proxy_port, proxy)
            yield Stack(proxy_port, server_port)
        finally:
            stop(proxy, "nginx", nginx_log)


def test_a_websocket_through_nginx_sees_the_real_client(stack: Stack) -> None:
    client = Client(stack.proxy, CLIENT_B)
    try:
        assert client.status == 101
        assert client.ask()[0] == CLIENT_B
    finally:
        client.close()
    # A forged X-Forwarded-For is kept by nginx, but nginx appends the real peer after it,
    # and the server reads the right-most entry that is not its trusted proxy.
    forged = Client(stack.proxy, CLIENT_B, extra="X-Forwarded-For: 198.51.100.7, 127.0.0.1\r\n")
    try:
        assert forged.status == 101
        assert forged.ask()[0] == CLIENT_B
    finally:
        forged.close()


def test_a_client_on_the_proxys_own_address_can_forge_its_address(stack: Stack) -> None:
    # The limit of trusting 127.0.0.1: a client on the host itself reaches nginx from
    # 127.0.0.1, the entry nginx appends is then a trusted proxy's, and the forged entry
    # before it is read as the client. Remote clients never have that address.
    local = Client(stack.proxy, "127.0.0.1", extra="X-Forwarded-For: 198.51.100.7\r\n")
    try:
        assert local.status == 101
        assert local.ask()[0] == "198.51.100.7"
    finally:
        local.close()


def test_plain_http_through_nginx(stack: Stack) -> None:
    status, headers, body = http_get(stack.proxy, "/healthz", CLIENT_A)
    assert (status, body) == (200, b"ok\n")
    assert "upgrade" not in headers.get("connection", "").lower()
    # Without nginx the same request from the same client: nothing in between changed it.
    assert http_get(stack.server, "/healthz", "127.0.0.1")[2] == b"ok\n"


def test_the_per_ip_cap_counts_the_forwarded_address(stack: Stack) -> None:
    # --max-connections-per-ip 1 under --workers 2 behind a proxy: each worker counts its
    # own connections (no steering by header), so client A holds at most one per worker.
    held: list[Client] = []
    refused: list[tuple[int, dict[str, str]]] = []
    try:
        deadline = time.monotonic() + 20
        while len({client.ask()[1] for client in held}) < 2:  # one on each worker
            assert time.monotonic() < deadline, f"A never reached both workers: {len(refused)} refused"
            client = Client(stack.proxy, CLIENT_A)
            if client.status == 101:
                held.append(client)
            else:
                refused.append((client.status, client.headers))
                client.close()
        assert len(held) == 2
        assert all(status == 429 and "retry-after" in headers for status, headers in refused), refused
        for extra in ("", "X-Forwarded-For: 198.51.100.7\r\n"):  # a forged address does not escape it
            again = Client(stack.proxy, CLIENT_A, extra=extra)
            again.close()
            assert again.status == 429, f"{extra!r}: {again.status}"
        other = Client(stack.proxy, CLIENT_B)  # another client, through the same proxy: admitted
        held.append(other)
        assert other.status == 101
        assert other.ask()[0] == CLIENT_B
        for client in held[:2]:
            assert client.ask()[0] == CLIENT_A
    finally:
        for client in held:
            client.close()


@pytest.mark.timeout(30)
def test_pings_keep_an_idle_websocket_past_the_proxys_read_timeout(stack: Stack) -> None:
    client = Client(stack.proxy, CLIENT_B)
    try:
        assert client.status == 101
        started = time.monotonic()
        pings = 0
        client.sock.settimeout(READ_TIMEOUT + 3)
        while time.monotonic() - started < READ_TIMEOUT * 2:  # idle: only the server's pings
            frame = read_frame(client.sock, client.buffer, read_size=65536)  # EOFError if nginx cut it
            assert frame.opcode == PING, frame
            client.sock.sendall(masked_frame(PONG, frame.payload))
            pings += 1
        assert pings >= 2
        assert client.ask()[0] == CLIENT_B  # still open, both ways
    finally:
        client.close()


def test_the_recipe_passes_nginx_t_unchanged(tmp_path: Path) -> None:
    nginx = _nginx()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{ include {SITE}; }}\n")
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "e.log"), "-c", str(conf),
         "-g", f"pid {tmp_path / 'p.pid'}; error_log {tmp_path / 'e.log'};"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
