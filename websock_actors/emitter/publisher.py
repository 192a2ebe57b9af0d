"""`Emitter`: push into the rooms, to a user, or kick a user, from any Python process."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from ..protocol.connection import close_payload, is_valid_close_code
from ..protocol.redact import mask_url
from ..typed.messages import user_key
from .emitted import Emitted, Transport
from .encoding import Encoder

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["DISCONNECT_CODE", "Emitter"]

DISCONNECT_CODE = 4000  # typed/users.py's default: an application's code, never resumed
_MAX_IDEMPOTENCY_KEY = 200  # the server API's bound on an Idempotency-Key


class Emitter:
    """A synchronous publisher, shared by the threads of a process (see the package's
    docstring). `url`: `redis://` (also `rediss://`, `unix://`) straight into the
    backplane, or `http://`/`https://` through the server API with `api_key`."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        api_key: str | None = None,
        app: Any = None,
        key_prefix: str = "wsa",
        timeout: float = 2.0,
        numbered: bool = False,
        history: int = 1000,
        history_ttl: float = 300.0,
        retained_rooms: int = 5_000,
        idempotency_ttl: int = 300,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`app`: a typed App or "module:app", whose pushes every message must fit.
        Over Redis: `key_prefix` is the RedisBackplane's `prefix`; `numbered` and the history
        settings are the app's ResumePolicy's (`history`, `history_ttl`, `retained_rooms`).
        Over HTTP the server knows them, and `ssl_context` checks an https:// server."""
        self.url = url
        self.timeout = timeout
        self.key_prefix = key_prefix
        self.numbered = numbered
        self._encoder = Encoder(app)
        self.transport: Transport
        if url.startswith(("http://", "https://")):
            from .over_http import HttpTransport

            self.transport = HttpTransport(url, api_key or "", timeout=timeout, ssl_context=ssl_context)
        elif url.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://", "redis+cluster://")):
            if api_key is not None:
                raise ValueError("api_key= is for the server API (an http:// or https:// URL)")
            from .over_redis import RedisTransport  # redis-py only when it is used

            self.transport = RedisTransport(
                url, key_prefix=key_prefix, timeout=timeout, numbered=numbered, history=history,
                history_ttl=history_ttl, retained_rooms=retained_rooms, idempotency_ttl=idempotency_ttl,
            )  # fmt: skip
        else:
            raise ValueError(
                f"an Emitter needs a redis:// URL, or http(s):// for the server API, not {mask_url(url)!r}"
            )

    def __repr__(self) -> str:
        return f"<Emitter {mask_url(self.url)} prefix={self.key_prefix!r} numbered={self.numbered}>"

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def origin(self) -> str | None:
        """Over Redis, this Emitter's origin id on the wire (16 hex digits); else None."""
        return getattr(self.transport, "origin", None)

    def close(self) -> None:
        """Close the pooled connections (also done when the Emitter is collected)."""
        self.transport.close()

    def broadcast(
        self, room: str, message: BaseModel | dict[str, Any], *, idempotency_key: str | None = None
    ) -> Emitted:
        """Send `message` (a pydantic model, or a dict with a "type") to every member of
        `room` on every node. BackplaneUnavailable (ServerUnreachable over HTTP) when the
        way to the servers is down; ApiRefusal when the server API refuses it."""
        if not isinstance(room, str) or not room:
            raise ValueError("a room is a non-empty string")
        text, has_room = self._encoder.encode(message)
        return self.transport.broadcast(room, text, has_room, _checked(idempotency_key))

    def send_to_user(
        self, identity: str | int, message: BaseModel | dict[str, Any], *, idempotency_key: str | None = None
    ) -> Emitted:
        """Send `message` to every connection of `identity` (what `@app.authenticate`
        returned: a str or an int) on every node."""
        key = user_key(identity)
        text, _ = self._encoder.encode(message)
        return self.transport.send_to_user(key, text, _checked(idempotency_key))

    def disconnect_user(
        self,
        identity: str | int,
        code: int = DISCONNECT_CODE,
        reason: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Emitted:
        """Close every connection of `identity` on every node with `code` and `reason` (their
        sessions are not resumed). A code that may not be sent, or a reason over 123 bytes:
        ValueError, before anything is published."""
        key = user_key(identity)
        if not isinstance(code, int) or isinstance(code, bool) or not isinstance(reason, str):
            raise TypeError("a close code is an int and its reason a str")
        if not is_valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent")  # 1005 too: a code is needed
        close_payload(code, reason)  # the reason's bound
        return self.transport.disconnect_user(key, code, reason, _checked(idempotency_key))


def _checked(key: str | None) -> str | None:
    """An idempotency key: 1 to 200 printable ASCII characters (it may travel as a header)."""
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= _MAX_IDEMPOTENCY_KEY:
        raise ValueError(f"an idempotency key is a string of 1 to {_MAX_IDEMPOTENCY_KEY} characters")
    if not (key.isascii() and key.isprintable()):
        raise ValueError("an idempotency key is printable ASCII")
    return key
