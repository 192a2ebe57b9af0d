"""Raw sockets for tests: a minimal WebSocket client, upgrade requests, HTTP answers.

Plain blocking sockets, with frames written and read by `frames.py`'s hand-written codec, so
that the server is checked against an implementation it does not share code with. Also a
few socket helpers (a free port, read to EOF, wait until a port listens).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import subprocess
import time

from .frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    close_code,
    masked_frame,
    read_frame,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

UPGRADE_TEMPLATE = (
    "GET {path} HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "{extra}\r\n"
)


def upgrade_request(path: str = "/", extra: str = "", key: str | None = None) -> bytes:
    """A valid upgrade request; `extra` adds header lines ending in CRLF."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    return UPGRADE_TEMPLATE.format(path=path, key=key, extra=extra).encode()


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes; return everything it sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Poll until the port accepts TCP (the process starts in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def read_until_eof(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes; a socket timeout propagates (TimeoutError)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-cased names, body) of a raw HTTP answer."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP head in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def refuse(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Send `request`, require the server to answer and then close the TCP connection.

    Raises TimeoutError when the server keeps the connection open after answering.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = read_until_eof(sock)
    return split_response(data)


def closed_unanswered(
    port: int, request: bytes | None = None, host: str = "127.0.0.1", timeout: float = 5.0
) -> bool:
    """Connect (from `host`), send `request` if any, and tell whether the server closed the
    connection without answering a byte: what a socket refused at accept time gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(host, 0)) as sock:
        try:
            if request is not None:
                sock.sendall(request)
            return read_until_eof(sock) == b""
        except (BrokenPipeError, ConnectionResetError):
            return True


class RawClient:
    """A WebSocket client on a plain socket: masked frames out, frames parsed by hand in."""

    def __init__(self, port: int, extra: str = "", timeout: float = 5.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before connecting, so the advertised window stays small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(upgrade_request(extra=extra, key=key))
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"server closed during the handshake: {buffer!r}")
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        self._buffer = bytearray(rest)
        status, headers, _ = split_response(head + b"\r\n\r\n")
        self.status = status
        self.headers = headers
        if status != 101:
            raise AssertionError(f"handshake answered {status}: {buffer!r}")
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert headers["sec-websocket-accept"] == expected

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.sock.sendall(masked_frame(opcode, payload, fin))

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode())

    def send_close(self, code: int, reason: str = "") -> None:
        self.send_frame(CLOSE, struct.pack("!H", code) + reason.encode())

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; EOFError at end of stream."""
        frame = read_frame(self.sock, self._buffer, read_size=1 << 20)
        assert not frame.masked, "server frames must not be masked"
        assert frame.fin, "this helper does not reassemble fragments"
        assert not frame.rsv, "reserved bits set"
        return frame.opcode, frame.payload

    def recv_until(self, opcode: int) -> bytes:
        """Skip frames until one with `opcode`; return its payload."""
        while True:
            op, payload = self.recv_frame()
            if op == opcode:
                return payload

    def expect_eof(self) -> None:
        """The server closes the TCP connection (a socket timeout propagates)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except ConnectionResetError:
            pass
        assert rest == b"", f"unexpected bytes before EOF: {rest[:100]!r}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "RawClient",
    "close_code",
    "closed_unanswered",
    "free_port",
    "masked_frame",
    "raw_exchange",
    "read_until_eof",
    "refuse",
    "split_response",
    "status_of",
    "upgrade_request",
    "wait_listening",
]
