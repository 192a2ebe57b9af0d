"""Raw echo load on `examples.echo`: each user sends a text or a binary message and waits for
the same message to come back, reported as `WS echo text` / `WS echo binary`.

    websock-actors run examples.echo:app --port 8000 --max-connections 20000
    locust -f locustfiles/echo.py --headless -u 1000 -r 100 -t 1m --host ws://127.0.0.1:8000

Over wss:// with a certificate of a private CA, add `--ws-ca-file ca.pem` (the CA's PEM file).
"""

from __future__ import annotations

import os

from locust import between, task

from websock_actors.contrib.locust import WebSocketFailure, WebSocketUser


class EchoUser(WebSocketUser):
    wait_time = between(0.5, 1.5)
    max_queue = 16  # the echoes are read with recv
    report_pushes = False

    def echo(self, name: str, message: str | bytes) -> None:
        if not self.ensure_connected():
            return
        ws = self.ws
        assert ws is not None
        with self.timed(name):
            ws.send(message)
            if ws.recv(timeout=self.request_timeout) != message:
                raise WebSocketFailure("wrong echo")

    @task(3)
    def echo_text(self) -> None:
        self.echo("echo text", f"hello {os.urandom(8).hex()}")

    @task(1)
    def echo_binary(self) -> None:
        self.echo("echo binary", os.urandom(64))
