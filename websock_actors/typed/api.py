"""The server API: a typed App's pushes over HTTP, for backends in any language.

Routed under /_api/ by the server's endpoint router (server/endpoints.py) when
`EndpointOptions.api_key` is given; every request carries `Authorization: Bearer <key>`.

    POST /_api/broadcast        {"room": ..., "message": {...}}        -> {"deliveries": n}
    POST /_api/send_to_user     {"identity": ..., "message": {...}}    -> {"deliveries": n}
    POST /_api/disconnect_user  {"identity": ..., "code": ..., "reason": ...} -> {"closed": n}
    GET  /_api/presence?room=...                                       -> {"presence": [...]}

A message is validated against the app's declared pushes (`@app.push`) by its `type`. The
counts are this node's: with a backplane the other nodes deliver too (the app's methods
publish). The handler runs in the requesting connection's actor, which may block (a
backplane's publish waits for Redis).

Answers: 401 (no or wrong key, compared in constant time), 404 (unknown path or an
upgrade), 405 (another method), 429 with Retry-After (past the key's rate), 400 (a body that
is not JSON), 422 (a body or message that fails its model, with pydantic's errors), 200.
Bodies are bounded and read by the handshake (413, 411: protocol/handshake.py).
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import BackplaneUnavailable, ConfigurationError
from ..protocol.http import Headers, Request, Response
from ..server.endpoints import API_PATH
from .users import DISCONNECT_CODE

if TYPE_CHECKING:
    from .app import App

__all__ = ["ServerApi"]

_JSON = "application/json"
B = TypeVar("B", bound=BaseModel)


class _Broadcast(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room: str = Field(min_length=1)
    message: dict[str, Any]


class _SendToUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity: str | int
    message: dict[str, Any]


class _DisconnectUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identity: str | int
    code: int = Field(DISCONNECT_CODE, ge=1000, le=4999)
    reason: str = Field("", max_length=123)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _answer(status: int, reason: str, body: Any, *headers: tuple[str, str]) -> Response:
    data = json.dumps(body, default=str, separators=(",", ":")).encode()
    return Response(status, reason, Headers([("Content-Type", _JSON), *headers]), data)


def _error(status: int, reason: str, detail: Any, *headers: tuple[str, str]) -> Response:
    return _answer(status, reason, {"error": detail}, *headers)


class ServerApi:
    """The endpoint handler of /_api/ for one App and one key (`App.api_endpoint`)."""

    def __init__(self, app: App, key: str, rate: float, burst: int) -> None:
        if not key.strip():
            raise ConfigurationError("the API key may not be empty")
        self._app = app
        self._key = f"Bearer {key}".encode()
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._pushes = self._push_adapter(app)
        self._routes: dict[str, tuple[str, Callable[[Request], Response]]] = {
            f"{API_PATH}/broadcast": ("POST", self._broadcast),
            f"{API_PATH}/send_to_user": ("POST", self._send_to_user),
            f"{API_PATH}/disconnect_user": ("POST", self._disconnect_user),
            f"{API_PATH}/presence": ("GET", self._presence),
        }

    @staticmethod
    def _push_adapter(app: App) -> TypeAdapter[Any] | None:
        """One adapter over the app's pushes, told apart by their `type` (None: no pushes)."""
        models = tuple(app.pushes)
        if not models:
            return None
        union: Any = models[0] if len(models) == 1 else Union[models]  # noqa: UP007
        try:
            return TypeAdapter(Annotated[union, Field(discriminator="type")])
        except Exception as exc:  # a push without a Literal `type`
            raise ConfigurationError(f"the server API needs pushes told apart by `type`: {exc}") from None

    def __call__(self, request: Request, upgrade: bool) -> Response:
        route = None if upgrade else self._routes.get(request.bare_path)
        if route is None:
            return _error(404, "Not Found", "no such API endpoint")
        given = (request.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._key):
            challenge = ("WWW-Authenticate", "Bearer")
            return _error(401, "Unauthorized", "a valid Authorization: Bearer key is needed", challenge)
        method, handler = route
        if request.method != method:
            return _error(405, "Method Not Allowed", f"use {method}", ("Allow", method))
        wait = self._take()
        if wait:
            return _error(429, "Too Many Requests", "API rate exceeded", ("Retry-After", str(wait)))
        try:
            return handler(request)
        except _Refused as refused:
            return refused.response
        except BackplaneUnavailable as exc:
            return _error(503, "Service Unavailable", f"backplane unavailable: {exc}")

    def _take(self) -> int:
        """Take a token of the bucket: 0, or the seconds to wait for one."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / self._rate))

    # -- the endpoints -------------------------------------------------------------

    def _broadcast(self, request: Request) -> Response:
        body = self._body(request, _Broadcast)
        delivered = self._app.broadcast(body.room, self._message(body.message))
        return _answer(200, "OK", {"deliveries": delivered})

    def _send_to_user(self, request: Request) -> Response:
        body = self._body(request, _SendToUser)
        delivered = self._app.send_to_user(body.identity, self._message(body.message))
        return _answer(200, "OK", {"deliveries": delivered})

    def _disconnect_user(self, request: Request) -> Response:
        body = self._body(request, _DisconnectUser)
        try:
            closed = self._app.disconnect_user(body.identity, body.code, body.reason)
        except (TypeError, ValueError) as exc:
            raise _Refused(_error(422, "Unprocessable Entity", str(exc))) from None
        return _answer(200, "OK", {"closed": closed})

    def _presence(self, request: Request) -> Response:
        rooms = request.query.get("room")
        if not rooms or not rooms[0]:
            return _error(400, "Bad Request", "the room is needed: ?room=...")
        return _answer(200, "OK", {"room": rooms[0], "presence": self._app.rooms.presence(rooms[0])})

    # -- validation ----------------------------------------------------------------

    def _body(self, request: Request, model: type[B]) -> B:
        try:
            data = json.loads(request.body)
        except ValueError:
            raise _Refused(_error(400, "Bad Request", "the body is not JSON")) from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _Refused(_invalid(exc)) from None

    def _message(self, data: dict[str, Any]) -> BaseModel:
        if self._pushes is None:
            raise _Refused(_error(422, "Unprocessable Entity", "the app declares no pushes (@app.push)"))
        try:
            message: BaseModel = self._pushes.validate_python(data)
        except ValidationError as exc:
            raise _Refused(_invalid(exc)) from None
        return message


def _invalid(exc: ValidationError) -> Response:
    return _error(422, "Unprocessable Entity", json.loads(exc.json(include_url=False)))
