"""Health endpoints on the WebSocket's port, for load balancers and orchestrators.

    GET /healthz   200 while the process is alive (liveness)
    GET /readyz    200 while the server admits connections and the application is ready
                   (a typed App with a backplane: while Redis is connected); 503 with the
                   reason while draining or not ready (readiness)

They are answered before the application's hooks (authentication does not guard them) and
for GET and HEAD only; `EndpointOptions(health=False)` turns them off.
"""

from __future__ import annotations

from ..protocol.http import Headers, Request, Response, error_response

__all__ = ["HEALTH_PATHS", "health_answer"]

HEALTH_PATHS = ("/healthz", "/readyz")

_OK = Response(200, "OK", Headers([("Content-Type", "text/plain; charset=utf-8")]), b"ok\n")


def health_answer(request: Request, not_ready: str | None) -> Response | None:
    """The answer to a health request, or None when `request` is not one.
    `not_ready`: why the server is not ready (None: ready)."""
    if request.method not in ("GET", "HEAD"):
        return None
    path = request.bare_path
    if path == "/healthz":
        return _OK
    if path == "/readyz":
        return _OK if not_ready is None else error_response(503, not_ready, [("Retry-After", "1")])
    return None
