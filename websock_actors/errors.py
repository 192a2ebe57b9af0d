"""The one exception tree of websock_actors.

    WebSocketError
    ├── HandshakeError              the opening handshake failed; `status` is its HTTP status
    │   ├── LocalHandshakeRefusal   this server refused a client's handshake; `status` is the
    │   │   │                       answer it sent
    │   │   └── WebSocketInvalidHandshake   (WebSock's name, given to its `on_error`)
    │   └── RemoteHandshakeRefusal  the server did not accept this client's handshake: its real
    │                               status (None when its answer was not HTTP) and its `response`
    ├── ProtocolError               the peer broke RFC 6455; `code` is the close code to send
    │   └── WebSocketInvalidDataFrame       (WebSock's name, given to its `on_error`)
    ├── ConnectionClosed            the connection is closed; carries the close code and reason
    │   ├── ConnectionClosedOK      ... after a clean close: 1000, 1001, or a close without a code
    │   └── ConnectionClosedError   ... with any other code: an error, a refusal, a lost transport
    ├── MailboxFull                 an actor's bounded mailbox refused a message
    ├── ActorStopped                the actor is stopped (or down for good): pending asks fail with it
    ├── MessageError                a handler refuses a message: becomes a typed error reply
    │   ├── InvalidMessage          a frame that does not decode to a registered message
    │   └── BackplaneUnavailable    the rooms' backplane (Redis) cannot be reached: the sender gets
    │       │                       `backplane_unavailable`; local members still got the message
    │       └── ServerUnreachable   an Emitter's server API cannot be reached (refused, no answer
    │                               in time, 503)
    ├── ConfigurationError          the application or server was set up wrongly (found at start-up)
    ├── AppRefusal                  the application's authentication hook refuses a handshake:
    │                               HTTP 401 or 403
    ├── ApiRefusal                  the server API refused an Emitter's request (401, 404, 413,
    │                               422, 429, ...): its status and the server's detail
    ├── RequestError                the client's request got an `error` reply; carries code and detail
    ├── RequestTimeout              the client's request got no reply in time (also a TimeoutError)
    └── OffloadTimeout              an offloaded call did not finish in time (also a TimeoutError)

The side that refused is in the name, as h11 does with LocalProtocolError and
RemoteProtocolError: Local for the refusal this end makes (a server answering a client),
Remote for the refusal the other end made (the server's answer, seen by this client), App
for the refusal the application raises, Api for the server API's answer to an Emitter.
ServerUnreachable is a BackplaneUnavailable so that code written for an Emitter over Redis
(`except BackplaneUnavailable`) keeps working when it moves to the server API.
HandshakeRefused, HandshakeRejected and Refuse, the names without the side, remain as
aliases that warn (DeprecationWarning).

The sans-I/O core raises only LocalHandshakeRefusal, RemoteHandshakeRefusal and ProtocolError
(which the connection state machine turns into a close): any other exception there is a bug.
"""

from __future__ import annotations

import warnings
from enum import IntEnum
from typing import TYPE_CHECKING, Any

__all__ = [
    "ActorStopped",
    "ApiRefusal",
    "AppRefusal",
    "BackplaneUnavailable",
    "CloseCode",
    "ConfigurationError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidMessage",
    "LocalHandshakeRefusal",
    "MailboxFull",
    "MessageError",
    "OffloadTimeout",
    "ProtocolError",
    "RemoteHandshakeRefusal",
    "RequestError",
    "RequestTimeout",
    "ServerUnreachable",
    "WebSocketError",
    "WebSocketInvalidDataFrame",
    "WebSocketInvalidHandshake",
    "connection_closed",
]


class CloseCode(IntEnum):
    """Close codes of RFC 6455 section 7.4 and the IANA registry."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never sent on the wire
    ABNORMAL = 1006  # never sent on the wire
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


class WebSocketError(Exception):
    """Base of every error this package raises on purpose."""


# -- the opening handshake ---------------------------------------------------------------


class HandshakeError(WebSocketError):
    """The opening handshake failed; `status` is the HTTP status involved, when there is one."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(f"{status}: {reason}" if status is not None else reason)
        self.status = status
        self.reason = reason


class LocalHandshakeRefusal(HandshakeError):
    """This server refuses a client's opening handshake: `status` and `headers` are the HTTP
    answer it sends."""

    status: int

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status, reason)
        self.headers = headers or []


class RemoteHandshakeRefusal(HandshakeError):
    """The server did not accept this client's opening handshake.

    `status` is the status it really answered: a refusal (403, 503, ...), or 101 with headers
    that break RFC 6455 (a wrong `Sec-WebSocket-Accept`, say); None when its answer was not
    HTTP at all or the connection ended first. `response` is its answer, when one was parsed.
    """

    def __init__(self, status: int | None, reason: str, response: Any = None) -> None:
        super().__init__(status, reason)
        self.response = response


class WebSocketInvalidHandshake(LocalHandshakeRefusal):
    """WebSock's name for a refused client handshake (signature: message, client)."""

    def __init__(self, message: str, client: Any, status: int = 400) -> None:
        super().__init__(status, message)
        self.args = (message,)
        self.client = client


# -- the connection ----------------------------------------------------------------------


class ProtocolError(WebSocketError):
    """The peer broke the protocol; `code` is the close code to fail the connection with."""

    def __init__(self, reason: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class WebSocketInvalidDataFrame(ProtocolError):
    """WebSock's name for a client that broke the framing rules; it was closed with `code`."""

    def __init__(self, message: str, client: Any, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message, code)
        self.client = client


class ConnectionClosed(WebSocketError):
    """An operation needed an open connection; it is closed with `code` and `reason`."""

    def __init__(self, code: int = CloseCode.ABNORMAL, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """The connection ended with a clean close: 1000, 1001, or a close frame without a code."""


class ConnectionClosedError(ConnectionClosed):
    """The connection ended with an error code, a refusal, or without a close handshake (1006)."""


_CLEAN_CODES = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.NO_STATUS})


