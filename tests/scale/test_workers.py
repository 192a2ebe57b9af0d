"""`websock-actors run --workers N`: one port served by N forked processes, and the room check
(rooms used without a backplane raise ConfigurationError at their first use).

The server runs in a subprocess on 127.0.0.1; `tests/support/pid_app.py` answers every message with
its worker's PID, so a test sees which worker took a connection.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from websock_actors import App, Context, Message, WebSocketApp
from websock_actors.cli import load_app
from websock_actors.errors import ConnectionClosed as ClosedHere
from websock_actors.scale.cpu_quota import available_cpus
from websock_actors.scale.workers import parse_workers
from websock_actors.testing import TestClient
from websock_actors.typed.rooms import LocalRooms

from ..support.raw import free_port
from ..support.waits import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_LINE = re.compile(r"websock-actors: worker (\d+) \(pid (\d+)\) serving (\S+) on (ws://\S+)")
ROOMS_ERROR = (
    "ConfigurationError: examples.chat:app uses rooms: with --workers 2 every process would keep"
    " its own rooms (a message reaches only the members in its process);"
    " add --redis redis://HOST:PORT/DB to share them"
)


@dataclass
class Cluster:
    """A `websock-actors run ... --workers N` subprocess, its stdout read line by line."""

    proc: subprocess.Popen[str]
    port: int
    stderr: IO[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    workers: dict[int, int] = field(default_factory=dict)  # index -> pid of its latest process

    def __post_init__(self) -> None:
        assert self.proc.stdout is not None
        stream = self.proc.stdout

        def pump() -> None:
            for line in stream:
                self.lines.put(line.rstrip("\n"))
            self.lines.put(None)  # EOF

        threading.Thread(target=pump, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def next_line(self, timeout: float = 20.0) -> str | None:
        """The next line of output, None at its end."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output for {timeout} s; so far: {self.seen}") from None
        if line is None:
            return None
        self.seen.append(line)
        match = WORKER_LINE.fullmatch(line)
        if match:
            self.workers[int(match[1])] = int(match[2])
        return line

    def wait_for_workers(self, count: int, timeout: float = 20.0) -> dict[int, int]:
        """Read until `count` worker lines came; their {index: pid}."""
        deadline = time.monotonic() + timeout
        while len(self.workers) < count:
            line = self.next_line(max(0.1, deadline - time.monotonic()))
            assert line is not None, f"the server ended: {self.seen}"
        return dict(self.workers)

    def rest(self, timeout: float = 10.0) -> list[str]:
        """Every line up to the end of the output."""
        lines = []
        while (line := self.next_line(timeout)) is not None:
            lines.append(line)
        return lines

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()


def _command(app: str, port: int, *options: str) -> list[str]:
    return [sys.executable, "-m", "websock_actors", "run", app, "--port", str(port), *options]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    """`start(*options, app=..., prelude=...)` runs the server with `--workers 2` unless told;
    whatever is left running is killed afterwards (the master, then its workers, by PID)."""
    clusters: list[Cluster] = []

    def run(*options: str, app: str = "tests.support.pid_app:app", prelude: str | None = None) -> Cluster:
        port = free_port()
        command = _command(app, port, *(options or ("--workers", "2")))
        if prelude is not None:  # code to run first in the server's interpreter
            code = f"{prelude}\nimport sys\nfrom websock_actors.cli import main\nsys.exit(main(sys.argv[1:]))"
            command = [sys.executable, "-c", code, *command[3:]]
        stderr = open(tmp_path / f"stderr-{len(clusters)}.log", "w+")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
        cluster = Cluster(proc, port, stderr)
        clusters.append(cluster)
        return cluster

    yield run
    for cluster in clusters:
        if cluster.proc.poll() is None:
            cluster.proc.kill()
            cluster.proc.wait(10)
        for pid in cluster.workers.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        cluster.stderr.close()


