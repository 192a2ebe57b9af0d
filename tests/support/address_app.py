"""A raw app for tests/deploy/test_nginx.py: answers any message with the client's address as
the server sees it (behind a trusted proxy, the forwarded one) and the serving process's PID."""

import os

from websock_actors import Connection, WebSocketApp

app = WebSocketApp()


@app.on_message
def address(conn: Connection, message: str | bytes) -> None:
    conn.send(f"{conn.address[0]} {os.getpid()}")
