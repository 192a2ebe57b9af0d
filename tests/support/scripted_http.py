"""An HTTP/1.1 server on 127.0.0.1 whose answers a test scripts, for what the real server
cannot be made to do on cue: close a kept connection while it is idle, or after reading a
request without answering it. Each request is recorded with the connection it came on."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "ScriptedHttp"]


@dataclass
class Answer:
    """What to do with the next request: answer `status` with `body` (JSON), then keep the
    connection or `close` it (without a Connection: close header), or `drop` it unanswered."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"deliveries": 1})
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    drop: bool = False


class ScriptedHttp:
    def __init__(self, *script: Answer) -> None:
        self.script = list(script)
        self.requests: list[tuple[int, str, dict[str, str], bytes]] = []  # connection, path, headers, body
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._closed = threading.Semaphore(0)
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()

    def close(self) -> None:
        self._listener.close()

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Until the server has closed one more connection."""
        assert self._closed.acquire(timeout=timeout), "no connection closed"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        try:
            self._answer(sock, number)
        finally:
            sock.close()
            self._closed.release()

    def _answer(self, sock: socket.socket, number: int) -> None:
        if True:
            reader = sock.makefile("rb")
            while True:
                line = reader.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                headers: dict[str, str] = {}
                while (header := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", "0")))
                with self._lock:
                    self.requests.append((number, path, headers, body))
                    answer = self.script.pop(0) if self.script else Answer()
                if answer.drop:
                    return
                data = json.dumps(answer.body).encode()
                head = f"HTTP/1.1 {answer.status} X\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(data)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in answer.headers) + "\r\n"
                sock.sendall(head.encode() + data)
                if answer.close:
                    return
