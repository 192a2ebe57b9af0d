"""No secret in any log line or exception text (issue 24, item 4).

A scripted session puts secrets everywhere: a Redis URL with a password (a real redis-server
with `requirepass`, whose connections are then killed so the backplane logs its reconnect
warnings), tokens in the clients' URLs (refused, timed out against a silent listener,
malformed, and accepted), an Authorization header, a wrong token that the chat refuses, the
Locust user (in a subprocess: Locust monkey-patches) and the command line with both log
formats (in a subprocess). Every log line (caplog at DEBUG, and each record rendered by
server/logs.py's text and JSON formats), every exception's text and traceback, and every
line the subprocesses wrote is then searched for each secret.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from websock_actors import RedisBackplane
from websock_actors.client import Backoff, connect
from websock_actors.errors import ConfigurationError, RequestError, WebSocketError
from websock_actors.server.logs import JSONFormatter, MaskingFormatter
from websock_actors.testing import ServerThread

from .support.apps import fresh_chat_app
from .support.raw import free_port
from .support.redis_server import _encode, _read_reply
from .support.waits import wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(90)


def secret(kind: str) -> str:
    """A value that can only appear in a text by leaking."""
    return f"{kind}-{secrets.token_hex(8)}"


def as_admin(port: int, password: str, *command: Any) -> Any:
    """One command to the Redis on 127.0.0.1:`port`, authenticated with `password`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(_encode(("AUTH", password)) + _encode(command))
        with sock.makefile("rb") as stream:
            assert _read_reply(stream) == "OK"
            return _read_reply(stream)


def protect(redis_server: Any) -> str:
    """Give the test's own Redis a password (`requirepass`); its URL with that password."""
    password = secret("redis-password")
    redis_server.command("CONFIG", "SET", "requirepass", password)
    return password


def kill_clients(port: int, password: str) -> int:
    """CLIENT KILL every other connection, plain and pub/sub: the backplane must reconnect."""
    return sum(int(as_admin(port, password, "CLIENT", "KILL", "TYPE", kind)) for kind in ("normal", "pubsub"))


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def rendered(record: logging.LogRecord) -> Iterator[str]:
    """A captured record as the code wrote it, and as server/logs.py's formats write it."""
    yield record.getMessage()
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        yield record.stack_info
    yield JSONFormatter(process=True).format(record)
    yield MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)


def leaks(texts: list[str], secret_values: dict[str, str]) -> list[str]:
    """Each secret found, named, with the text around it (once per distinct excerpt)."""
    found: dict[str, None] = {}
    for text in texts:
        for name, value in secret_values.items():
            at = text.find(value)
            if at >= 0:
                found[f"{name}: ...{text[max(0, at - 80) : at + len(value) + 20]}..."] = None
    return list(found)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose listener never accepts: TCP connects (the backlog), nothing answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_masking_functions() -> None:
    from websock_actors.protocol.redact import mask_secrets, mask_url  # new: as above

    assert mask_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask_url("redis://user:p@ss@h/0") == "redis://user:***@h/0"  # up to the last @
    assert mask_url("https://TOKEN@example.com/x") == "https://***@example.com/x"
    assert (
        mask_url("ws://h:1/p?token=t&x=1&api_key=k;client_secret=c&X-Amz-Signature=s#access_token=a")
        == "ws://h:1/p?token=***&x=1&api_key=***;client_secret=***&X-Amz-Signature=***#access_token=***"
    )
    assert mask_url("ws://h/?monkey=1&keys=2&tokenizer=3") == "ws://h/?monkey=1&keys=2&tokenizer=3"
    assert mask_url("ws://127.0.0.1:8000/chat") == "ws://127.0.0.1:8000/chat"
    assert (
        mask_secrets("Error connecting to redis://default:pw@h:1/0; mail a@b.c")
        == "Error connecting to redis://default:***@h:1/0; mail a@b.c"
    )
    assert mask_secrets("{'X-Api-Key': 'k', 'Cookie': 'id=1'}") == "{'X-Api-Key': '***', 'Cookie': '***'}"
    assert mask_secrets("GET /ws?access_token=a.b&x=1 HTTP/1.1") == "GET /ws?access_token=***&x=1 HTTP/1.1"


