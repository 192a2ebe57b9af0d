"""Legacy blocking code under the CLI (which monkey-patches), in a subprocess, and without patching."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from ..support.raw import free_port, wait_listening
from ..test_examples import ROOT


class SlowEndpoint:
    """A local HTTP endpoint that answers 2 seconds after a request arrives."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.arrived.set()
                endpoint.release.wait(2.0)
                body = b"slow answer"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/slow"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> SlowEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def legacy_server(*extra: str) -> contextlib.AbstractContextManager[str]:
    return serving("examples.legacy_sync:app", *extra)


def request(ws: ClientConnection, **message: Any) -> None:
    ws.send(json.dumps(message))


def reply(ws: ClientConnection, timeout: float) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(ws.recv(timeout=timeout))
    return answer


def early(ws: ClientConnection) -> str | bytes | None:
    """A message already received (for the assertion's message), or None."""
    try:
        return ws.recv(timeout=0)
    except TimeoutError:
        return None


@pytest.mark.timeout(60)
def test_blocking_calls_in_handlers_do_not_stall_other_connections() -> None:
    with (
        SlowEndpoint() as slow,
        legacy_server() as url,
        connect(url) as napper,
        connect(url) as fetcher,
        connect(url) as pinger,
    ):
        request(napper, type="nap", id="n", seconds=2)
        request(fetcher, type="fetch", id="f", url=slow.url)
        assert slow.arrived.wait(10)  # the fetch is in flight inside the server
        request(pinger, type="ping", id="p")
        assert reply(pinger, 5) == {"type": "pong", "id": "p"}
        assert early(napper) is None  # answered before either
        assert early(fetcher) is None
        request(pinger, type="report", id="r")
        assert reply(pinger, 5) == {"type": "report", "id": "r", "rows": 6667}
        assert early(napper) is None  # the report ran while the nap was in flight
        assert reply(napper, 10) == {"type": "napped", "id": "n"}
        assert reply(fetcher, 10) == {"type": "fetched", "id": "f", "status": 200, "bytes": 11}


@pytest.mark.timeout(60)
def test_without_patching_one_blocking_call_stalls_everyone() -> None:
    with (
        SlowEndpoint() as slow,
        legacy_server("--no-patch") as url,
        connect(url) as fetcher,
        connect(url) as pinger,
    ):
        request(fetcher, type="fetch", id="f", url=slow.url)
        assert slow.arrived.wait(10)  # the server's only thread now blocks in urlopen
        request(pinger, type="ping", id="p")
        assert reply(pinger, 10) == {"type": "pong", "id": "p"}
        # The ping could only be answered after the fetch finished:
        assert reply(fetcher, 0.5) == {"type": "fetched", "id": "f", "status": 200, "bytes": 11}


@pytest.mark.timeout(60)
def test_fetch_failure_is_a_typed_error() -> None:
    with legacy_server() as url, connect(url) as ws:
        request(ws, type="fetch", id="x", url=f"http://127.0.0.1:{free_port()}/nothing-listens")
        answer = reply(ws, 15)
        assert (answer["type"], answer["code"], answer["id"]) == ("error", "fetch_failed", "x")
        request(ws, type="nap", id="bad", seconds=11)
        assert reply(ws, 5)["code"] == "validation_error"


@contextlib.contextmanager
def serving(target: str, *extra: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", target, "--port", str(port), *extra]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("patched", [True, False])
def test_a_threading_local_outlives_messages_only_where_threads_are_greenlets(patched: bool) -> None:
    """Under monkey-patching (the CLI's default) a raw app's handlers keep the connection's
    own greenlet, for life: a `threading.local` set in on_connect is the client's in every
    on_message, as with a thread per client (a shared runner, or a new greenlet after an idle
    period, would lose it). Without patching they run on the shared runner and idle actors
    give their greenlet up: faster and smaller, for code that keeps its state on the
    connection."""
    extra = () if patched else ("--no-patch",)
    app = "tests.support.thread_local_app:app"
    with serving(app, *extra) as url, connect(url) as ann, connect(url) as bob:
        for ws in (ann, bob, ann):
            ws.send("who?")
            answer = json.loads(ws.recv(timeout=10))
            assert (answer["runner"], answer["dormant_when_idle"]) == (not patched, not patched), answer
            if patched:  # unpatched, a threading.local is the one OS thread's: every client's
                assert answer["mine"], answer
