"""`--log-format json`: every line of standard error is one JSON object, with the connection it
is about and the close code, and credentials masked (the CLI in a subprocess)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from websock_actors.client import connect
from websock_actors.server.logs import JSONFormatter, mask_secrets

from ..support.raw import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_json_lines_with_connection_code_and_masked_secrets() -> None:
    port = free_port()
    command = [
        sys.executable, "-m", "websock_actors", "run", "tests.support.log_app:app", "--port", str(port)
    ]
    proc = subprocess.Popen(
        [*command, "--no-patch", "--log-format", "json", "--log-level", "DEBUG"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "serving" in proc.stdout.readline()
        headers = {"Authorization": "Bearer abc.def.ghi", "Cookie": "session=xyz123"}
        with connect(f"ws://127.0.0.1:{port}/chat?room=a&token=s3cret", headers=headers) as ws:
            assert ws.request({"type": "ping"})["type"] == "ack"
    finally:
        proc.terminate()
        _, errors = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in errors.splitlines() if line.strip()]  # each line parses
    assert lines and all({"time", "level", "logger", "event"} <= line.keys() for line in lines)
    (upgrade,) = [line for line in lines if line["event"].startswith("upgrade ")]
    assert "room=a" in upgrade["event"] and "token=***" in upgrade["event"]
    assert "('Authorization', '***')" in upgrade["event"] and "('Cookie', '***')" in upgrade["event"]
    assert "s3cret" not in errors and "abc.def" not in errors and "xyz123" not in errors
    (closed,) = [line for line in lines if line["event"].endswith("closed: 1000 ")]
    assert closed["code"] == 1000 and isinstance(closed["connection"], int)
    assert closed["peer"].startswith("127.0.0.1:") and closed["level"] == "DEBUG"


def test_masking_and_exceptions() -> None:
    assert mask_secrets("GET /ws?access_token=a.b&x=1 HTTP/1.1") == "GET /ws?access_token=***&x=1 HTTP/1.1"
    assert mask_secrets("'authorization': 'Basic dXNlcg=='") == "'authorization': '***'"
    assert mask_secrets("Set-Cookie: id=1; HttpOnly") == "Set-Cookie: ***"
    assert mask_secrets("nothing secret here") == "nothing secret here"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed on %s", ("/?password=hunter2",), None)
    try:
        raise ValueError("password=hunter2 leaked")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JSONFormatter().format(record))
    assert line["event"] == "failed on /?password=***"
    assert "hunter2" not in json.dumps(line) and "ValueError" in line["exception"]