def test_a_session_with_secrets_everywhere_logs_none(
    redis_server: Any,
    silent_listener: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = protect(redis_server)
    token, wrong, bearer, user_password = (secret(kind) for kind in ("token", "wrong", "bearer", "user-pw"))
    secret_values = {"redis password": password, "token": token, "wrong token": wrong, "bearer": bearer}
    secret_values["URL password"] = user_password
    raised: list[BaseException] = []
    monkeypatch.setenv("CHAT_TOKENS", f"ann:{token}")  # read by the fresh copy of the chat
    app = fresh_chat_app(resume=False)
    monkeypatch.delenv("CHAT_TOKENS")
    url = f"redis://:{password}@127.0.0.1:{redis_server.port}/0"
    backplane = RedisBackplane(url)
    app.use_backplane(backplane)
    server = ServerThread(app).start()
    try:
        pushes_seen: list[str] = []

        def failing_push(message: str | bytes) -> None:
            pushes_seen.append(str(message))
            raise RuntimeError("the application's push handler failed")

        headers = {"Authorization": f"Bearer {bearer}"}
        with (
            connect(f"{server.url}?token={token}", headers=headers, on_push=failing_push) as ann,
            connect(f"{server.url}?token={token}") as ann2,
        ):
            shown = [repr(ann), repr(backplane)]  # what an application would log
            ann.request({"type": "join", "room": "r", "name": "x"})
            ann2.request({"type": "join", "room": "r", "name": "x"})
            ann2.request({"type": "say", "room": "r", "text": "before"})
            # (a ping a try: the client reads, and calls on_push, while it waits for a reply)
            wait_until(lambda: ann.ping() >= 0 and "before" in "".join(pushes_seen), 5, "the push that fails")

            # The backplane loses every connection to Redis, and comes back.
            assert kill_clients(redis_server.port, password) >= 2
            wait_until(lambda: backplane.subscriber.reconnects >= 1, 15, "the subscriber reconnecting")

            def said_again() -> bool:
                try:
                    ann2.request({"type": "say", "room": "r", "text": "after"})
                except RequestError as exc:
                    raised.append(exc)  # backplane_unavailable while the publisher reconnects
                    return False
                return True

            wait_until(said_again, 15, "a broadcast after the reconnect")

        # A wrong token: refused by the app (401).
        with pytest.raises(WebSocketError) as refused:
            connect(f"{server.url}?token={wrong}", headers=headers)
        assert refused.value.status == 401  # type: ignore[attr-defined]
        raised.append(refused.value)
    finally:
        server.stop()

    # A refused port, with a retry (logged at INFO).
    closed_port = free_port()
    with pytest.raises(ConnectionRefusedError) as no_server:
        connect(f"ws://127.0.0.1:{closed_port}/?token={token}", reconnect=Backoff(0.01, max_attempts=1))
    raised.append(no_server.value)
    # A listener that never answers: the open times out, is retried once, times out again.
    with pytest.raises(TimeoutError) as silent:
        connect(
            f"ws://127.0.0.1:{silent_listener}/?token={token}",
            open_timeout=0.2,
            reconnect=Backoff(initial=0.01, max_attempts=1),
        )
    raised.append(silent.value)
    # URLs the client refuses to parse, credentials in them.
    for bad in (
        f"ftp://ann:{user_password}@127.0.0.1/?token={token}",
        f"ws://ann:{user_password}@127.0.0.1/?token={token}#top",
    ):
        with pytest.raises(ValueError) as malformed:
            connect(bad)
        raised.append(malformed.value)
    # A Redis URL the backplane does not take.
    with pytest.raises(ConfigurationError) as unsupported:
        RedisBackplane(f"rediss://:{password}@127.0.0.1:{redis_server.port}/0")
    raised.append(unsupported.value)

    messages = [record.getMessage() for record in caplog.records]
    # The session did what it is meant to: each kind of line and error is there.
    assert any("connecting to" in m and "failed" in m for m in messages), messages
    assert any("on_push failed" in m for m in messages), messages
    assert any("Redis" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING), messages
    assert any("RedisBackplane" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "took over 0.2 s" in str(silent.value)

    texts = [text for record in caplog.records for text in rendered(record)]
    texts += [text for exc in raised for text in exception_texts(exc)]
    found = leaks([*texts, *shown], secret_values)
    assert not found, "\n".join(found)


LOCUST_SESSION = r"""
import json, logging, sys, traceback

from locust.env import Environment

from websock_actors.contrib.locust import WebSocketUser

lines = []


class Keep(logging.Handler):
    def emit(self, record):
        lines.append(self.format(record))


keep = Keep()
keep.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
logging.getLogger().addHandler(keep)
logging.getLogger().setLevel(logging.DEBUG)


class Visitor(WebSocketUser):
    open_timeout = 0.2
    headers = {"Authorization": "Bearer " + sys.argv[1]}


environment = Environment(user_classes=[Visitor])
failures = []
environment.events.request.add_listener(
    lambda name, exception=None, **_: failures.append(f"{name}: {exception!r} {exception}")
)
raised = []
for host in sys.argv[2:]:
    Visitor.host = host
    user = Visitor(environment)
    try:
        user.connect()
    except Exception as exc:
        raised.append("".join(traceback.format_exception(exc)))
print(json.dumps({"logs": lines, "failures": failures, "raised": raised}))
"""


def test_the_locust_user_reports_no_secret(silent_listener: int) -> None:
    token, bearer, password = secret("token"), secret("bearer"), secret("user-pw")
    hosts = [
        f"ws://127.0.0.1:{free_port()}/?token={token}",  # refused
        f"ws://127.0.0.1:{silent_listener}/?token={token}",  # times out
        f"ftp://ann:{password}@127.0.0.1:1/?token={token}",  # not a WebSocket URL
    ]
    result = subprocess.run(
        [sys.executable, "-c", LOCUST_SESSION, bearer, *hosts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["failures"]) == 2 and len(report["raised"]) == 1, report
    texts = [*report["logs"], *report["failures"], *report["raised"], result.stderr]
    found = leaks(texts, {"token": token, "bearer": bearer, "URL password": password})
    assert not found, "\n".join(found)


def logging_to(log_format: str, lines: str) -> str:
    """What `configure_logging` (the command line's) writes for `lines` of Python."""
    code = (
        "import logging\n"
        "from websock_actors.server.logs import configure_logging\n"
        f"configure_logging('DEBUG', {log_format!r})\n"
        "other = logging.getLogger('some.library')\n" + lines
    )
    run = [sys.executable, "-c", code]
    result = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_log_formats_mask_urls_whoever_logs_them(log_format: str) -> None:
    """Defence in depth: a line that a library formats itself, with a URL's userinfo, a
    token and a credential header in the message, the arguments and the exception."""
    password, token, key = secret("pw"), secret("token"), secret("key")
    output = logging_to(
        log_format,
        f"other.warning('lost %s', 'redis://:{password}@10.0.0.1:6379/0')\n"
        f"other.info('calling ws://h/?access_token={token} with %r', {{'X-Api-Key': '{key}'}})\n"
        "try:\n"
        f"    raise ConnectionError('Error connecting to redis://user:{password}@10.0.0.1')\n"
        "except ConnectionError:\n"
        "    other.exception('gave up', extra={'target': "
        f"'redis://:{password}@h/0'}})\n",
    )
    found = leaks([output], {"password": password, "token": token, "key": key})
    assert not found, "\n".join(found)
    assert output.count(":***@") == 2 + (log_format == "json")  # the extra field, in JSON only
    if log_format == "json":
        entries = [json.loads(line) for line in output.splitlines()]
        assert [entry["logger"] for entry in entries] == ["some.library"] * 3
        assert "redis://user:***@10.0.0.1" in entries[2]["exception"]


def test_the_masking_filter_keeps_the_json_fields_of_a_masked_line() -> None:
    """A masked record loses its arguments (the message is final): the connection and peer
    they gave stay in the JSON line."""

    class About:  # what the JSON format takes a connection from: an id and an address
        id = 7
        address = ("127.0.0.1", 50312)

    from websock_actors.server.logs import MaskingFilter  # new: imported here, so main runs the rest

    args = (About(), f"redis://:{secret('pw')}@h/0")
    record = logging.LogRecord("websock_actors", logging.WARNING, __file__, 1, "%r: lost %s", args, None)
    assert MaskingFilter().filter(record)
    entry = json.loads(JSONFormatter().format(record))
    assert entry["event"].endswith("lost redis://:***@h/0")
    assert (entry["connection"], entry["peer"]) == (7, "127.0.0.1:50312")


def test_the_command_line_refuses_a_redis_url_without_echoing_its_password() -> None:
    password = secret("pw")
    command = [
        sys.executable, "-m", "websock_actors", "run", "examples.chat:app", "--port", "0", "--no-patch",
        "--redis", f"rediss://:{password}@127.0.0.1:1/0",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.startswith("error: --redis rediss://:***@127.0.0.1:1/0: "), result.stderr
    assert password not in result.stderr + result.stdout


def wait_for_line(path: Path, wanted: Callable[[str], bool], what: str) -> str:
    def found() -> str | None:
        return next((line for line in path.read_text().splitlines() if wanted(line)), None)

    return str(wait_until(found, 20, what))


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_command_line_with_a_redis_password_logs_none(
    redis_server: Any, tmp_path: Path, log_format: str
) -> None:
    password = protect(redis_server)
    token, wrong = secret("token"), secret("wrong")
    port = free_port()
    url = f"redis://:{password}@127.0.0.1:{redis_server.port}/0"
    stderr = tmp_path / "stderr"
    command = [
        sys.executable, "-m", "websock_actors", "run", "examples.chat:app", "--port", str(port),
        "--redis", url, "--log-level", "DEBUG", "--log-format", log_format,
    ]  # fmt: skip
    env = {**os.environ, "CHAT_TOKENS": f"ann:{token}"}
    with open(stderr, "w") as errors:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        headers = {"Authorization": f"Bearer {token}"}
        with connect(f"ws://127.0.0.1:{port}/?token={token}", headers=headers) as ann:
            ann.request({"type": "join", "room": "r", "name": "x"})
            assert kill_clients(redis_server.port, password) >= 2
            wait_for_line(stderr, lambda line: "subscriber is back" in line, "the subscriber reconnecting")

            def said_again() -> bool:
                try:
                    ann.request({"type": "say", "room": "r", "text": "after"})
                except RequestError:
                    return False
                return True

            wait_until(said_again, 15, "a broadcast after the reconnect")
        with pytest.raises(WebSocketError):
            connect(f"ws://127.0.0.1:{port}/?token={wrong}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    output = stderr.read_text()
    assert "WARNING" in output and "RedisBackplane" in output, output
    if log_format == "json":
        assert all(json.loads(line) for line in output.splitlines())
    found = leaks([output], {"redis password": password, "token": token, "wrong token": wrong})
    assert not found, "\n".join(found)