def connection_closed(code: int | None, reason: str = "") -> ConnectionClosed:
    """The right ConnectionClosed for a close `code` (None: the transport was lost)."""
    if code is None:
        return ConnectionClosedError(CloseCode.ABNORMAL, reason)
    if code in _CLEAN_CODES:
        return ConnectionClosedOK(code, reason)
    return ConnectionClosedError(code, reason)


# -- actors and typed messages ---------------------------------------------------------------


class MailboxFull(WebSocketError):
    """A bounded mailbox had no room for one more message."""


class ActorStopped(WebSocketError):
    """The actor no longer runs: a message to it, or an ask pending in its mailbox, fails."""


class MessageError(WebSocketError):
    """Raised by a handler to answer with `{"type": "error", "code": code, "detail": detail}`.

    Not a crash: the handler's actor keeps running and is not restarted.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class BackplaneUnavailable(MessageError):
    """A room operation needs the backplane and it is down: never a silent drop.

    Raised after what could be done locally was done (a broadcast reached this process's
    members), so a handler that lets it propagate answers `backplane_unavailable`.
    """

    def __init__(self, detail: str = "the rooms' backplane is unavailable") -> None:
        super().__init__("backplane_unavailable", detail)


class ServerUnreachable(BackplaneUnavailable):
    """An Emitter's server API could not be reached within the Emitter's timeout: the
    connection was refused or lost, no answer came in time, or the server answered 503 (its
    own backplane is down). Nothing was published unless the request had been sent (then a
    retry with the same idempotency key publishes it once)."""


class InvalidMessage(MessageError):
    """A frame that is not JSON, has no known `type`, or does not fit its model.

    `errors` is pydantic's error list without the input; `message_id` is the frame's
    `id` when one could be read, so the error reply can carry it.
    """

    def __init__(
        self,
        code: str,
        detail: str,
        errors: list[dict[str, object]] | None = None,
        message_id: str | int | None = None,
    ) -> None:
        super().__init__(code, detail)
        self.errors = errors or []
        self.message_id = message_id


class ConfigurationError(WebSocketError):
    """Bad options or registrations, reported when the server or app is built."""


class AppRefusal(WebSocketError):
    """Raised by an `@app.authenticate` hook to refuse the handshake before the upgrade.

    `status` is the HTTP answer, 401 (who are you?) or 403 (not you); `reason` is its body.
    `headers` are added to the answer (a `WWW-Authenticate`, say).
    """

    def __init__(
        self, status: int = 401, reason: str = "", headers: list[tuple[str, str]] | None = None
    ) -> None:
        if status not in (401, 403):
            raise ValueError(f"AppRefusal takes the status 401 or 403, not {status!r}")
        super().__init__(f"{status}: {reason}" if reason else str(status))
        self.status = status
        self.reason = reason
        self.headers = headers or []


class ApiRefusal(WebSocketError):
    """The server API answered an Emitter's request with a refusal: `status` (401 wrong key,
    404 the API is off, 413 too large, 422 a message that fails its push model, 429 too
    fast, ...), `detail` (the server's `error`), `errors` (pydantic's list, with 422) and
    `retry_after` (seconds, with 429). Retrying the same request gets the same answer,
    except after a 429."""

    def __init__(
        self, status: int, detail: Any, retry_after: float | None = None
    ) -> None:
        super().__init__(f"the server API answered {status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors: list[Any] = detail if isinstance(detail, list) else []
        self.retry_after = retry_after


class OffloadTimeout(WebSocketError, TimeoutError):
    """An offloaded call did not finish in time (its thread still runs to its end)."""


# -- the client ------------------------------------------------------------------------------


class RequestError(WebSocketError):
    """The client's request was answered `{"type": "error", "id", "code", "detail", "errors"}`.

    `reply` is the whole error reply as received; the connection stays open.
    """

    def __init__(
        self,
        code: str,
        detail: str = "",
        message_id: str | int | None = None,
        errors: list[dict[str, object]] | None = None,
        reply: dict[str, object] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.message_id = message_id
        self.errors = errors or []
        self.reply = reply or {}


class RequestTimeout(WebSocketError, TimeoutError):
    """The client's request got no reply within its timeout; a late reply is discarded."""

    def __init__(self, message_id: str | int, timeout: float) -> None:
        super().__init__(f"no reply to request {message_id!r} within {timeout:g} s")
        self.message_id = message_id
        self.timeout = timeout


# -- names kept for compatibility --------------------------------------------------------------

# The earlier names, without the side: each still resolves, with a warning.
DEPRECATED_NAMES = {
    "HandshakeRefused": "LocalHandshakeRefusal",
    "HandshakeRejected": "RemoteHandshakeRefusal",
    "Refuse": "AppRefusal",
}


def deprecated_name(module: str, name: str) -> Any:
    """The class a deprecated `name` stands for, after a DeprecationWarning naming the new one."""
    new = DEPRECATED_NAMES[name]
    warnings.warn(
        f"{module}.{name} is deprecated; use {module}.{new}", DeprecationWarning, stacklevel=3
    )
    return globals()[new]


if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any name from here

    def __getattr__(name: str) -> Any:
        if name in DEPRECATED_NAMES:
            return deprecated_name(__name__, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
