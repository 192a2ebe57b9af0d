"""The server API: a typed App's pushes over HTTP, for backends in any language.

Routed under /_api/ by the server's endpoint router (server/endpoints.py) when
`EndpointOptions.api_key` is given; every request carries `Authorization: Bearer <key>`.

    POST /_api/broadcast        {"room": ..., "message": {...}}        -> {"deliveries": n}
                                  a numbered room (resumption on): {"deliveries": n, "seq": s, "epoch": "e"}
    POST /_api/send_to_user     {"identity": ..., "message": {...}}    -> {"deliveries": n}
    POST /_api/disconnect_user  {"identity": ..., "code": ..., "reason": ...} -> {"closed": n}
    GET  /_api/presence?room=...                                       -> {"presence": [...]}

A message is validated against the app's declared pushes (`@app.push`) by its `type`. The
counts are this node's: with a backplane the other nodes deliver too (the app's methods
publish). The handler runs in the requesting connection's actor, which may block (a
backplane's publish waits for Redis). A numbered broadcast is answered once it is kept.

A POST may carry `Idempotency-Key` (at most 200 characters): the same key within 300 s is
done once, and a repeat answers `{"duplicate": true}`. The keys are this process's (the
newest 100,000), or with a backplane that offers `first_use` (the Redis one) Redis's
`<prefix>:idempotency:<key>`, which an Emitter's keys share: every node does it once. A key
is taken once the body is valid, and given back when the backplane failed the request.

Answers to a client whose key was checked keep the connection open for its next request
(`KEEP_ALIVE`, server/opening.py), but for a 5xx; a 401 or 404 closes it.

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
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import BackplaneUnavailable, ConfigurationError
from ..protocol.connection import close_payload
from ..protocol.http import Headers, Request, Response
from ..server.endpoints import API_PATH, KEEP_ALIVE
from .messages import user_key
from .ratelimit import RateLimit, TokenBucket
from .router import push_adapter
from .users import DISCONNECT_CODE

if TYPE_CHECKING:
    from .app import App

__all__ = ["ServerApi"]

_JSON = "application/json"
B = TypeVar("B", bound=BaseModel)

IDEMPOTENCY_TTL = 300  # seconds a key makes a repeat of its request a duplicate
IDEMPOTENCY_KEYS = 100_000  # keys remembered in process (the oldest are dropped)
MAX_IDEMPOTENCY_KEY = 200  # characters


class _SeenKeys:
    """The idempotency keys of this process within the TTL, oldest first, at most `size`."""

    def __init__(self, ttl: float = IDEMPOTENCY_TTL, size: int = IDEMPOTENCY_KEYS) -> None:
        self.ttl = ttl
        self.size = size
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> when it was first used

    def first_use(self, key: str) -> bool:
        now = time.monotonic()
        seen = self._seen
        while seen:  # the expired ones go first (oldest first: stop at a live one)
            oldest, at = next(iter(seen.items()))
            if at > now - self.ttl:
                break
            del seen[oldest]
        if key in seen:
            return False
        seen[key] = now
        if len(seen) > self.size:
            seen.popitem(last=False)
        return True

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)


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
        self._bucket = TokenBucket(RateLimit(rate=rate, burst=burst), time.monotonic())
        self._pushes = self._push_adapter(app)
        self._seen = _SeenKeys()
        self._routes: dict[str, tuple[str, Callable[[Request], Response]]] = {
            f"{API_PATH}/broadcast": ("POST", self._broadcast),
            f"{API_PATH}/send_to_user": ("POST", self._send_to_user),
            f"{API_PATH}/disconnect_user": ("POST", self._disconnect_user),
            f"{API_PATH}/presence": ("GET", self._presence),
        }

    @staticmethod
    def _push_adapter(app: App) -> TypeAdapter[Any] | None:
        """One adapter over the app's pushes, told apart by their `type` (None: no pushes)."""
        return push_adapter(tuple(app.pushes))  # shared with the Emitter's app= (emitter/)

    def __call__(self, request: Request, upgrade: bool) -> Response:
        route = None if upgrade else self._routes.get(request.bare_path)
        if route is None:
            return _error(404, "Not Found", "no such API endpoint")
        given = (request.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._key):
            challenge = ("WWW-Authenticate", "Bearer")
            return _error(401, "Unauthorized", "a valid Authorization: Bearer key is needed", challenge)
        answer = self._authenticated(request, *route)
        if answer.status < 500:  # an authenticated client may send its next request on it
            answer.headers = Headers([*answer.headers, KEEP_ALIVE])
        return answer

    def _authenticated(
        self, request: Request, method: str, handler: Callable[[Request], Response]
    ) -> Response:
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
        """Take a token of the key's bucket: 0, or the whole seconds to wait for one."""
        bucket = self._bucket
        bucket.refill(time.monotonic())
        wait = bucket.wait()
        if wait:
            return max(1, math.ceil(wait))
        bucket.tokens -= 1.0
        return 0

    # -- the endpoints -------------------------------------------------------------

    def _broadcast(self, request: Request) -> Response:
        body = self._body(request, _Broadcast)
        message = self._message(body.message)
        with self._once(request):
            published = self._app.publish(body.room, message)
        answer: dict[str, Any] = {"deliveries": published.deliveries}
        if published.seq is not None:  # a numbered room: where it was kept
            answer.update(seq=published.seq, epoch=published.epoch)
        return _answer(200, "OK", answer)

    def _send_to_user(self, request: Request) -> Response:
        body = self._body(request, _SendToUser)
        message = self._message(body.message)
        with self._once(request):
            delivered = self._app.send_to_user(body.identity, message)
        return _answer(200, "OK", {"deliveries": delivered})

    def _disconnect_user(self, request: Request) -> Response:
        body = self._body(request, _DisconnectUser)
        try:
            user_key(body.identity)
            close_payload(body.code, body.reason)
        except (TypeError, ValueError) as exc:
            raise _Refused(_error(422, "Unprocessable Entity", str(exc))) from None
        with self._once(request):
            closed = self._app.disconnect_user(body.identity, body.code, body.reason)
        return _answer(200, "OK", {"closed": closed})

    def _presence(self, request: Request) -> Response:
        rooms = request.query.get("room")
        if not rooms or not rooms[0]:
            return _error(400, "Bad Request", "the room is needed: ?room=...")
        return _answer(200, "OK", {"room": rooms[0], "presence": self._app.rooms.presence(rooms[0])})

    # -- idempotency ---------------------------------------------------------------

    @contextmanager
    def _once(self, request: Request) -> Iterator[None]:
        """Run the body once per `Idempotency-Key` (none: always): a repeat is answered
        `{"duplicate": true}` without it; a failed backplane gives the key back."""
        key = request.headers.get("Idempotency-Key")
        if key is None:
            yield
            return
        key = key.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY:
            detail = f"an Idempotency-Key has 1 to {MAX_IDEMPOTENCY_KEY} characters"
            raise _Refused(_error(400, "Bad Request", detail))
        shared = getattr(self._app.rooms, "first_use", None)  # the backplane's: every node's keys
        if not (shared(key, IDEMPOTENCY_TTL) if shared is not None else self._seen.first_use(key)):
            raise _Refused(_answer(200, "OK", {"duplicate": True}))
        try:
            yield
        except BackplaneUnavailable:
            forget = getattr(self._app.rooms, "forget_use", None) if shared is not None else self._seen.forget
            if forget is not None:
                try:
                    forget(key)
                except BackplaneUnavailable:
                    pass  # it expires with its TTL
            raise

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
