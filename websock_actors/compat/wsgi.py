"""A WSGI application (Flask, Django, ...) beside a WebSocket application on one port.

    app = WSGIMount(flask_app, chat_app, websocket_path="/ws")
    # websock-actors run mymodule:app

Upgrade requests on `websocket_path` go to the WebSocket application's actors; every
other request goes to the WSGI application, called in the connection's greenlet (under
the CLI's monkey-patching, blocking code in views waits cooperatively). The answer is
buffered and the connection closes after it (no keep-alive). Request bodies are not read:
a request that carries one gets 413, so keep forms and uploads on a regular WSGI server or
send them over the WebSocket.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..errors import LocalHandshakeRefusal
from ..protocol.http import Headers, Request, Response, error_response, header_tokens
from ..server.app import Application

if TYPE_CHECKING:
    from ..server.connection import Connection

__all__ = ["WSGIMount"]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WSGIMount(Application):
    """Plain HTTP to `wsgi_app`, WebSocket upgrades on `websocket_path` to `websocket_app`."""

    def __init__(self, wsgi_app: WSGIApp, websocket_app: Application, *, websocket_path: str = "/ws") -> None:
        self.wsgi_app = wsgi_app
        self.websocket_app = websocket_app
        self.websocket_path = websocket_path
        self.max_message_size = websocket_app.max_message_size  # the WebSocket side's limit

    # The WebSocket side is the wrapped application's.
    def handle_start(self) -> None:
        self.websocket_app.handle_start()

    def handle_stop(self) -> None:
        self.websocket_app.handle_stop()

    def handle_refused(self, address: Any, error: LocalHandshakeRefusal) -> None:
        self.websocket_app.handle_refused(address, error)

    def handle_connect(self, conn: Connection) -> None:
        self.websocket_app.handle_connect(conn)

    def handle_message(self, conn: Connection, message: str | bytes) -> None:
        self.websocket_app.handle_message(conn, message)

    def handle_close(self, conn: Connection, code: int, reason: str) -> None:
        self.websocket_app.handle_close(conn, code, reason)

    def handle_request(self, request: Request) -> Response | None:
        path = request.bare_path
        if "websocket" in header_tokens(request.headers.get("Upgrade")):
            if path != self.websocket_path:
                return error_response(404, f"no WebSocket endpoint at {path}; use {self.websocket_path}")
            return self.websocket_app.handle_request(request)
        if request.headers.get("Transfer-Encoding") or (request.headers.get("Content-Length") or "0") != "0":
            return error_response(413, "request bodies are not accepted on this port")
        return self._call_wsgi(request)

    def _call_wsgi(self, request: Request) -> Response:
        environ = _environ(request)
        status_line: list[str] = []
        response_headers: list[tuple[str, str]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is not None and status_line:
                raise exc_info[1].with_traceback(exc_info[2])
            status_line[:] = [status]
            response_headers[:] = headers
            return lambda data: body.append(data)

        body: list[bytes] = []
        result = self.wsgi_app(environ, start_response)
        try:
            body.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        code, _, phrase = (status_line[0] if status_line else "500 Internal Server Error").partition(" ")
        # For HEAD the body is dropped when the answer is written, its length kept.
        return Response(int(code), phrase, Headers(response_headers), b"".join(body))


def _environ(request: Request) -> dict[str, Any]:
    path, _, query = request.path.partition("?")
    name, port = _host_and_port(request.headers.get("Host") or "localhost")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": name,
        "SERVER_PORT": port or "80",
        "REMOTE_ADDR": str(request.peer[0]) if request.peer else "",
        "REMOTE_PORT": str(request.peer[1]) if request.peer and len(request.peer) > 1 else "",
        "SERVER_PROTOCOL": request.version,
        "CONTENT_LENGTH": "",
        "CONTENT_TYPE": request.headers.get("Content-Type") or "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for key, value in request.headers:
        if "_" in key:
            # X_User and X-User would both become HTTP_X_USER: one could forge the other
            # (a proxy checks one spelling, the app reads the other). Dropped, like Gunicorn.
            continue
        name_key = "HTTP_" + key.upper().replace("-", "_")
        if name_key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            continue
        environ[name_key] = f"{environ[name_key]},{value}" if name_key in environ else value
    return environ


def _host_and_port(host: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT from a Host header: `name:port`, or `[v6 address]:port`."""
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        return address, rest[1:] if rest.startswith(":") else ""
    name, _, port = host.partition(":")
    return name, port
