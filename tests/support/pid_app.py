"""A raw app for tests/scale/test_workers.py: answers any message with the serving process's PID,
so that a test sees which worker took its connection. "spin SECONDS" first spins the CPU that
long without ever yielding to the hub, as a handler stuck in a loop would."""

import os
import time

from websock_actors import Connection, WebSocketApp

app = WebSocketApp()


@app.on_message
def pid(conn: Connection, message: str | bytes) -> None:
    if isinstance(message, str) and message.startswith("spin "):
        end = time.monotonic() + float(message.split()[1])
        while time.monotonic() < end:  # no gevent call: the hub never runs meanwhile
            pass
    conn.send(str(os.getpid()))
