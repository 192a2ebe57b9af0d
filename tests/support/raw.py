"""A minimal raw WebSocket client for tests: plain blocking sockets, frames built by hand.

Independent of the package's own codec, so that the server is checked against an
implementation it does not share code with. Also a few socket helpers (read to EOF,
read an HTTP answer, pick a free port).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct

from .apps import upgrade_request

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def masked_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One client frame, masked with a random key."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        header = bytes((first, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    mask = os.urandom(4)
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return header + mask + masked


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
        head, _, self._buffer = buffer.partition(b"\r\n\r\n")
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

    def _need(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("connection closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; EOFError at end of stream."""
        first, second = self._need(2)
        assert not second & 0x80, "server frames must not be masked"
        assert first & 0x80, "this helper does not reassemble fragments"
        assert not first & 0x70, "reserved bits set"
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._need(8))
        return first & 0x0F, self._need(n)

    def recv_until(self, opcode: int) -> bytes:
        """Skip frames until one with `opcode`; return its payload."""
        while True:
            op, payload = self.recv_frame()
            if op == opcode:
                return payload

    def expect_eof(self) -> None:
        """The server closes the TCP connection (a socket timeout propagates)."""
        rest = self._buffer
        self._buffer = b""
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


def close_code(payload: bytes) -> int:
    assert len(payload) >= 2, f"close frame without a code: {payload!r}"
    return int(struct.unpack("!H", payload[:2])[0])
