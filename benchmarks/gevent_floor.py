"""The least a gevent server can do for the typed echo: the floor our typed path is held to.

    taskset -c 0 .venv/bin/python benchmarks/gevent_floor.py PORT

It answers `{"type":"echo","id":N,"text":...}` as the typed peers of the side-by-side bench do
(a `TypeAdapter` over a tagged union, a reply model, `model_dump_json`) in the read watcher's
callback of gevent's hub, with just enough WebSocket to do that: the opening handshake, one
whole short text frame per read, a short reply frame. No error handling, no limits, no close
handshake: a measuring instrument, never a server. Drive it with `typed_load.js echo --mode
typed` on the other core and read its CPU time from /proc; the difference from our server is
what our own code between the read and the write costs (docs/benchmarks.md).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import sys
from typing import Annotated, Any, Literal

import gevent
from gevent import get_hub
from pydantic import BaseModel, Field, TypeAdapter

from websock_actors.protocol.frames import apply_mask  # the same compiled XOR as the server

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEADERS = [bytes((0x81, n)) for n in range(126)]


class Echo(BaseModel):
    type: Literal["echo"]
    id: int | None = None
    text: str


class Echoed(BaseModel):
    type: Literal["echoed"] = "echoed"
    id: int | None = None
    text: str


Incoming: TypeAdapter[Any] = TypeAdapter(Annotated[Echo, Field(discriminator="type")])


def answer(text: bytes) -> bytes:
    msg = Incoming.validate_json(text)
    return Echoed(id=msg.id, text=msg.text).model_dump_json().encode()


def main(port: int) -> None:
    loop = get_hub().loop
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    watchers: dict[int, Any] = {}

    def drop(sock: socket.socket) -> None:
        watchers.pop(sock.fileno()).stop()
        sock.close()

    def on_message(sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data or data[0] != 0x81:  # the end, a close or anything else: gone
            drop(sock)
            return
        size = data[1] & 0x7F
        reply = answer(apply_mask(data[6 : 6 + size], data[2:6]))
        sock.send(HEADERS[len(reply)] + reply)

    def on_handshake(sock: socket.socket) -> None:
        request = sock.recv(65536)
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))  # fmt: skip
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        sock.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
        watcher = watchers[sock.fileno()]
        watcher.stop()
        watcher.start(on_message, sock)

    def on_accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            watcher = watchers[sock.fileno()] = loop.io(sock.fileno(), 1)
            watcher.start(on_handshake, sock)

    accepting = loop.io(listener.fileno(), 1)
    accepting.start(on_accept)
    print(f"gevent_floor: ws://127.0.0.1:{port}/", flush=True)
    gevent.wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
