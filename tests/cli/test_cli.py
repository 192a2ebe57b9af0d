"""The command line's own behaviour (`websock-actors run`, in a subprocess): a port in use is a
one-line error, SIGTERM stops gracefully (SIGHUP restarts: test_restart.py), --ipv6-prefix
reaches the per-IP caps, and the server API's key comes from --api-key-file or $WEBSOCK_ACTORS_API_KEY."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from ..support.raw import RawClient, free_port, refuse, upgrade_request

ROOT = Path(__file__).resolve().parents[2]


def cli(port: int) -> list[str]:
    run = [sys.executable, "-m", "websock_actors", "run", "examples.echo:app"]
    return [*run, "--port", str(port), "--no-patch"]


def test_cli_port_in_use_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(cli(port), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_cli_sigterm_stops_gracefully() -> None:
    port = free_port()
    proc = subprocess.Popen(cli(port), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        with ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(Exception) as closed:
                ws.recv(timeout=10)
            assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1001, closed.value
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.timeout(60)
def test_cli_ipv6_prefix_reaches_the_per_ip_caps() -> None:
    port = free_port()
    flags = ["--max-connections-per-ip", "1", "--forwarded-allow-ips", "127.0.0.1", "--ipv6-prefix", "48"]
    command = [*cli(port), *flags]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        with RawClient(port, extra="X-Forwarded-For: 2001:db8:1:1::1\r\n"):
            # another /64, the same /48: the same client
            second = upgrade_request(extra="X-Forwarded-For: 2001:db8:1:2::1\r\n")
            assert refuse(port, second)[0] == 429
    finally:
        proc.terminate()
        proc.wait(15)


def test_cli_bad_ipv6_prefix_is_a_one_line_error() -> None:
    command = [*cli(free_port()), "--ipv6-prefix", "129"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == "error: ipv6_prefix must be from 1 to 128"


def api_status(port: int, key: str | None) -> int:
    """The status of GET /_api/presence on the CLI's server, with `key` (None: no header)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        conn.request("GET", "/_api/presence?room=lobby", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("source", ["file", "env", "none"])
def test_cli_api_key_from_a_file_or_the_environment(source: str, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", "examples.chat:app", "--port", str(port)]
    command.append("--no-patch")
    env = {k: v for k, v in os.environ.items() if k != "WEBSOCK_ACTORS_API_KEY"}
    if source == "file":
        key_file = tmp_path / "api.key"
        key_file.write_text("from-the-file\n")
        command += ["--api-key-file", str(key_file)]
        key = "from-the-file"
    elif source == "env":
        env["WEBSOCK_ACTORS_API_KEY"] = key = "from-the-env"
    else:
        key = "anything"
    out = subprocess.PIPE
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        if source == "none":
            assert api_status(port, key) == 404  # no key: the API is off
        else:
            assert api_status(port, key) == 200
            assert api_status(port, key + "x") == 401
            assert api_status(port, None) == 401
    finally:
        proc.terminate()
        proc.wait(15)


def test_cli_empty_or_missing_api_key_file_is_a_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    for path, says in ((empty, "is empty"), (tmp_path / "missing.key", "cannot read --api-key-file")):
        command = [*cli(free_port()), "--api-key-file", str(path)]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and says in result.stderr and "Traceback" not in result.stderr
