"""GET /_wsa/client.js (server/client_js.py): the browser client library, served with an
ETag, 304 on If-None-Match, gzip when accepted, and off with `client_js=False`."""

from __future__ import annotations

import gzip
import http.client
import subprocess
import sys
from pathlib import Path

import pytest

from examples.echo import app as echo_app
from websock_actors.server import EndpointOptions, Server
from websock_actors.server.client_js import ClientScript, accepts_gzip
from websock_actors.testing import ServerThread

from ..support.raw import free_port, raw_exchange, split_response, upgrade_request, wait_listening

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "clients" / "js" / "src" / "client.js"
PATH = "/_wsa/client.js"


def get(port: int, path: str = PATH, method: str = "GET", **headers: str) -> (
    tuple[int, dict[str, str], bytes]
):
    """One request; `If_None_Match="x"` sends `If-None-Match: x`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_served_file_is_the_npm_packages_source() -> None:
    """One file: the package's source is a link to what the server serves (and the wheel ships)."""
    served = ROOT / "websock_actors" / "static" / "client.js"
    assert SOURCE.is_symlink() and SOURCE.resolve() == served.resolve()


def test_get_serves_the_library_with_an_etag() -> None:
    with ServerThread(echo_app) as server:
        status, headers, body = get(server.port)
        assert status == 200 and body == SOURCE.read_bytes()
        assert headers["content-type"] == "text/javascript; charset=utf-8"
        assert headers["cache-control"] == "no-cache" and "content-encoding" not in headers
        etag = headers["etag"]
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
        for match in (etag, f'"other", {etag}', f"W/{etag}", "*"):
            status, again, body = get(server.port, If_None_Match=match)
            assert (status, body, again["etag"]) == (304, b"", etag), match
            assert "content-length" not in again  # a 304's length would be the 200's
        status, _, body = get(server.port, If_None_Match='"stale"')
        assert status == 200 and body == SOURCE.read_bytes()


def test_gzip_when_the_client_accepts_it() -> None:
    with ServerThread(echo_app) as server:
        status, headers, body = get(server.port, Accept_Encoding="gzip, deflate, br")
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert headers["vary"] == "Accept-Encoding"
        assert gzip.decompress(body) == SOURCE.read_bytes()
        assert len(body) <= 5 * 1024  # the bound, as served
        plain_etag = get(server.port)[1]["etag"]
        assert headers["etag"] != plain_etag  # a strong validator per representation
        assert get(server.port, Accept_Encoding="gzip", If_None_Match=headers["etag"])[0] == 304
        _, refused, body = get(server.port, Accept_Encoding="gzip;q=0, identity")
        assert "content-encoding" not in refused and body == SOURCE.read_bytes()


def test_accept_encoding_values() -> None:
    assert accepts_gzip("gzip") and accepts_gzip("GZIP;q=0.5")
    assert accepts_gzip("*") and accepts_gzip("x-gzip")
    assert not accepts_gzip(None) and not accepts_gzip("br") and not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("*, gzip;q=0") and not accepts_gzip("gzip;q=nonsense")
    assert ClientScript(b"x" * 1000).gzip_size < 100


def test_head_other_methods_other_paths_and_upgrades() -> None:
    with ServerThread(echo_app) as server:
        status, headers, body = get(server.port, method="HEAD")
        assert (status, body) == (200, b"") and int(headers["content-length"]) == len(SOURCE.read_bytes())
        status, headers, _ = get(server.port, method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        assert get(server.port, "/_wsa/other.js")[0] == 404
        assert get(server.port, PATH + "?v=1")[0] == 200
        status, _, _ = split_response(raw_exchange(server.port, upgrade_request(PATH)))
        assert status == 404


def test_off_with_the_endpoint_option_and_the_flat_keyword() -> None:
    with ServerThread(echo_app, endpoints=EndpointOptions(client_js=False)) as server:
        assert get(server.port)[0] == 404
    with ServerThread(echo_app, client_js=False) as server:  # Server.from_keywords
        assert get(server.port)[0] == 404
        assert get(server.port, "/healthz")[0] == 200
    with pytest.warns(DeprecationWarning, match=r"endpoints=EndpointOptions\(client_js=\.\.\.\)"):
        Server(echo_app, client_js=False)


def test_off_with_the_cli_flag() -> None:
    port = free_port()
    command = [sys.executable, "-m", "websock_actors", "run", "examples.echo:app", "--port", str(port)]
    for flag, expected in ((["--no-client-js"], 404), ([], 200)):
        quiet = subprocess.DEVNULL
        proc = subprocess.Popen([*command, *flag], cwd=ROOT, stdout=quiet, stderr=quiet)
        try:
            wait_listening(port, proc)
            assert get(port)[0] == expected
        finally:
            proc.terminate()
            proc.wait(10)
