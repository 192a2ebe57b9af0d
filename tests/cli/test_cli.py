"""The command line's own behaviour (`websock-actors run`, in a subprocess): a port in use is a
one-line error, SIGHUP stops gracefully, and --ipv6-prefix reaches the per-IP caps."""

from __future__ import annotations

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
def test_cli_sighup_stops_gracefully() -> None:
    port = free_port()
    proc = subprocess.Popen(cli(port), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        with ws_connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            proc.send_signal(signal.SIGHUP)
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
