"""A server behind a real reverse proxy, for tests/deploy/: the backend process, clients that
connect from a chosen loopback address (as distinct remote clients would), and stopping.

The backend is `websock-actors run tests.support.address_app:app --workers 2` trusting
127.0.0.1 as its proxy; its READY=1 on a notify socket (server/systemd_notify.py) says when
both workers listen, so no polling is needed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .frames import CLOSE, PING, PONG, TEXT, masked_frame, read_frame
from .raw import free_port, split_response, upgrade_request

__all__ = ["Client", "backend", "http_get", "stop"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def stop(proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """SIGTERM (SIGKILL after 20 s), then print its log for a failing test's report."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"--- {what}\n{log.read_text(errors='replace') if log.exists() else ''}")


@contextmanager
def backend(tmp: Path, *options: str) -> Iterator[int]:
    """The server's port, once every worker listens."""
    port = free_port()
    log = tmp / "server.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify.sock"))
    notify.settimeout(30)
    command = [
        sys.executable, "-m", "websock_actors", "run", "tests.support.address_app:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
        "--forwarded-allow-ips", "127.0.0.1", *options,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NOTIFY_SOCKET": str(tmp / "notify.sock")}
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert notify.recv(100) == b"READY=1"
        yield port
    finally:
        notify.close()
        stop(server, "websock-actors", log)


class Client:
    """A WebSocket opened to `port` from the loopback address `source`; answers pings."""

    def __init__(self, port: int, source: str, extra: str = "") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        self.sock.sendall(upgrade_request(extra=extra))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)  # byte by byte: nothing of the frames after it is taken
            if not chunk:
                raise EOFError(f"closed during the handshake: {head!r}")
            head += chunk
        self.status, self.headers, _ = split_response(head)
        self.buffer = bytearray()

    def ask(self) -> tuple[str, int]:
        """The (client address, worker pid) the server answers with."""
        self.sock.sendall(masked_frame(TEXT, b"who"))
        while True:
            frame = read_frame(self.sock, self.buffer, read_size=65536)
            if frame.opcode == PING:
                self.sock.sendall(masked_frame(PONG, frame.payload))
            elif frame.opcode == TEXT:
                address, pid = frame.payload.decode().split()
                return address, int(pid)

    def close(self) -> None:
        """A closing handshake, then the end of the stream: once the proxy ends its side, the
        server has ended the connection, so its per-IP slot is free for the client's next one."""
        try:
            if self.status == 101:
                self.sock.sendall(masked_frame(CLOSE, (1000).to_bytes(2, "big")))
                while self.sock.recv(65536):
                    pass
        except OSError:
            pass  # gone already (or no end within the socket's timeout): nothing to wait for
        finally:
            self.sock.close()


def http_get(
    port: int, path: str, source: str, host: str = "chat.example.com"
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one GET with a Content-Length answer."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed before an answer: {data!r}"
            data += chunk
        status, headers, body = split_response(data)
        while len(body) < int(headers.get("content-length", "0")):
            body += sock.recv(65536)
    return status, headers, body
