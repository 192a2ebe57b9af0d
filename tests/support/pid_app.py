"""A raw app for tests/scale/test_workers.py: answers any message with the serving process's PID,
so that a test sees which worker took its connection."""

import os

from websock_actors import Connection, WebSocketApp

app = WebSocketApp()


@app.on_message
def pid(conn: Connection, message: str | bytes) -> None:
    conn.send(str(os.getpid()))
