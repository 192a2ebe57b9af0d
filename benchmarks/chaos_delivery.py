"""Chaos delivery run: chat clients on two nodes and one Redis, while Redis and the nodes fail.

    .venv/bin/python benchmarks/chaos_delivery.py                        # 200 clients, 20 rooms, 600 s
    .venv/bin/python benchmarks/chaos_delivery.py --duration 45 --clients 40 --rooms 4 --json out.json

Does every acknowledged chat message reach every member of its room, once and in order, or is
its loss reported? Two nodes of `examples.chat:app --redis` (resumption on) share a
redis-server of the script's own. Client i (`c<i>`, room `room<i % rooms>`, at home on node
`(i // rooms) % 2`) says --say-rate times a second and logs what it sent, was acknowledged,
received and was told was lost; a dropped client reconnects and resumes.

Faults, at times drawn from --seed and scaled to --duration (--faults: a subset):
  pubsub_kill    CLIENT KILL TYPE pubsub on Redis, every few seconds
  redis_restart  Redis restarted on the same port, without persistence: its data is gone
  redis_pause    SIGSTOP to redis-server, SIGCONT 5 s later
  node_kill      SIGKILL to one node (started again later: node_restart)
  client_abort   a few clients' TCP connections reset (no close frame)

After --drain quiet seconds benchmarks/chaos_check.py checks the logs; the result is one JSON
object on stdout (and in --json): deliveries, duplicates, out of order, gaps reported and not,
resumes, the faults applied (`fault_log`, with the violations near each). Exit 0 unless the run
broke (2: a node or Redis did not start or come back; 3: --duration + 150 s passed).
Bounded: every wait has a timeout; loopback only; every process is ours, stopped by its PID.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.socket
import gevent.subprocess

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.chaos_check import ClientLog, Names, check  # noqa: E402
from benchmarks.harness.ports import free_port  # noqa: E402
from benchmarks.harness.processes import Failed, die_with_parent  # noqa: E402
from benchmarks.harness.processes import stop_process as stop_within  # noqa: E402
from benchmarks.harness.redis_runner import RedisServer  # noqa: E402
from websock_actors.client import ClientConnection, connect  # noqa: E402
from websock_actors.errors import ConnectionClosed, WebSocketError  # noqa: E402
from websock_actors.scale.redis_io import REDIS_FAILURES  # noqa: E402

FAULT_KINDS = ("pubsub_kill", "redis_restart", "redis_pause", "node_kill", "client_abort")
PAUSE = 5.0  # seconds between SIGSTOP and SIGCONT
RESTART_DOWNTIME = 1.0  # seconds Redis is gone in a restart
START_TIMEOUT = 20.0  # seconds for a process to be ready
STOP_TIMEOUT = 10.0  # seconds for a process to exit after SIGTERM (then SIGKILL)
SAY_STALL = 10.0  # a say unacknowledged this long: the connection counts as dead
JOIN_STALL = 15.0
RESUME_STALL = 20.0
GIVE_UP = 60.0  # seconds a client keeps trying to connect
MAX_UNACKED = 20  # says in flight per client (the app's burst)
RECOVERY = 5.0  # seconds after a fault that its effects are attributed to it
HARD_MARGIN = 150.0  # seconds beyond --duration before the whole run is killed
NODE_LOG_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")  # a node log line's time


class Dropped(Exception):
    """The client gave its connection up (a fault, a stall, a refused resume)."""


# -- processes ---------------------------------------------------------------------------


class Processes:
    """Every process this run started: stopped and reaped by PID, and checked gone at the end."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def spawn(self, command: list[str], log: Path, **options: Any) -> Any:
        with open(log, "ab") as out:  # the child writes to its own copy of the descriptor
            process = gevent.subprocess.Popen(
                command,
                stdin=gevent.subprocess.DEVNULL,
                stdout=out,
                stderr=gevent.subprocess.STDOUT,
                preexec_fn=die_with_parent,
                **options,
            )
        self.started.append(process)
        return process

    def alive(self) -> list[int]:
        return [int(p.pid) for p in self.started if p.poll() is None]

    def kill_all(self) -> None:
        """Last resort (the hard limit, a crash): SIGCONT then SIGKILL to each one still running."""
        for process in self.started:
            if process.poll() is None:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.kill(process.pid, sig)
                    except OSError:
                        pass


