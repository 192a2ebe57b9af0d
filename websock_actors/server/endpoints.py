"""The server's own HTTP endpoints: reserved paths answered before the application.

A route maps a reserved path to a handler; `EndpointRouter.route` runs the handler of a
request's path. A handler returns one of three things:

    a Response     the answer: the application never sees the request
    an Application the endpoint's own application takes the connection over (the status
                   page's WebSocket): the user's hooks, authentication and rooms never see it
    None           not this endpoint's request (another method, say): the application's

`builtin_router` routes what `EndpointOptions` turns on: /healthz and /readyz (health.py),
/metrics (metrics.py; rendered at most once a second, server_metrics.py), /_status with
everything under it (status_page.py) and /_wsa/client.js, the browser client (client_js.py).
/_api/ and /_wsa/ are always reserved: /_api/ is the server API (a typed App's, typed/api.py)
when `api_key` is given; every other path under them answers 404. An answer with
`KEEP_ALIVE` (the API's, once the key is checked) keeps the connection for the next
request; every other one closes it. Admission
(capacity, the per-IP caps) is not routing: the server does it for every upgrade.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigurationError
from ..protocol.http import Headers, Request, Response, error_response
from .app import Application
from .client_js import WSA_PATH, ClientScript
from .health import HEALTH_PATHS, health_answer
from .server_options import EndpointOptions
from .status_page import STATUS_PATH, StatusPage

__all__ = ["API_PATH", "KEEP_ALIVE", "EndpointHandler", "EndpointRouter", "app_api", "builtin_router"]

API_PATH = "/_api"  # the server API's subtree, reserved whether it is on or not

# The header of an endpoint's answer after which the connection may read the client's next
# request (opening.py decides: the client's wishes, a bound). Without it: closed after.
KEEP_ALIVE = ("Connection", "keep-alive")

# (request, is it an upgrade) -> an answer, an application to take the connection, or None
EndpointHandler = Callable[[Request, bool], Response | Application | None]


class EndpointRouter:
    """Reserved paths, each answered by a handler: exact paths, and subtrees (a path and
    everything under it)."""

    __slots__ = ("_exact", "_subtrees")

    def __init__(self) -> None:
        self._exact: dict[str, EndpointHandler] = {}
        self._subtrees: list[tuple[str, EndpointHandler]] = []

    def add(self, path: str, handler: EndpointHandler, *, subtree: bool = False) -> None:
        """Route `path` (with `subtree`: and every path under it) to `handler`."""
        self._exact[path] = handler
        if subtree:
            self._subtrees.append((path.rstrip("/") + "/", handler))

    def __bool__(self) -> bool:
        return bool(self._exact)

    def route(self, request: Request, upgrade: bool) -> Response | Application | None:
        """What the endpoint of the request's path makes of it (None: no endpoint's)."""
        path = request.bare_path
        handler = self._exact.get(path)
        if handler is None:
            for prefix, under in self._subtrees:
                if path.startswith(prefix):
                    handler = under
                    break
            else:
                return None
        return handler(request, upgrade)


def builtin_router(
    options: EndpointOptions,
    not_ready: Callable[[], str | None],
    metrics_exposition: Callable[[], tuple[bytes, str]],
    status_page: StatusPage | None,
    api: EndpointHandler | None = None,
) -> EndpointRouter:
    """The routes of the endpoints `options` turns on.

    `not_ready` says why /readyz answers 503 (None: ready), `metrics_exposition` gives the
    body and content type /metrics answers, `status_page` serves /_status (None: off)."""
    router = EndpointRouter()

    def health(request: Request, upgrade: bool) -> Response | None:
        return None if upgrade else health_answer(request, not_ready())

    def metrics(request: Request, upgrade: bool) -> Response | None:
        if upgrade or request.method != "GET":
            return None
        body, content_type = metrics_exposition()
        return Response(200, "OK", Headers([("Content-Type", content_type)]), body)

    def status(request: Request, upgrade: bool) -> Response | Application:
        assert status_page is not None
        answer = status_page.answer(request, upgrade)
        return status_page if answer is None else answer  # a viewer: served by the page itself

    if options.health:
        for path in HEALTH_PATHS:
            router.add(path, health)
    if options.metrics:
        router.add("/metrics", metrics)
    if status_page is not None:
        router.add(STATUS_PATH, status, subtree=True)
    script = ClientScript() if options.client_js else None  # read and gzipped once
    router.add(WSA_PATH, script.answer if script is not None else _not_found, subtree=True)
    router.add(API_PATH, api or _not_found, subtree=True)
    return router


def app_api(app: Application, options: EndpointOptions) -> EndpointHandler | None:
    """The server API's handler, asked of a typed App (`App.api_endpoint`, typed/api.py: this
    layer imports nothing of typed/) when `options.api_key` is given; None: the API is off."""
    if options.api_key is None:
        return None
    make: Callable[[EndpointOptions], EndpointHandler] | None = getattr(app, "api_endpoint", None)
    if make is None:
        raise ConfigurationError("the server API (api_key) needs a typed App")
    return make(options)


def _not_found(request: Request, upgrade: bool) -> Response:
    """A reserved subtree whose endpoint is off (the server API, the client library): its
    paths are nobody's, not the application's either."""
    return error_response(404, "not found")