def _alive(pid: int) -> bool:
    """Running (a zombie, left for whoever adopted an orphan to reap, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill
    return stat.rpartition(")")[2].split()[0] != "Z"


def _pid_of(ws: ClientConnection) -> int:
    ws.send("pid?")
    return int(ws.recv(timeout=5))


def _stop(cluster: Cluster, signum: int = signal.SIGTERM) -> list[str]:
    cluster.proc.send_signal(signum)
    assert cluster.proc.wait(timeout=20) == 0, cluster.log()
    return cluster.rest()


@pytest.mark.timeout(60)
def test_connections_are_spread_over_the_workers(start) -> None:
    cluster = start()
    workers = cluster.wait_for_workers(2)
    assert sorted(workers) == [1, 2]
    assert all(WORKER_LINE.fullmatch(line)[4] == cluster.url for line in cluster.seen if "serving" in line)
    pids = []
    for _ in range(20):  # one TCP connection each: the kernel spreads them by their 4-tuple
        with connect(cluster.url, compression=None) as ws:
            pids.append(_pid_of(ws))
    assert set(pids) == set(workers.values()), pids
    assert cluster.proc.pid not in pids  # the master serves nothing
    assert "websock-actors: stopped" in _stop(cluster)
    assert "Traceback" not in cluster.log()


@pytest.mark.timeout(60)
def test_a_killed_worker_is_restarted(start) -> None:
    cluster = start()
    before = cluster.wait_for_workers(2)
    os.kill(before[1], signal.SIGKILL)
    while cluster.workers[1] == before[1]:  # the master forks worker 1 again, after 0.1 s
        assert cluster.next_line() is not None, f"the server ended: {cluster.seen}"
    restarted = cluster.workers[1]
    assert restarted not in before.values()
    assert cluster.workers[2] == before[2]
    seen = set()
    for _ in range(40):
        with connect(cluster.url, compression=None) as ws:
            seen.add(_pid_of(ws))
        if seen == {restarted, before[2]}:
            break
    assert seen == {restarted, before[2]}
    assert not _alive(before[1])
    assert "websock-actors: stopped" in _stop(cluster)
    log = cluster.log()
    assert f"worker 1 (pid {before[1]}) was killed by SIGKILL; restarting it in 0.1 s" in log
    assert "Traceback" not in log


@pytest.mark.timeout(60)
def test_a_stuck_worker_is_killed_and_replaced(start) -> None:
    cluster = start("--workers", "2", "--worker-timeout", "2")
    before = cluster.wait_for_workers(2)
    with connect(cluster.url, compression=None) as ws:
        stuck = _pid_of(ws)
        index = next(i for i, pid in before.items() if pid == stuck)
        ws.send("spin 60")  # its hub never runs again: it holds its socket, accepting nothing
        with pytest.raises(ConnectionClosed) as info:  # not a timeout: the process was killed
            ws.recv(timeout=15)
        assert info.value.rcvd is None  # dropped (1006), no closing handshake
    while cluster.workers[index] == stuck:  # the master forks worker `index` again
        assert cluster.next_line(timeout=15) is not None, f"the server ended: {cluster.seen}"
    replaced = cluster.workers[index]
    other = 3 - index
    assert replaced not in before.values()
    assert cluster.workers[other] == before[other]  # alive all along: its heartbeats came
    wait_until(lambda: not _alive(stuck), 5, "the stuck worker's end")
    served = []
    for _ in range(20):  # each new client connects, whichever worker the kernel picks
        with connect(cluster.url, compression=None, open_timeout=5) as ws:
            served.append(_pid_of(ws))
    assert set(served) <= {replaced, before[other]} and len(served) == 20, served
    assert "websock-actors: stopped" in _stop(cluster)
    log = cluster.log()
    silent = re.findall(rf"WARNING.* worker {index} \(pid {stuck}\) silent for (\d+\.\d) s", log)
    assert len(silent) == 1, log  # one line, with the reason; killed once
    assert 2.0 <= float(silent[0]) < 6.0, silent
    assert f"worker {index} (pid {stuck}) was killed by SIGKILL; restarting it" in log
    assert "silent for" not in log.replace(f"(pid {stuck}) silent for", "")  # nobody else
    assert "Traceback" not in log


@pytest.mark.timeout(60)
def test_workers_frozen_with_their_master_are_not_blamed(start) -> None:
    # Ctrl-Z, then `fg`: the whole server was stopped for longer than the timeout, workers and
    # master alike; no worker was silent while the master watched, so none is replaced.
    cluster = start("--workers", "2", "--worker-timeout", "2")
    before = cluster.wait_for_workers(2)
    with ExitStack() as stack:
        by_pid: dict[int, ClientConnection] = {}
        for _ in range(40):
            ws = stack.enter_context(connect(cluster.url, compression=None))
            by_pid.setdefault(_pid_of(ws), ws)
            if len(by_pid) == 2:
                break
        assert set(by_pid) == set(before.values())
        frozen = [cluster.proc.pid, *before.values()]
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(3.5)  # the scenario: frozen for longer than --worker-timeout
        for pid in frozen:  # the master first: it must not judge the workers before they run
            os.kill(pid, signal.SIGCONT)
        index = 1
        by_pid[before[index]].send("spin 60")  # now one of them does get stuck
        while cluster.workers[index] == before[index]:
            assert cluster.next_line(timeout=15) is not None, f"the server ended: {cluster.seen}"
        for pid, ws in by_pid.items():  # the other one served on, untouched
            if pid != before[index]:
                assert _pid_of(ws) == pid
    assert cluster.workers[2] == before[2]
    assert "websock-actors: stopped" in _stop(cluster)
    log = cluster.log()
    assert log.count("silent for") == 1, log
    assert f"worker 1 (pid {before[1]}) silent for" in log


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_the_master_closes_every_client_with_1001(start, signum: int) -> None:
    cluster = start()
    workers = cluster.wait_for_workers(2)
    with ExitStack() as stack:
        clients: dict[int, list[ClientConnection]] = {pid: [] for pid in workers.values()}
        for _ in range(60):  # a few open clients on each worker
            ws = stack.enter_context(connect(cluster.url, compression=None))
            clients[_pid_of(ws)].append(ws)
            if all(len(open_) >= 3 for open_ in clients.values()):
                break
        assert all(len(open_) >= 3 for open_ in clients.values()), {p: len(c) for p, c in clients.items()}
        cluster.proc.send_signal(signum)
        for ws in (ws for open_ in clients.values() for ws in open_):
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
            assert info.value.rcvd is not None, info.value
            assert info.value.rcvd.code == 1001
    assert cluster.proc.wait(timeout=20) == 0
    rest = cluster.rest()
    assert rest[-1] == "websock-actors: stopped", rest
    for index, pid in workers.items():
        assert f"websock-actors: worker {index} (pid {pid}) stopped" in rest
        assert not _alive(pid), f"worker {index} (pid {pid}) outlived its master"
    assert "Traceback" not in cluster.log()


@pytest.mark.timeout(60)
def test_workers_stop_when_their_master_is_killed(start) -> None:
    cluster = start()
    workers = cluster.wait_for_workers(2)
    with connect(cluster.url, compression=None) as ws:
        assert _pid_of(ws) in workers.values()
        cluster.proc.kill()  # no forwarding now: each worker notices its parent is gone
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert cluster.proc.wait(timeout=10) == -signal.SIGKILL
    rest = cluster.rest()  # the end of the output: the workers, who shared the pipe, are gone
    for index, pid in workers.items():
        assert f"websock-actors: worker {index} (pid {pid}) stopped" in rest
    assert "is gone: stopping" in cluster.log()


@pytest.mark.timeout(60)
def test_workers_auto_starts_one_per_cpu(start) -> None:
    count = available_cpus()  # the affinity mask and the cgroup's CPU quota
    cluster = start("--workers", "auto")
    workers = cluster.wait_for_workers(count)
    assert sorted(workers) == list(range(1, count + 1))
    assert len(set(workers.values())) == count
    assert "websock-actors: stopped" in _stop(cluster)
    assert len(cluster.workers) == count  # no extra worker came up meanwhile


@pytest.mark.timeout(60)
def test_workers_share_the_masters_socket_without_so_reuseport(start) -> None:
    # As where SO_REUSEPORT is missing or refused: the master binds, the workers inherit.
    cluster = start(
        prelude="from websock_actors.scale import listeners\nlisteners.reuse_port_works = lambda _: False"
    )
    workers = cluster.wait_for_workers(2)
    for _ in range(5):
        with connect(cluster.url, compression=None) as ws:
            assert _pid_of(ws) in workers.values()
    assert "websock-actors: stopped" in _stop(cluster)
    assert "Traceback" not in cluster.log()


@pytest.mark.timeout(60)
def test_a_worker_that_cannot_start_stops_the_master(start) -> None:
    cluster = start("--workers", "2", "--max-connections", "0")  # refused by each worker's Server
    assert cluster.proc.wait(timeout=20) == 1
    assert cluster.rest() == [f"websock-actors: master (pid {cluster.proc.pid}) starting 2 workers"]
    log = cluster.log()
    assert log.count("error: max_connections must be at least 1") == 1, log  # once: worker 1 alone
    assert log.count("before it served: stopping") == 1, log
    assert "Traceback" not in log


def _refused(*command: str) -> list[str]:
    """Run a command that must refuse to start: its stderr lines."""
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, done
    assert "serving" not in done.stdout, done.stdout
    return done.stderr.splitlines()


@pytest.mark.timeout(60)
def test_an_app_with_rooms_needs_redis_with_several_workers(start) -> None:
    cluster = start("--workers", "2", "--no-patch", app="examples.chat:app")
    cluster.wait_for_workers(2)
    with connect(cluster.url, open_timeout=10) as ws:
        ws.send('{"type": "join", "id": 1, "room": "r", "name": "ann"}')
        reply = json.loads(ws.recv(timeout=10))
        while reply.get("id") != 1:  # session_opened first (the chat resumes sessions)
            reply = json.loads(ws.recv(timeout=10))
    assert (reply["type"], reply["code"]) == ("error", "handler_error")
    deadline = time.monotonic() + 10
    while ROOMS_ERROR not in cluster.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ROOMS_ERROR in cluster.log()


@pytest.mark.timeout(60)
def test_several_workers_need_a_fixed_port() -> None:
    (line,) = _refused(*_command("tests.support.pid_app:app", 0, "--workers", "2"))
    assert line.startswith("error: --workers needs a fixed --port")


@pytest.mark.timeout(60)
def test_a_taken_port_is_refused_before_any_fork() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (line,) = _refused(*_command("tests.support.pid_app:app", port, "--workers", "2"))
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}")


@pytest.mark.timeout(60)
def test_a_negative_worker_timeout_is_refused() -> None:
    command = _command("tests.support.pid_app:app", free_port(), "--workers", "2", "--worker-timeout", "-1")
    (line,) = _refused(*command)
    assert line == "error: --worker-timeout must be 0 (off) or more, not -1"


@pytest.mark.timeout(60)
def test_redis_needs_a_typed_app() -> None:
    (line,) = _refused(*_command("tests.support.pid_app:app", free_port(), "--redis", "redis://127.0.0.1:1/0"))
    assert line == "error: --redis needs a typed App"


def test_parse_workers() -> None:
    assert parse_workers("1") == 1
    assert parse_workers("8") == 8
    assert parse_workers("auto") == available_cpus()
    for bad in ("0", "-2", "many", ""):
        with pytest.raises(ValueError):
            parse_workers(bad)


# -- rooms refused (what the CLI does for --workers N without --redis) -------------------------

REFUSAL = "rooms refused here"


class Ping(Message):
    type: Literal["ping"]
    names: tuple[str, ...] = ()


class Pong(Message):
    type: Literal["pong"] = "pong"
    text: str = ""


def _check_member(ctx: Context, room: str) -> bool:
    return ctx.in_room(room)


def _indirect(context: Context) -> bool:
    return _check_member(context, "r")


def _format(sep: str, names: list[str]) -> str:
    return sep.join(names)  # `.join` on a str parameter: not a room


def _typed_app(handler: object, *, backplane: LocalRooms | None = None) -> App:
    app = App("t", backplane=backplane)
    app.add(handler)  # type: ignore[arg-type]
    return app


def uses_rooms(app: object, message: dict[str, object] | bytes | None = None) -> bool:
    """Serve `app` with its rooms refused, as `--workers 2` without `--redis` does, and send
    it `message` (a ping by default): True when the refusal answered it (`handler_error`,
    ConfigurationError logged), or ended the connection (in on_connect)."""
    assert isinstance(app, App)
    app.refuse_rooms(REFUSAL)
    try:
        with TestClient(app) as client, client.connect() as ws:
            try:
                if isinstance(message, bytes):
                    ws.send(message)
                else:
                    ws.send_json(message or {"type": "ping", "id": 1, "names": ["r"]})
                reply = ws.receive_json(timeout=5)
            except ClosedHere:
                return ws.close_code in (1006, 1011)  # on_connect failed: aborted
        return bool(reply.get("type") == "error" and reply.get("code") == "handler_error")
    finally:
        app.services.rooms_refusal = None  # the examples' apps are shared by the other tests


def test_uses_rooms_of_the_examples(caplog: pytest.LogCaptureFixture) -> None:
    join = {"type": "join", "id": 1, "room": "r", "name": "ann"}
    assert uses_rooms(load_app("examples.chat:app"), join)
    assert f"ConfigurationError: {REFUSAL}" in caplog.text
    subscribe = {"type": "subscribe", "id": 1, "symbols": ["ACME"]}
    assert uses_rooms(load_app("examples.ticker:app"), subscribe)  # subscribe: ctx.join
    assert not uses_rooms(load_app("examples.legacy_sync:app"), {"type": "ping", "id": 1})


def test_a_string_join_is_no_room() -> None:
    def ping(msg: Ping, ctx: Context) -> Pong:
        return Pong(text=", ".join(msg.names) + _format("; ", msg.names))

    assert not uses_rooms(_typed_app(ping))
    assert not isinstance(WebSocketApp(), App)  # a raw application has no rooms to refuse


def _joins(msg: Ping, context: Context) -> None:
    context.join("r")


def _leaves(msg: Ping, c: Context) -> None:
    c.leave("r")


def _broadcasts(msg: Ping, ctx: Context) -> None:
    ctx.broadcast("r", Pong())


def _lists_members(msg: Ping, ctx: Context) -> Pong:
    return Pong(text=str(len(ctx.members("r"))))


def _lists_presence(msg: Ping, ctx: Context) -> Pong:
    return Pong(text=str(ctx.presence("r")))


def _asks_in_room(msg: Ping, ctx: Context) -> Pong:
    return Pong(text="yes" if ctx.in_room("r") else "no")


def _lists_rooms(msg: Ping, ctx: Context) -> Pong:
    return Pong(text=", ".join(sorted(ctx.rooms)))


def _joins_in_a_comprehension(msg: Ping, ctx: Context) -> None:
    [ctx.join(name) for name in msg.names]


def _joins_in_a_closure(msg: Ping, ctx: Context) -> None:
    def later() -> None:
        ctx.join("r")

    later()


def _uses_a_helper(msg: Ping, ctx: Context) -> None:
    _check_member(ctx, "r")


def _uses_a_helper_of_a_helper(msg: Ping, ctx: Context) -> None:
    _indirect(ctx)


@pytest.mark.parametrize(
    "handler",
    [
        _joins,
        _leaves,
        _broadcasts,
        _lists_members,
        _lists_presence,
        _asks_in_room,
        _lists_rooms,
        _joins_in_a_comprehension,
        _joins_in_a_closure,
        _uses_a_helper,
        _uses_a_helper_of_a_helper,
    ],
)
def test_room_use_through_the_context(handler: object) -> None:
    assert uses_rooms(_typed_app(handler))


def test_room_use_in_the_hooks_and_a_given_backplane() -> None:
    def ping(msg: Ping, ctx: Context) -> None:
        pass

    app = _typed_app(ping)
    assert not uses_rooms(app)

    @app.on_connect
    def hello(ctx: Context) -> None:
        ctx.join("lobby")

    assert uses_rooms(app)  # refused in on_connect: the connection is aborted
    app = _typed_app(ping)

    @app.on_bytes
    def data(data: bytes, ctx: Context) -> None:
        ctx.broadcast("r", Pong())

    assert uses_rooms(app, b"\x00")
    assert _typed_app(ping, backplane=LocalRooms()).has_backplane  # the CLI refuses no rooms then


def join(msg: Ping, ctx: Context) -> None:  # a handler named like the str method
    ctx.join("r")


def _joins_strings(msg: Ping, ctx: Context) -> Pong:
    return Pong(text=", ".join(msg.names))


def test_an_attribute_named_like_a_function_of_the_module_is_no_call() -> None:
    assert not uses_rooms(_typed_app(_joins_strings))  # `.join` is no call of join() above


def test_chat_across_workers_through_redis(start, redis_server) -> None:
    import psutil

    from websock_actors.client import connect as connect_ours

    cluster = start("--workers", "2", "--redis", redis_server.url, "--no-patch", app="examples.chat:app")
    pids = cluster.wait_for_workers(2).values()
    with ExitStack() as stack:
        members = [stack.enter_context(connect_ours(cluster.url)) for _ in range(12)]
        for i, ws in enumerate(members):
            joined = ws.request({"type": "join", "room": "r", "name": f"u{i}"})
            assert joined["members"] == [f"u{j}" for j in range(i + 1)]  # every worker's members

        def served_by(pid: int) -> int:
            return sum(
                1
                for c in psutil.Process(pid).net_connections(kind="tcp")
                if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == cluster.port
            )

        assert all(served_by(pid) > 0 for pid in pids), "both workers hold members"
        members[0].request({"type": "say", "room": "r", "text": "to all workers"})
        for ws in members:
            while (got := ws.recv_json(timeout=5))["type"] != "message":
                assert got["type"] == "member_joined"
            assert (got["name"], got["text"]) == ("u0", "to all workers")
    _stop(cluster)