def stop_process(process: Any) -> int | None:
    """SIGTERM, SIGKILL past STOP_TIMEOUT: the exit status, None when it had to be killed."""
    return stop_within(process, STOP_TIMEOUT, kill_timeout=STOP_TIMEOUT)


class Node:
    """One server process: `python -m websock_actors run examples.chat:app --redis URL`."""

    def __init__(self, index: int, redis: RedisServer, workdir: Path, processes: Processes) -> None:
        self.index = index
        self.redis = redis
        self.port = free_port()
        self.log = workdir / f"node{index}.log"
        self.processes = processes
        self.process: Any = None
        self.exits: list[int | None] = []  # the status of each process that ended

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        """Start the node (the worktree's code: cwd and PYTHONPATH) and wait for /readyz."""
        command = [sys.executable, "-m", "websock_actors", "run", "examples.chat:app",
                   "--host", "127.0.0.1", "--port", str(self.port), "--redis", self.redis.url,
                   "--shutdown-timeout", "5", "--log-level", "INFO",
                   "--rate-limit-per", "connection"]  # fmt: skip
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        )
        self.process = self.processes.spawn(command, self.log, cwd=ROOT, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            if http_status(self.port, "/readyz") == 200:
                return
            gevent.sleep(0.1)
        raise Failed(f"node {self.index} was not ready within {START_TIMEOUT:.0f} s (log: {self.log})")

    def kill(self) -> None:
        """kill -9: no drain, no session saved, its members reaped by the other node later."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
            self.exits.append(None)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.exits.append(stop_process(self.process))
        elif self.process is not None:
            self.exits.append(int(self.process.returncode))


def http_status(port: int, path: str) -> int | None:
    """The status of GET `path` on 127.0.0.1:`port` (within 1 s), None when there is no answer."""
    try:
        with gevent.Timeout(1.0):
            sock = gevent.socket.create_connection(("127.0.0.1", port))
            try:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                head = sock.recv(64)
            finally:
                sock.close()
    except (OSError, gevent.Timeout):
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


# -- the fault schedule --------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    t: float  # seconds after the clients started
    kind: str
    node: int | None = None  # node_kill, node_restart
    clients: tuple[int, ...] = ()  # client_abort


def fault_schedule(duration: float, clients: int, seed: int, tail: float) -> list[Fault]:
    """The faults of a run, the same for the same arguments (see the module's docstring)."""
    rng = random.Random(seed)
    start = min(8.0, max(3.0, 0.08 * duration))  # the clients have joined
    end = max(start + 3.0, duration - tail)
    repeat = max(1, round(duration / 200))
    majors = ["redis_restart", "redis_pause", "node_kill"] * repeat
    rng.shuffle(majors)
    slot = (end - start) / len(majors)
    faults: list[Fault] = []
    busy: list[tuple[float, float]] = []  # Redis is down or stopped: no pubsub kill then
    for i, kind in enumerate(majors):
        t = start + slot * (i + rng.uniform(0.05, 0.35))
        if kind == "node_kill":
            node = rng.randrange(2)
            faults.append(Fault(t, kind, node=node))
            faults.append(Fault(t + slot * 0.55, "node_restart", node=node))
        else:
            faults.append(Fault(t, kind))
            busy.append((t - 1.0, t + PAUSE + 3.0))
    kills = []
    t = start + rng.uniform(0.0, 2.0)
    while t <= end:
        if not any(a <= t <= b for a, b in busy):
            kills.append(Fault(t, "pubsub_kill"))
        t += rng.uniform(3.0, 7.0)
    if not kills:  # a short run whose window Redis's own faults fill: one right after the last
        kills.append(Fault(min(end, max(b for _, b in busy)), "pubsub_kill"))
    faults += kills
    victims = max(1, round(clients * 0.05))
    t = start + rng.uniform(1.0, 4.0)
    while t <= end:
        faults.append(Fault(t, "client_abort", clients=tuple(sorted(rng.sample(range(clients), victims)))))
        t += rng.uniform(6.0, 10.0)
    faults.sort(key=lambda f: f.t)
    return faults


# -- the clients --------------------------------------------------------------------------


@dataclass
class Run:
    """What the clients and the fault injector share."""

    args: argparse.Namespace
    nodes: list[Node]
    names: Names = field(default_factory=Names)
    stats: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    saying: gevent.event.Event = field(default_factory=gevent.event.Event)
    closing: gevent.event.Event = field(default_factory=gevent.event.Event)
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def problem(self, text: str) -> None:
        """Something of this script's own went wrong (kept, at most 20)."""
        self.stats["driver_problems"] += 1
        if len(self.problems) < 20:
            self.problems.append(text)


class Client:
    """One chat member: connect, join or resume, say, log everything, reconnect when dropped."""

    def __init__(self, run: Run, index: int) -> None:
        rooms = run.args.rooms
        self.run = run
        self.index = index
        self.name = f"c{index}"
        self.room = f"room{index % rooms}"
        self.home = (index // rooms) % 2
        self.log = ClientLog(self.name, run.names)
        self.rng = random.Random(f"{run.args.seed}:{index}")
        self.interval = 1.0 / run.args.say_rate
        self.token: str | None = None  # the session to resume
        self.positions: dict[str, tuple[int, str]] = {}  # room -> last (seq, epoch) received
        self.member = False  # joined (acknowledged), and not told since that it is no longer
        self.counter = 0
        self.ids = itertools.count(1)
        self.unacked: dict[str, tuple[float, str]] = {}  # say id -> (sent, text)
        self.join_id: str | None = None
        self.join_sent = 0.0
        self.join_due: float | None = None
        self.resume_id: str | None = None
        self.resume_sent = 0.0
        self.next_say = 0.0
        self.abort_requested = False
        self.failures = 0  # connections in a row that ended before they were of use

    # -- the life of the client --------------------------------------------------------

    def main(self) -> None:
        run = self.run
        gevent.sleep(self.index * 1.5 / max(1, run.args.clients))  # spread the first connects
        try:
            while not run.closing.is_set():
                opened = self._connect()
                if opened is None:
                    return
                conn, node = opened
                try:
                    self._serve(conn, node)
                    return  # closed at the end of the run
                except (WebSocketError, OSError, Dropped) as exc:
                    self._dropped(conn, exc)
                finally:
                    if not conn.closed:
                        conn.abort()
                    if conn.dropped:
                        run.stats["client_queue_dropped"] += conn.dropped
                self.failures += 1
                run.closing.wait(min(2.0, 0.05 * 2**self.failures) * self.rng.uniform(0.5, 1.0))
        except Exception:
            run.problem(f"{self.name}: {traceback.format_exc(limit=5)}")

    def _connect(self) -> tuple[ClientConnection, int] | None:
        """A new connection, to the home node else the other, with backoff; None: give up."""
        run = self.run
        delay = 0.1
        give_up = time.monotonic() + GIVE_UP
        while not run.closing.is_set():
            for node in (self.home, 1 - self.home):
                try:
                    conn = connect(
                        run.nodes[node].url, open_timeout=3.0, close_timeout=2.0, max_queue=100_000
                    )
                except (OSError, WebSocketError):
                    run.stats["connect_failures"] += 1
                    continue
                run.stats["connects"] += 1
                run.stats[f"connects_node{node}"] += 1
                return conn, node
            if time.monotonic() > give_up:
                run.stats["clients_gave_up"] += 1
                return None
            run.closing.wait(delay * self.rng.uniform(0.5, 1.0))
            delay = min(2.0, delay * 2)
        return None

    def _dropped(self, conn: ClientConnection, exc: BaseException) -> None:
        run = self.run
        if isinstance(exc, ConnectionClosed):
            reason = f"closed_{exc.code}"
        elif isinstance(exc, Dropped):
            reason = str(exc).split(":", 1)[0]
        else:
            reason = type(exc).__name__
        run.stats["drops"] += 1
        run.stats[f"drop_{reason}"] += 1
        if self.unacked:
            run.stats["says_unacknowledged_at_drop"] += len(self.unacked)

    def _serve(self, conn: ClientConnection, node: int) -> None:
        """Use one connection until it drops (raises) or the run ends (returns)."""
        run = self.run
        self.unacked.clear()  # their `said` died with the old connection
        self.join_id = self.resume_id = None
        self.join_due = None
        self.abort_requested = False
        fresh = self.token is None
        if fresh:
            self._join(conn)
        else:
            self._resume(conn)
        while True:
            if run.closing.is_set():
                conn.close(timeout=2.0)
                return
            if self.abort_requested:
                self._cut(conn)
                raise Dropped("aborted")
            now = run.now()
            self._check_stalls(now)
            if self.join_due is not None and now >= self.join_due:
                self._join(conn)
            saying = self._may_say()
            if saying and now >= self.next_say:
                self._say(conn, now)
            timeout = min(0.2, max(0.001, self.next_say - now)) if saying else 0.2
            try:
                message = conn.recv(timeout)
            except TimeoutError:
                continue
            if fresh and self.token is None and conn.session is not None:
                self.token = conn.session  # the first connection's own session
            if isinstance(message, str):
                self._handle(conn, message)

    def _may_say(self) -> bool:
        return (
            self.run.saying.is_set()
            and self.member
            and self.join_id is None
            and self.resume_id is None
            and len(self.unacked) < MAX_UNACKED
        )

    def _check_stalls(self, now: float) -> None:
        if self.unacked and now - min(sent for sent, _ in self.unacked.values()) > SAY_STALL:
            raise Dropped("say_stalled")
        if self.join_id is not None and now - self.join_sent > JOIN_STALL:
            raise Dropped("join_stalled")
        if self.resume_id is not None and now - self.resume_sent > RESUME_STALL:
            raise Dropped("resume_stalled")

    # -- what the client sends ------------------------------------------------------------

    def _send(self, conn: ClientConnection, message: dict[str, Any]) -> None:
        try:
            with gevent.Timeout(5.0):
                conn.send(json.dumps(message, separators=(",", ":")))
        except gevent.Timeout:
            raise Dropped("send_stalled") from None

    def _join(self, conn: ClientConnection) -> None:
        self.join_id = f"j{next(self.ids)}"
        self.join_sent = self.run.now()
        self.join_due = None
        self.run.stats["joins_sent"] += 1
        self._send(conn, {"type": "join", "id": self.join_id, "room": self.room, "name": self.name})

    def _resume(self, conn: ClientConnection) -> None:
        self.resume_id = f"r{next(self.ids)}"
        rooms = {room: {"seq": seq, "epoch": epoch} for room, (seq, epoch) in self.positions.items()}
        self.resume_sent = self.run.now()
        self.run.stats["resumes_sent"] += 1
        self._send(conn, {"type": "resume", "id": self.resume_id, "session": self.token, "rooms": rooms})

    def _say(self, conn: ClientConnection, now: float) -> None:
        self.counter += 1
        say_id, text = f"s{self.counter}", f"{self.name}:{self.counter}"
        self.log.said(now, self.room, text)  # before it leaves: the checker's "sent before"
        self.unacked[say_id] = (now, text)
        self.run.stats["says_sent"] += 1
        self._send(conn, {"type": "say", "id": say_id, "room": self.room, "text": text})
        self.next_say = (
            self.next_say + self.interval if self.next_say + self.interval > now else now + self.interval
        )

    def _cut(self, conn: ClientConnection) -> None:
        """The client_abort fault: reset the TCP connection, no close frame."""
        sock = conn._sock
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        conn.abort()

    # -- what the client receives -----------------------------------------------------

    def _handle(self, conn: ClientConnection, text: str) -> None:
        run = self.run
        now = run.now()
        try:
            data = json.loads(text)
        except ValueError:
            run.stats["not_json"] += 1
            return
        kind = data.get("type")
        if kind == "room_lost":
            room = str(data.get("room"))
            self.log.reported(now, room, "room_lost")
            run.stats["room_lost"] += 1
            self._moved_to(room, data)
            return
        seq = data.get("seq")
        if isinstance(seq, int) and "room" in data:  # a numbered room broadcast
            room, epoch = str(data["room"]), str(data.get("epoch", ""))
            self.log.received(now, room, seq, epoch, str(data.get("text")) if kind == "message" else None)
            self.positions[room] = (seq, epoch)
            return
        if kind == "said":
            said = self.unacked.pop(str(data.get("id")), None)
            if said is not None:
                self.log.acked(now, said[1])
                self.failures = 0
        elif kind == "joined":
            if data.get("id") == self.join_id:
                self.join_id = None
                self.log.joined(now, self.room)
                run.stats["joined"] += 1
                self.failures = 0
                if not self.member:
                    self.member = True
                    self.next_say = now + self.rng.uniform(0.0, self.interval)
        elif kind == "resumed":
            if data.get("id") == self.resume_id:
                self._resumed(conn, data, now)
        elif kind == "error":
            self._error(data, now)
        else:
            run.stats[f"other_{kind}"] += 1

    def _moved_to(self, room: str, data: dict[str, Any]) -> None:
        """A position the server gave (room_lost, resumed.positions): where the room stands."""
        seq = data.get("seq")
        if isinstance(seq, int):
            self.positions[room] = (seq, str(data.get("epoch", "")))

    def _resumed(self, conn: ClientConnection, data: dict[str, Any], now: float) -> None:
        run = self.run
        self.resume_id = None
        restored = bool(data.get("restored"))
        lost = [str(room) for room in data.get("lost") or ()]
        token = data.get("session")
        if isinstance(token, str) and token:
            self.token = token  # a new token replaces the old one (or is the same, today)
        self.log.resumed(now, restored, lost)
        run.stats["resumed_restored" if restored else "resumed_fresh"] += 1
        run.stats["resumed_replayed"] += int(data.get("replayed") or 0)
        self.failures = 0
        if restored:
            for room in lost:
                self.log.reported(self.resume_sent, room, "resumed.lost")  # covers the replay before it
            positions = data.get("positions")
            if isinstance(positions, dict):
                run.stats["resumed_with_positions"] += 1
                for room, position in positions.items():
                    if isinstance(position, dict):
                        self._moved_to(str(room), position)
            if not self.member:  # dropped before its `joined`: join (again; harmless if it is in)
                self._join(conn)
            return
        if self.member:
            self.log.reported(self.resume_sent, self.room, "restored_false")
        self.member = False
        self.positions.clear()
        self._join(conn)

    def _error(self, data: dict[str, Any], now: float) -> None:
        run = self.run
        message_id, code = data.get("id"), str(data.get("code"))
        if isinstance(message_id, str) and message_id in self.unacked:
            del self.unacked[message_id]
            run.stats[f"say_error_{code}"] += 1
            if code == "not_in_room":  # the server dropped the membership without a word
                self.member = False
                if self.join_id is None:
                    self.join_due = now
            elif code == "rate_limited":
                self.next_say = now + int(data.get("retry_after_ms") or 1000) / 1000.0
        elif message_id is not None and message_id == self.join_id:
            self.join_id = None
            self.join_due = now + 1.0
            run.stats[f"join_error_{code}"] += 1
        elif message_id is not None and message_id == self.resume_id:
            run.stats[f"resume_error_{code}"] += 1
            raise Dropped(f"resume_refused: {code}")
        else:
            run.stats[f"error_{code}"] += 1


# -- the run ----------------------------------------------------------------------------


class Injector:
    """Applies the fault schedule, counting what was applied (and what could not be)."""

    def __init__(self, run: Run, redis: RedisServer, clients: list[Client], schedule: list[Fault]) -> None:
        self.run = run
        self.redis = redis
        self.clients = clients
        self.schedule = schedule
        self.applied: Counter[str] = Counter()
        self.details: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        self.broken: Failed | None = None

    def main(self) -> None:
        """Each fault at its planned time, in a greenlet of its own: a 5 s pause or a node's
        start does not push back the faults planned meanwhile."""
        run = self.run
        running: list[gevent.Greenlet[Any, Any]] = []
        for fault in self.schedule:
            delay = run.t0 + fault.t - time.monotonic()
            if delay > 0 and run.closing.wait(delay):
                break
            running.append(gevent.spawn(self._apply_one, fault))
        gevent.joinall(running, timeout=PAUSE + START_TIMEOUT + STOP_TIMEOUT)

    def _apply_one(self, fault: Fault) -> None:
        run = self.run
        began = run.now()
        try:
            note = self._apply(fault)
        except Failed as exc:
            self.broken = exc
            run.problem(f"{fault.kind} at {began:.1f} s: {exc}")
            run.closing.set()
            return
        except REDIS_FAILURES as exc:
            note = f"not applied: {exc}"
            self.details[f"{fault.kind}_failed"] += 1
        else:
            self.applied[fault.kind] += 1
        self.log.append(
            {"t": round(began, 2), "kind": fault.kind, "took": round(run.now() - began, 2), "note": note}
        )
        print(f"[{began:7.1f} s] {fault.kind}: {note}", file=sys.stderr, flush=True)

    def _apply(self, fault: Fault) -> str:
        if fault.kind == "pubsub_kill":
            killed = int(self.redis.client.client_kill_filter(_type="pubsub"))
            self.details["pubsub_connections_killed"] += killed
            return f"{killed} subscriber connections killed"
        if fault.kind == "redis_restart":
            self.redis.restart(RESTART_DOWNTIME)
            return f"new redis-server PID {self.redis.pid} on port {self.redis.port}"
        if fault.kind == "redis_pause":
            self.redis.signal(signal.SIGSTOP)
            try:
                gevent.sleep(PAUSE)
            finally:
                self.redis.signal(signal.SIGCONT)
            return f"stopped {PAUSE:.0f} s"
        if fault.kind == "client_abort":
            for index in fault.clients:
                self.clients[index].abort_requested = True
            self.details["clients_aborted"] += len(fault.clients)
            return f"clients {', '.join(f'c{i}' for i in fault.clients)} reset"
        node = self.run.nodes[fault.node or 0]
        if fault.kind == "node_kill":
            members = sum(1 for c in self.clients if c.home == node.index)
            node.kill()
            return f"node {node.index} (PID {node.process.pid}) killed; {members} clients at home there"
        if fault.kind == "node_restart":
            node.start()
            return f"node {node.index} started again (PID {node.process.pid})"
        raise ValueError(f"unknown fault {fault.kind!r}")


def near_faults(applied: list[dict[str, Any]], unreported: list[float], undelivered: list[float]) -> int:
    """Count into each applied fault's entry the unreported gaps (and the undelivered messages)
    whose message was sent in its window: from just before it to RECOVERY seconds after it
    was over (windows may overlap: a gap then counts for each). Returns the unreported gaps
    outside every window."""
    windows = []
    applied.sort(key=lambda entry: float(entry["t"]))
    for entry in applied:
        start, end = entry["t"] - 0.5, entry["t"] + entry["took"] + RECOVERY
        for key, times in (("gaps_unreported", unreported), ("undelivered_acknowledged", undelivered)):
            entry[key] = bisect.bisect_right(times, end) - bisect.bisect_left(times, start)
        windows.append((start, end))
    return sum(1 for t in unreported if not any(a <= t <= b for a, b in windows))


def log_summary(path: Path, samples: int = 5) -> dict[str, Any]:
    """Warnings, errors and tracebacks in a process's log, with the first few distinct lines."""
    if not path.exists():
        return {}
    counts: Counter[str] = Counter()
    shown: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        level = next((w for w in ("Traceback", "CRITICAL", "ERROR", "WARNING") if w in line), None)
        if level is None:
            continue
        counts[level.lower()] += 1
        text = (line[24:] if NODE_LOG_TIME.match(line) else line).strip()[:200]
        if len(shown) < samples and text not in shown:
            shown.append(text)
    return {**counts, "lines": shown}


def run_chaos(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start Redis and the nodes, run the clients under the faults, stop, check."""
    processes = Processes()
    redis: RedisServer | None = None
    nodes: list[Node] = []
    started = time.monotonic()

    def hard_limit(signum: int, frame: Any) -> None:
        print(
            f"hard wall-clock limit of {args.duration + HARD_MARGIN:.0f} s reached",
            file=sys.stderr,
            flush=True,
        )
        processes.kill_all()
        os._exit(3)

    signal.signal(signal.SIGALRM, hard_limit)
    signal.alarm(int(args.duration + HARD_MARGIN))
    try:
        out = workdir / "redis.out"
        redis = RedisServer(args.redis_server, None, workdir, True, lambda c: processes.spawn(c, out))
        nodes = [Node(i, redis, workdir, processes) for i in range(2)]
        for node in nodes:
            node.start()
        print(f"redis-server on {redis.port}, nodes on {[n.port for n in nodes]}; workdir {workdir}",
              file=sys.stderr, flush=True)  # fmt: skip
        schedule = fault_schedule(args.duration, args.clients, args.seed, args.tail)
        schedule = [
            f
            for f in schedule
            if f.kind in args.faults or (f.kind == "node_restart" and "node_kill" in args.faults)
        ]
        for fault in schedule:
            print(f"  plan {fault.t:7.1f} s {fault.kind} {fault.node if fault.node is not None else ''}"
                  f"{' '.join(f'c{i}' for i in fault.clients)}", file=sys.stderr)  # fmt: skip
        run = Run(args, nodes)
        clients = [Client(run, i) for i in range(args.clients)]
        injector = Injector(run, redis, clients, schedule)
        run.saying.set()
        greenlets = [gevent.spawn(c.main) for c in clients]
        faults = gevent.spawn(injector.main)
        run.closing.wait(args.duration)
        run.saying.clear()
        faults.join(timeout=PAUSE + START_TIMEOUT + STOP_TIMEOUT)  # a fault still under way ends first
        faults.kill(block=True, timeout=5.0)
        run.closing.wait(args.drain)
        run.closing.set()
        gevent.joinall(greenlets, timeout=15.0)
        stuck = [g for g in greenlets if not g.dead]
        if stuck:
            run.problem(f"{len(stuck)} clients still running 15 s after the end: killed")
            gevent.killall(stuck, timeout=5.0)
        ended = run.now()
    finally:
        for node in nodes:
            node.stop()
        if redis is not None:
            redis.stop()
        processes.kill_all()
    if injector.broken is not None:
        raise injector.broken
    leftover = processes.alive()
    print(f"checking {sum(c.log.receipts for c in clients)} receipts", file=sys.stderr, flush=True)
    result = check([c.log for c in clients], samples=args.samples)
    signal.alarm(0)
    faults_applied = {kind: injector.applied[kind] for kind in (*FAULT_KINDS, "node_restart")}
    if args.dump:
        dump_logs(args.dump, clients)
    samples = result.pop("samples")
    outside = near_faults(injector.log, result.pop("unreported_sent"), result.pop("undelivered_sent"))
    return {
        **result,
        "faults": faults_applied,
        "samples": samples,
        "run": {
            "duration": args.duration,
            "clients": args.clients,
            "rooms": args.rooms,
            "seed": args.seed,
            "fault_kinds": sorted(args.faults),
            "say_rate": args.say_rate,
            "saying_ended_at": args.duration,
            "clients_closed_at": round(ended, 2),
            "wall_seconds": round(time.monotonic() - started, 1),
            "node_kill_policy": "the killed node is started again later, on the same port (node_restart)",
            "fault_details": dict(injector.details),
            "stats": dict(sorted(run.stats.items())),
            "driver_problems": run.problems,
            "node_exits": {f"node{n.index}": n.exits for n in nodes},
            "leftover_pids": leftover,
        },
        "gaps_unreported_outside_fault_windows": outside,
        "schedule": [asdict(f) for f in schedule],
        "fault_log": injector.log,
        "server_logs": {
            **{f"node{n.index}": log_summary(n.log) for n in nodes},
            "redis": log_summary(workdir / "redis.log"),
        },
    }


def dump_logs(path: str, clients: list[Client]) -> None:
    """Every client's log as JSON lines, for a closer look at a violation."""
    values = clients[0].log.names.values if clients else []
    with open(path, "w") as out:
        for c in clients:
            log = c.log
            receipts = [
                [t, values[room], seq, values[epoch], values[text] if text >= 0 else None]
                for t, room, seq, epoch, text in zip(
                    log.recv_t, log.recv_room, log.recv_seq, log.recv_epoch, log.recv_text, strict=True
                )
            ]
            record = {
                "client": c.name,
                "room": c.room,
                "home": c.home,
                "says": log.says,
                "acks": log.acks,
                "joins": log.joins,
                "reports": log.reports,
                "resumes": log.resumes,
                "receipts": receipts,
            }
            out.write(json.dumps(record) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of saying (default 600)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's (and clients') seed")
    parser.add_argument("--json", metavar="PATH", help="write the result here too")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    parser.add_argument(
        "--say-rate", type=float, default=2.0, help="says a second per client (the app allows 5)"
    )
    parser.add_argument("--drain", type=float, default=5.0, help="quiet seconds after the last say")
    parser.add_argument("--tail", type=float, default=None,
                        help="seconds between the last fault and the last say (default: 10%% of "
                             "--duration, 10 to 20 s)")  # fmt: skip
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help="the kinds of fault to apply, comma-separated (default: all); the others are skipped",
    )
    parser.add_argument("--samples", type=int, default=5, help="examples kept of each violation")
    parser.add_argument("--dump", metavar="PATH", help="write every client's log here (JSON lines)")
    parser.add_argument(
        "--workdir", metavar="DIR", help="keep the processes' logs here (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    if args.clients < 2 or args.rooms < 1 or args.clients < args.rooms:
        parser.error("--clients must be at least 2 and at least --rooms")
    if args.duration < 20 or args.say_rate <= 0 or args.say_rate > 5:
        parser.error("--duration must be at least 20 s and --say-rate in (0, 5]")
    args.faults = set(filter(None, args.faults.split(",")))
    if not args.faults <= set(FAULT_KINDS):
        parser.error(f"--faults: unknown kinds {sorted(args.faults - set(FAULT_KINDS))}")
    if args.tail is None:
        args.tail = min(20.0, max(10.0, 0.1 * args.duration))
    if not (os.path.isfile(args.redis_server) and os.access(args.redis_server, os.X_OK)):
        parser.error(f"no redis-server at {args.redis_server} (Debian: apt-get install redis-server)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep = args.workdir is not None
    workdir = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="chaos_delivery_"))
    workdir.mkdir(parents=True, exist_ok=True)
    status = 0
    try:
        result = run_chaos(args, workdir)
    except Failed as exc:
        print(f"the run broke: {exc}", file=sys.stderr)
        for name in ("node0.log", "node1.log", "redis.log"):
            if (workdir / name).exists():
                print(
                    f"--- {name} (end)\n{(workdir / name).read_text(errors='replace')[-2000:]}",
                    file=sys.stderr,
                )
        result = {"broken": str(exc)}
        status = 2
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
