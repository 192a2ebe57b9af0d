"""The Emitter over HTTP: through the server API (typed/api.py), for deployments without Redis.

    POST /_api/broadcast        {"room", "message"}            -> {"deliveries", "seq"?, "epoch"?}
    POST /_api/send_to_user     {"identity", "message"}        -> {"deliveries"}
    POST /_api/disconnect_user  {"identity", "code", "reason"} -> {"closed"}
    a repeated Idempotency-Key                                  -> {"duplicate": true}

http.client from the standard library, kept-alive connections in a small locked pool: a
thread takes one, uses it, gives it back, so any number of threads share the Emitter and a
thread-per-request web server does not open a connection per thread forever.

A kept connection the server closed while it was idle (an idle timeout, a server that
closes after each answer) is seen before the request goes out and replaced. A connection
lost after the request was sent is ambiguous (the server may have done it): the request is
sent again only when it carries an idempotency key, which makes the repeat harmless;
otherwise ServerUnreachable says so.
"""

from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from ..errors import ApiRefusal, ServerUnreachable
from .emitted import Emitted

__all__ = ["HttpTransport"]

_POOL = 8  # idle connections kept; more threads at once open more, closed when given back


class HttpTransport:
    """See the module's docstring; `url` is the server's http:// or https:// address."""

    def __init__(
        self, url: str, api_key: str, *, timeout: float, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the server API's URL is http://HOST:PORT or https://HOST:PORT, not {url!r}")
        if not api_key or not api_key.strip() or any(c in api_key for c in "\r\n"):
            raise ValueError("an Emitter over HTTP needs the server API's key (api_key=)")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")  # behind a proxy that serves the server under a path
        self._tls = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {api_key.strip()}", "Content-Type": "application/json"}
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close the idle connections; those in use close when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def broadcast(self, room: str, text: str, has_room: bool, once: str | None) -> Emitted:
        return self._post("broadcast", f'{{"room":{json.dumps(room)},"message":{text}}}', once)

    def send_to_user(self, key: str, text: str, once: str | None) -> Emitted:
        return self._post("send_to_user", f'{{"identity":{json.dumps(key)},"message":{text}}}', once)

    def disconnect_user(self, key: str, code: int, reason: str, once: str | None) -> Emitted:
        body = json.dumps({"identity": key, "code": code, "reason": reason}, ensure_ascii=False)
        return self._post("disconnect_user", body, once)

    # -- one request -----------------------------------------------------------------

    def _post(self, endpoint: str, body: str, once: str | None) -> Emitted:
        headers = self._headers if once is None else {**self._headers, "Idempotency-Key": once}
        path = f"{self._base}/_api/{endpoint}"
        data = body.encode("utf-8")
        for attempt in (1, 2):
            conn = self._take()
            sent = False
            try:
                if conn.sock is None:
                    conn.connect()  # a failure here: nothing was sent
                sent = True
                conn.request("POST", path, data, headers)
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if sent and once is not None and attempt == 1 and not isinstance(exc, TimeoutError):
                    continue  # the key makes a repeat harmless: the server answers duplicate
                raise self._unreachable(exc, sent, once) from exc
            self._give(conn, response)
            return self._result(response, answer)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _take(self) -> http.client.HTTPConnection:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not _dropped(conn):
                    return conn
                conn.close()  # closed by the server while idle: replaced, nothing was sent
        if self._tls is not None:
            tls = self._tls
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _give(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        if response.will_close or conn.sock is None:
            conn.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < _POOL:
                self._idle.append(conn)
                return
        conn.close()

    def _unreachable(self, exc: BaseException, sent: bool, once: str | None) -> ServerUnreachable:
        what = "no answer within" if isinstance(exc, TimeoutError) else "unreachable within"
        text = f"the server API at {self.url} gave {what} {self.timeout:g} s: {exc!r}"
        if sent:
            text += (
                "; the request was sent and may have been done"
                + ("" if once is not None else " (not sent again: it has no idempotency key)")
            )
        return ServerUnreachable(text)

    def _result(self, response: http.client.HTTPResponse, answer: bytes) -> Emitted:
        try:
            body: Any = json.loads(answer)
        except ValueError:
            body = answer.decode("utf-8", "replace")[:200]
        status = response.status
        if status == 200 and isinstance(body, dict):
            if body.get("duplicate") is True:
                return Emitted(duplicate=True)
            return Emitted(
                seq=body.get("seq"), epoch=body.get("epoch"),
                deliveries=body.get("deliveries"), closed=body.get("closed"),
            )  # fmt: skip
        detail = body.get("error", body) if isinstance(body, dict) else body
        if status == 503:
            raise ServerUnreachable(f"the server at {self.url} answered 503: {detail}")
        raise ApiRefusal(status, detail, _retry_after(response) if status == 429 else None)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle kept connection with something to read has been closed by the server (or
    holds an answer nobody asked for): either way it cannot carry a request."""
    sock = conn.sock
    if sock is None:
        return False
    poller = select.poll()  # not select.select: no limit on the descriptor's number
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _retry_after(response: http.client.HTTPResponse) -> float | None:
    try:
        return float(response.getheader("Retry-After") or "")
    except ValueError:
        return None
