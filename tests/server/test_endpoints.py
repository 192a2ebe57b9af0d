"""The router of the server's own endpoints: exact paths and subtrees, what a handler returns,
and the built-in routes that EndpointOptions turns on."""

from __future__ import annotations

from examples.echo import app as echo_app
from websock_actors.protocol.http import Headers, Request, Response
from websock_actors.server.app import Application
from websock_actors.server.endpoints import EndpointRouter, builtin_router
from websock_actors.server.server_options import EndpointOptions
from websock_actors.server.status_page import StatusPage

OK = Response(200, "OK", Headers([]), b"ok")


def request(target: str, method: str = "GET") -> Request:
    return Request(method, target, "HTTP/1.1", Headers([("Host", "x")]))


def test_exact_paths_and_subtrees() -> None:
    router = EndpointRouter()
    assert not router
    router.add("/one", lambda request, upgrade: OK)
    router.add("/_tree", lambda request, upgrade: None if upgrade else OK, subtree=True)
    assert router
    assert router.route(request("/one?x=1"), False) is OK
    assert router.route(request("/one/two"), False) is None  # not a subtree
    assert router.route(request("/_tree"), False) is OK
    assert router.route(request("/_tree/deep/er"), False) is OK
    assert router.route(request("/_tree/deep"), True) is None  # the handler passes
    assert router.route(request("/_treetop"), False) is None  # a prefix is not a subtree
    assert router.route(request("/"), False) is None


def test_the_builtin_routes_follow_the_options() -> None:
    def no_metrics() -> tuple[bytes, str]:
        raise AssertionError("not asked")

    off = builtin_router(EndpointOptions(health=False), lambda: None, no_metrics, None)
    assert off.route(request("/healthz"), False) is None
    no_api = off.route(request("/_api/broadcast", "POST"), False)  # reserved, also when off
    assert isinstance(no_api, Response) and no_api.status == 404
    on = builtin_router(EndpointOptions(metrics=True), lambda: "busy", lambda: (b"x 1\n", "text/plain"), None)
    healthz = on.route(request("/healthz"), False)
    assert isinstance(healthz, Response) and healthz.status == 200
    readyz = on.route(request("/readyz"), False)
    assert isinstance(readyz, Response) and readyz.status == 503
    assert on.route(request("/readyz"), True) is None  # an upgrade is the application's
    metrics = on.route(request("/metrics"), False)
    assert isinstance(metrics, Response) and metrics.status == 200
    assert on.route(request("/metrics", "POST"), False) is None
    assert on.route(request("/_status"), False) is None  # the status page is off


def test_the_status_page_takes_its_websocket_over() -> None:
    page = StatusPage("secret", lambda: {}, echo_app, summed=False)
    router = builtin_router(EndpointOptions(), lambda: None, lambda: (b"", "text/plain"), page)
    refused = router.route(request("/_status/ws"), True)
    assert isinstance(refused, Response) and refused.status == 401
    taken = router.route(request("/_status/ws?token=secret"), True)
    assert isinstance(taken, Application) and taken is page
