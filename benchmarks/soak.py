"""Soak: the chat server under ~2,000 mixed connections, well-behaved and hostile, for minutes.

    .venv/bin/python benchmarks/soak.py                          # 2,000 connections, 600 s
    .venv/bin/python benchmarks/soak.py --duration 40 --conns 300

The server (`websock-actors run examples.chat:app --no-patch`, on CPU 0, its output in --log)
serves --conns connections from this process (gevent, on the other CPUs), shared out as:
- 70% well-behaved chat clients: join a room, say numbered messages now and then (faster and
  1,000 characters long in the busy rooms), leave, rejoin, reconnect. A message is expected
  by a membership when it was said wholly inside it; delivery = expected received / expected;
- 3% abrupt drops and 3% resets (RST), reconnecting after a pause;
- 4% slow readers (a 4 KiB receive buffer, never read), which the server must close;
- 5% trickled frames (a 1 MiB header, then 1 byte every 0.5 s) and 5% trickled handshakes
  (1 byte a second), which the server must close;
- 10% invalid senders (not JSON, unknown types, wrong fields, 300 KB of `{}`, binary, 2 MiB
  texts), each answered with its documented error code (2 MiB: close 1009 accepted too).

Every 10 s it prints the server's fds, RSS, CPU and connections. Exits 0 only when every check
passed: fds and RSS flat after --warmup (fds within max(5%, 50), RSS within 10%); delivery
100%, no duplicate; no Traceback; every slow reader and trickle closed within --abuse-limit
(75 s); every invalid message answered as documented; no well-behaved client refused or
closed by the server; the server alive and exiting 0 on SIGTERM. Bounded: duration + 60 s
kills the server (ours, by PID) and exits 3. Loopback only.
"""

from __future__ import annotations

import argparse
import array
import bisect
import json
import math
import os
import random
import resource
import signal
import socket
import struct
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.socket
import gevent.subprocess
from greenlet import GreenletExit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script too, the harness is imported as benchmarks.harness

from benchmarks.harness.chat_server import start_server, stop_server  # noqa: E402
from benchmarks.harness.logs import log_summary  # noqa: E402
from benchmarks.harness.ports import free_port  # noqa: E402
from benchmarks.harness.processes import raise_fd_limit  # noqa: E402
from benchmarks.harness.procstat import cpu_seconds, fd_count, status_kib  # noqa: E402
from benchmarks.harness.raw_websocket import (  # noqa: E402
    HandshakeFailed,
    frame_header,
    read_handshake,
    request_head,
    server_frames,
    text_frame,
)
from websock_actors.client import (  # noqa: E402
    ConnectionClosed,
    RemoteHandshakeRefusal,
    RequestError,
    RequestTimeout,
    connect,
)

ROOM_SIZE = 20
BUSY_EVERY = 10  # rooms 0, 10, 20, ... are busy
SAY_MEAN = {False: 10.0, True: 1.0}  # mean seconds between a chatter's actions: quiet, busy room
TEXT = {False: "hello from the soak", True: "x" * 1000}
MIX = (  # share of --conns per kind; chat takes what rounding leaves
    ("drop", 0.03),
    ("reset", 0.03),
    ("slow", 0.04),
    ("trickle_frame", 0.05),
    ("trickle_handshake", 0.05),
    ("invalid", 0.10),
)
RAMP_PER_S = 200.0  # connections started per second at the beginning
# Slow readers and trickled frames live until the server closes them (~40-50 s with the
# default keepalive), and a slow reader in a busy room makes the server buffer ~20 KB/s:
# their first starts are spread over this many seconds, so that their ages, and the memory
# the server holds for them, are spread out instead of rising and falling in lockstep.
LONG_LIVED_SPREAD = 45.0
SLOW_RCVBUF = 4096
TRICKLE_DECLARED = 1024 * 1024
LIST_100K = "[" + ",".join(["{}"] * 100_000) + "]"
TEXT_2MIB = "x" * (2 * 1024 * 1024)
INVALID_KINDS = ("not_json", "unknown_type", "wrong_types", "list_100k", "binary", "text_2mib")
EXPECTED_CODE = {
    "not_json": "invalid_json",
    "unknown_type": "unknown_type",
    "wrong_types": "validation_error",
    "list_100k": "validation_error",
    "binary": "unsupported_data",
    "text_2mib": "validation_error",
}
BIG_REPLY = 64 * 1024  # an error reply longer than this would be echoing the input
Sample = tuple[float, int, int, float, int]  # t, fds, RSS kB, server CPU share, ESTABLISHED


# -- the server process ------------------------------------------------------------------


def established_peers(port: int) -> set[int] | None:
    """Client ports of the server's ESTABLISHED sockets (None when ss fails)."""
    try:
        out = gevent.subprocess.run(
            ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, gevent.subprocess.SubprocessError):
        return None
    peers = set()
    for line in out.splitlines():
        parts = line.split()
        if parts:
            peers.add(int(parts[-1].rsplit(":", 1)[1]))
    return peers


# -- raw sockets -------------------------------------------------------------------------


def raw_socket(port: int, rcvbuf: int | None = None) -> Any:
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def raw_open(port: int, rcvbuf: int | None = None) -> tuple[Any, bytes]:
    """A raw socket past the opening handshake, and the bytes that came behind the 101."""
    sock = raw_socket(port, rcvbuf)
    try:
        sock.sendall(request_head(port))
        rest = read_handshake(sock)
    except BaseException:
        sock.close()
        raise
    return sock, rest


def close_reset(sock: Any) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


# -- shared state ------------------------------------------------------------------------


class Says:
    """Every say, by number: room, send time, `said` time (inf: none came), sayer's name."""

    def __init__(self) -> None:
        self.room = array.array("i")
        self.sent = array.array("d")
        self.said = array.array("d")
        self.name: list[str] = []

    def add(self, room: int, name: str) -> int:
        number = len(self.name)
        self.room.append(room)
        self.sent.append(time.monotonic())
        self.said.append(math.inf)
        self.name.append(name)
        return number


class Window:
    """One membership of a chatter in its room: from the `joined` reply to the `leave` sent."""

    __slots__ = ("joined", "left", "received", "room", "who")

    def __init__(self, room: int, who: str) -> None:
        self.room = room
        self.who = who
        self.joined = time.monotonic()
        self.left = math.inf
        self.received = array.array("q")


class Run:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.args = args
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/"
        self.stop = gevent.event.Event()  # the run's end: no new actions
        self.drained = gevent.event.Event()  # chatters stop reading
        self.says = Says()
        self.windows: list[Window] = []
        self.events: Counter[str] = Counter()
        self.closed_after: dict[str, list[float]] = {}  # kind -> ages at which the server closed
        self.close_how: dict[str, Counter[str]] = {}  # kind -> how the server closed
        self.kept: Counter[str] = Counter()  # kind -> connections open past --abuse-limit
        self.undecided: Counter[str] = Counter()
        self.invalid: dict[str, Counter[str]] = {kind: Counter() for kind in INVALID_KINDS}
        self.invalid_reply_max: Counter[str] = Counter()
        self.anomalies: list[str] = []
        self.driver_errors: list[str] = []
        self.delivered_total = 0
        self.chatters_saying = 0
        self.slow_watch: dict[int, tuple[float, gevent.event.Event]] = {}
        self.established = -1

    def outcome(self, kind: str, age: float, how: str) -> None:
        self.closed_after.setdefault(kind, []).append(age)
        self.close_how.setdefault(kind, Counter())[how] += 1

    def anomaly(self, text: str) -> None:
        self.events["anomalies"] += 1
        if len(self.anomalies) < 20:
            self.anomalies.append(text)

    def pause(self, low: float, high: float) -> bool:
        """Sleep a random while; True when the run is over."""
        return self.stop.wait(random.uniform(low, high))

    def guarded(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except GreenletExit:
            raise
        except Exception:
            self.events["driver_errors"] += 1
            if len(self.driver_errors) < 5:
                self.driver_errors.append(traceback.format_exc())


# -- well-behaved chatters ---------------------------------------------------------------


class Chatter:
    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index
        self.room = index // ROOM_SIZE
        self.busy = self.room % BUSY_EVERY == 0
        self.window: Window | None = None
        self.generation = 0
        self.saying = False

    def main(self) -> None:
        run = self.run
        run.chatters_saying += 1
        self.saying = True
        try:
            while not run.stop.is_set():
                try:
                    ws = connect(run.url, open_timeout=10, close_timeout=5, max_queue=1_000_000)
                except (OSError, TimeoutError, RemoteHandshakeRefusal) as exc:
                    run.events[f"chat.connect_failed:{type(exc).__name__}"] += 1
                    run.events["chat.connect_failed"] += 1
                    run.pause(1, 2)
                    continue
                self.generation += 1
                try:
                    if self.session(ws, f"c{self.index}g{self.generation}"):
                        return  # the run is over and this one drained: done
                except (ConnectionClosed, RequestError, RequestTimeout) as exc:
                    # Closed by the server, or a join or leave that failed: this membership
                    # ends now, and a new connection begins.
                    if self.window is not None:
                        self.window.left = min(self.window.left, time.monotonic())
                        self.window = None
                    if isinstance(exc, ConnectionClosed):
                        run.events["chat.closed_by_server"] += 1
                        run.events[f"chat.closed_by_server:{exc.code}"] += 1
                    else:
                        run.events["chat.join_leave_failed"] += 1
                        run.events[f"chat.join_leave_failed:{type(exc).__name__}"] += 1
                    run.pause(0.5, 1)
                finally:
                    if not ws.closed:
                        ws.abort()
        finally:
            self.done_saying()

    def done_saying(self) -> None:
        if self.saying:
            self.saying = False
            self.run.chatters_saying -= 1

    def session(self, ws: Any, name: str) -> bool:
        """One connection: join, act until the end; True when it ended with the run's drain."""
        run = self.run
        self.join(ws, name)
        while not run.stop.is_set():
            self.read_for(ws, random.expovariate(1 / SAY_MEAN[self.busy]), run.stop)
            if run.stop.is_set():
                break
            action = random.random()
            if action < 0.02:
                self.leave(ws)
                self.join(ws, name)
                run.events["chat.rejoins"] += 1
            elif action < 0.03:
                self.leave(ws)
                ws.close(timeout=5)
                run.events["chat.clean_reconnects"] += 1
                return False
            else:
                self.say(ws, name)
        self.done_saying()
        self.read_for(ws, 60.0, run.drained)  # until the main greenlet saw nothing more arrive
        ws.close(timeout=5)
        return True

    def join(self, ws: Any, name: str) -> None:
        reply = ws.request({"type": "join", "room": f"room{self.room}", "name": name}, timeout=10)
        if reply.get("type") != "joined":
            self.run.anomaly(f"join answered {reply!r:.200}")
        window = Window(self.room, name)
        self.run.windows.append(window)
        self.window = window

    def leave(self, ws: Any) -> None:
        assert self.window is not None
        self.window.left = time.monotonic()
        ws.request({"type": "leave", "room": f"room{self.room}"}, timeout=10)
        while True:  # what came before the `left` reply belongs to this membership
            try:
                self.handle(ws.recv(timeout=0))
            except TimeoutError:
                break
        self.window = None

    def say(self, ws: Any, name: str) -> None:
        run = self.run
        number = run.says.add(self.room, name)
        text = f"{number} {TEXT[self.busy]}"
        try:
            reply = ws.request({"type": "say", "room": f"room{self.room}", "text": text}, timeout=10)
        except RequestTimeout:
            run.events["chat.say_timeouts"] += 1
            return
        except RequestError as exc:
            run.events[f"chat.say_errors:{exc.code}"] += 1
            run.events["chat.say_errors"] += 1
            return
        run.says.said[number] = time.monotonic()
        run.events["chat.says"] += 1
        if reply.get("type") != "said":
            run.anomaly(f"say answered {reply!r:.200}")

    def read_for(self, ws: Any, seconds: float, until: gevent.event.Event) -> None:
        """Read and sort pushes for `seconds`, or until `until` is set."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0 and not until.is_set():
            try:
                self.handle(ws.recv(timeout=min(remaining, 1.0)))
            except TimeoutError:
                pass

    def handle(self, raw: str | bytes) -> None:
        run = self.run
        if isinstance(raw, bytes):
            run.events["chat.unexpected_binary"] += 1
            return
        msg = json.loads(raw)
        kind = msg.get("type")
        if kind == "message":
            run.delivered_total += 1
            window = self.window
            try:
                number = int(str(msg.get("text", "")).split(" ", 1)[0])
            except ValueError:
                number = -1
            in_room = window is not None and msg.get("room") == f"room{window.room}"
            if window is None or not in_room or not 0 <= number < len(run.says.name):
                run.events["chat.foreign_messages"] += 1
                return
            if run.says.name[number] != msg.get("name"):
                run.events["chat.wrong_name"] += 1
            window.received.append(number)
        elif kind not in ("member_joined", "member_left"):
            run.events[f"chat.other_push:{kind}"] += 1


# -- hostile clients ---------------------------------------------------------------------


def dropper(run: Run, slot: int, reset: bool) -> None:
    kind = "reset" if reset else "drop"
    rooms = max(1, run.args.chat // ROOM_SIZE + (run.args.chat % ROOM_SIZE > 0))
    cycle = 0
    while not run.stop.is_set():
        cycle += 1
        try:
            sock, _ = raw_open(run.port)
        except (OSError, HandshakeFailed) as exc:
            run.events[f"{kind}.connect_failed:{type(exc).__name__}"] += 1
            run.pause(1, 2)
            continue
        try:
            room = random.randrange(rooms)
            sock.sendall(text_frame(json.dumps({"type": "join", "id": 1, "room": f"room{room}",
                                                "name": f"{kind}{slot}-{cycle}"})))  # fmt: skip
            run.pause(0.2, 2.0)
        except OSError:
            run.events[f"{kind}.send_failed"] += 1
        finally:
            if reset:
                close_reset(sock)
            else:
                sock.close()
        run.events[f"{kind}.cycles"] += 1
        run.pause(0.5, 2.0)


def slow_reader(run: Run, slot: int) -> None:
    busy_rooms = list(range(0, max(1, (run.args.chat + ROOM_SIZE - 1) // ROOM_SIZE), BUSY_EVERY))
    limit = run.args.abuse_limit
    cycle = 0
    run.pause(0, LONG_LIVED_SPREAD)
    while not run.stop.is_set():
        cycle += 1
        try:
            sock, _ = raw_open(run.port, rcvbuf=SLOW_RCVBUF)
        except (OSError, HandshakeFailed) as exc:
            run.events[f"slow.connect_failed:{type(exc).__name__}"] += 1
            run.pause(1, 2)
            continue
        opened = time.monotonic()
        closed = gevent.event.Event()
        local_port = sock.getsockname()[1]
        try:
            room = busy_rooms[slot % len(busy_rooms)]
            sock.sendall(text_frame(json.dumps({"type": "join", "id": 1, "room": f"room{room}",
                                                "name": f"slow{slot}-{cycle}"})))  # fmt: skip
            run.slow_watch[local_port] = (time.monotonic(), closed)
            gevent.wait([closed, run.stop], timeout=limit, count=1)
            age = time.monotonic() - opened
            if closed.is_set():
                run.outcome("slow", age, "not established")
            elif run.stop.is_set():
                run.undecided["slow"] += 1
            else:
                run.kept["slow"] += 1
        except OSError:
            run.events["slow.send_failed"] += 1
        finally:
            run.slow_watch.pop(local_port, None)
            close_reset(sock)
        run.events["slow.cycles"] += 1
        run.pause(1, 3)


def watch_slow_readers(run: Run) -> None:
    """Every 2 s: which slow readers' server sockets are no longer ESTABLISHED."""
    while not run.drained.is_set():
        started = time.monotonic()
        peers = established_peers(run.port)
        if peers is not None:
            run.established = len(peers)
            for local_port, (opened, closed) in list(run.slow_watch.items()):
                if opened < started and local_port not in peers:
                    closed.set()
        run.drained.wait(2.0)


def read_until_closed(sock: Any, buf: bytearray, seconds: float) -> str | None:
    """Read (and drop) what the server sends for `seconds`: how it closed, or None."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return None
        except OSError as exc:
            return type(exc).__name__
        if not data:
            return "EOF"
        buf += data
        for opcode, payload in server_frames(buf):
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return f"close {code}"
    return None


def trickle_frame(run: Run, slot: int) -> None:
    limit = run.args.abuse_limit
    run.pause(0, LONG_LIVED_SPREAD)
    while not run.stop.is_set():
        try:
            sock, rest = raw_open(run.port)
        except (OSError, HandshakeFailed) as exc:
            run.events[f"trickle_frame.connect_failed:{type(exc).__name__}"] += 1
            run.pause(1, 2)
            continue
        opened = time.monotonic()
        key = os.urandom(4)
        buf = bytearray(rest)
        how: str | None = None
        sent = 0
        try:
            sock.sendall(frame_header(0x1, TRICKLE_DECLARED, key))
            while how is None and not run.stop.is_set() and time.monotonic() - opened < limit:
                try:
                    sock.sendall(bytes([0x20 ^ key[sent % 4]]))  # a masked space
                    sent += 1
                except OSError as exc:
                    how = f"send {type(exc).__name__}"
                    break
                how = read_until_closed(sock, buf, 0.5)
        except OSError as exc:
            how = type(exc).__name__
        finally:
            sock.close()
        age = time.monotonic() - opened
        if how is not None:
            run.outcome("trickle_frame", age, how)
        elif run.stop.is_set():
            run.undecided["trickle_frame"] += 1
        else:
            run.kept["trickle_frame"] += 1
        run.events["trickle_frame.cycles"] += 1
        run.pause(0.5, 2)


def trickle_handshake(run: Run, slot: int) -> None:
    limit = run.args.abuse_limit
    while not run.stop.is_set():
        try:
            sock = raw_socket(run.port)
        except OSError as exc:
            run.events[f"trickle_handshake.connect_failed:{type(exc).__name__}"] += 1
            run.pause(1, 2)
            continue
        opened = time.monotonic()
        head = request_head(run.port)
        how: str | None = None
        answer = b""
        try:
            for i in range(len(head)):
                if run.stop.is_set() or time.monotonic() - opened >= limit:
                    break
                try:
                    sock.sendall(head[i : i + 1])
                except OSError as exc:
                    how = f"send {type(exc).__name__}"
                    break
                deadline = time.monotonic() + 1.0
                while how is None and (remaining := deadline - time.monotonic()) > 0:
                    sock.settimeout(remaining)
                    try:
                        data = sock.recv(4096)
                    except TimeoutError:
                        break
                    except OSError as exc:
                        how = type(exc).__name__
                        break
                    if not data:
                        how = "EOF"
                    answer += data
                if how is not None:
                    break
            else:
                how = "whole head sent"  # the server took 1 byte a second to the end
        finally:
            sock.close()
        age = time.monotonic() - opened
        if answer:
            status = answer.split(b"\r\n", 1)[0].decode(errors="replace")[:60]
            run.events[f"trickle_handshake.answered:{status}"] += 1
        if how == "whole head sent":
            run.kept["trickle_handshake"] += 1
        elif how is not None:
            run.outcome("trickle_handshake", age, how)
        elif run.stop.is_set():
            run.undecided["trickle_handshake"] += 1
        else:
            run.kept["trickle_handshake"] += 1
        run.events["trickle_handshake.cycles"] += 1
        run.pause(0.5, 2)


def invalid_payload(kind: str, tag: str, room: str) -> str | bytes:
    if kind == "not_json":
        return "this is {not JSON"
    if kind == "unknown_type":
        return json.dumps({"type": "no_such_type", "id": tag, "room": room})
    if kind == "wrong_types":
        return json.dumps({"type": "say", "id": tag, "room": 123, "text": ["not", "a", "string"]})
    if kind == "list_100k":
        return f'{{"type":"say","id":"{tag}","room":"{room}","text":{LIST_100K}}}'
    if kind == "binary":
        return os.urandom(64)
    return f'{{"type":"say","id":"{tag}","room":"{room}","text":"{TEXT_2MIB}"}}'


def invalid_sender(run: Run, slot: int) -> None:
    cycle = 0
    while not run.stop.is_set():
        cycle += 1
        room = f"junk{slot}-{cycle}"
        try:
            ws = connect(run.url, open_timeout=10, close_timeout=5, max_queue=64)
        except (OSError, TimeoutError, RemoteHandshakeRefusal) as exc:
            run.events[f"invalid.connect_failed:{type(exc).__name__}"] += 1
            run.pause(1, 2)
            continue
        try:
            ws.request({"type": "join", "room": room, "name": f"junk{slot}"}, timeout=10)
            for n in range(random.randint(5, 20)):
                if run.pause(2, 6):
                    break
                kind = random.choice(INVALID_KINDS)
                tag = f"j{slot}-{cycle}-{n}"
                if not invalid_round(run, ws, kind, tag, room):
                    break  # closed or silent: a new connection
            if not ws.closed:
                ws.close(timeout=5)
        except (ConnectionClosed, RequestError, TimeoutError) as exc:
            run.anomaly(f"invalid sender's join failed: {exc!r:.200}")
        finally:
            if not ws.closed:
                ws.abort()
        run.events["invalid.cycles"] += 1
        run.pause(0.5, 1)


def invalid_round(run: Run, ws: Any, kind: str, tag: str, room: str) -> bool:
    """Send one invalid message and check the answer; False when the connection is gone."""
    counts = run.invalid[kind]
    counts["sent"] += 1
    try:
        ws.send(invalid_payload(kind, tag, room))
        raw = ws.recv(timeout=15)
    except TimeoutError:
        counts["no reply in 15 s"] += 1
        run.anomaly(f"{kind}: no reply within 15 s")
        return False
    except ConnectionClosed as exc:
        if kind == "text_2mib" and exc.code == 1009:
            counts["ok (closed 1009)"] += 1
        else:
            counts[f"closed {exc.code}"] += 1
            run.anomaly(f"{kind}: connection closed {exc.code} {exc}")
        return False
    run.invalid_reply_max[kind] = max(run.invalid_reply_max[kind], len(raw))
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = {}
    code, wanted = reply.get("code"), EXPECTED_CODE[kind]
    if reply.get("type") == "error" and code == wanted:
        counts["ok"] += 1
    else:
        counts[f"answered {reply.get('type')}/{code}"] += 1
        run.anomaly(f"{kind}: expected error {wanted}, got {raw[:200]!r}")
    if kind not in ("not_json", "binary") and reply.get("id") != tag:
        counts["wrong id"] += 1
        run.anomaly(f"{kind}: reply id {reply.get('id')!r}, sent {tag!r}")
    if len(raw) > BIG_REPLY:
        counts["reply over 64 KiB"] += 1
        run.anomaly(f"{kind}: error reply of {len(raw)} bytes")
    return True


# -- the report --------------------------------------------------------------------------


def delivery(run: Run) -> dict[str, Any]:
    says = run.says
    by_room: dict[int, list[int]] = {}
    for number, room in enumerate(says.room):
        by_room.setdefault(room, []).append(number)
    sent_by_room = {room: [says.sent[n] for n in numbers] for room, numbers in by_room.items()}
    expected = delivered = ambiguous = duplicates = 0
    missing: list[str] = []
    for window in run.windows:
        numbers = by_room.get(window.room, [])
        sent = sent_by_room.get(window.room, [])
        got = set(window.received)
        duplicates += len(window.received) - len(got)
        i = bisect.bisect_right(sent, window.joined)
        while i < len(numbers) and sent[i] < window.left:
            n = numbers[i]
            if says.said[n] < window.left:
                expected += 1
                if n in got:
                    delivered += 1
                elif len(missing) < 5:
                    missing.append(
                        f"{window.who} (room{window.room}, joined {window.joined:.3f}, left "
                        f"{window.left:.3f}) missed say {n} (sent {says.sent[n]:.3f}, "
                        f"said {says.said[n]:.3f})"
                    )
            elif n not in got:
                ambiguous += 1
            i += 1
    return {"expected": expected, "delivered": delivered, "ambiguous_not_received": ambiguous,
            "duplicates": duplicates, "missing_examples": missing}  # fmt: skip


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"p50 {ordered[len(ordered) // 2]:.1f} s, max {ordered[-1]:.1f} s"


# -- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--conns", type=int, default=2000, help="concurrent connections")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--warmup", type=float, default=None, help="default: max(30, duration / 5)")
    parser.add_argument("--abuse-limit", type=float, default=75.0,
                        help="seconds within which the server must close slow and trickled connections")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--log", type=Path, default=Path("/tmp/websock_actors_soak/server.log"))
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra argument for `websock-actors run` (repeatable)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()  # fmt: skip
    if args.warmup is None:
        args.warmup = max(30.0, args.duration / 5)
    random.seed(args.seed)
    counts = {kind: int(args.conns * share) for kind, share in MIX}
    args.chat = args.conns - sum(counts.values())
    hard_limit = args.duration + 60
    started = time.monotonic()

    fd_limit = raise_fd_limit()
    if fd_limit < args.conns + 500:
        sys.exit(f"only {fd_limit} file descriptors allowed; {args.conns} connections need more")
    port = args.port or free_port()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(port, args.server_arg, args.log, hard_limit)
    if server is None:
        return 1
    run = Run(args, port)
    print(
        f"{args.conns} connections for {args.duration:.0f} s: chat {args.chat} (rooms of {ROOM_SIZE}), "
        + ", ".join(f"{kind} {n}" for kind, n in counts.items())
        + f"; warm-up {args.warmup:.0f} s, abuse limit {args.abuse_limit:.0f} s, fd limit {fd_limit}",
        flush=True,
    )

    slots: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
    slots += [(Chatter(run, i).main, ()) for i in range(args.chat)]
    slots += [(dropper, (run, i, False)) for i in range(counts["drop"])]
    slots += [(dropper, (run, i, True)) for i in range(counts["reset"])]
    slots += [(slow_reader, (run, i)) for i in range(counts["slow"])]
    slots += [(trickle_frame, (run, i)) for i in range(counts["trickle_frame"])]
    slots += [(trickle_handshake, (run, i)) for i in range(counts["trickle_handshake"])]
    slots += [(invalid_sender, (run, i)) for i in range(counts["invalid"])]
    random.shuffle(slots)

    pid = server.pid
    samples: list[Sample] = []
    baseline_fds = fd_count(pid)
    t0 = time.monotonic()
    cpu_before, cpu_at = cpu_seconds(pid), t0
    samples.append((0.0, baseline_fds, status_kib(pid, "VmRSS"), 0.0, 0))
    greenlets = [gevent.spawn_later(i / RAMP_PER_S, run.guarded, fn, *fn_args) for i, (fn, fn_args) in
                 enumerate(slots)]  # fmt: skip
    watcher = gevent.spawn(run.guarded, watch_slow_readers, run)
    print_sample(run, samples[-1])
    server_died = False
    next_sample = t0 + args.sample
    while True:
        end = t0 + args.duration
        gevent.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
        if server.poll() is not None:
            server_died = True
            print(f"the server died during the run (exit status {server.returncode})", flush=True)
            break
        now = time.monotonic()
        if now >= next_sample - 0.01:
            cpu = cpu_seconds(pid)
            share = (cpu - cpu_before) / (now - cpu_at)
            cpu_before, cpu_at = cpu, now
            samples.append((now - t0, fd_count(pid), status_kib(pid, "VmRSS"), share, run.established))
            print_sample(run, samples[-1])
            next_sample += args.sample
        if now >= end - 0.01:
            break

    # The end: no new actions; chatters read until nothing more arrives, then close.
    run.stop.set()
    stopped_at = time.monotonic()
    while run.chatters_saying > 0 and time.monotonic() - stopped_at < 15:
        gevent.sleep(0.2)
    last, quiet_since = run.delivered_total, time.monotonic()
    while time.monotonic() - quiet_since < 2.0 and time.monotonic() - stopped_at < 20:
        gevent.sleep(0.2)
        if run.delivered_total != last:
            last, quiet_since = run.delivered_total, time.monotonic()
    still_saying = run.chatters_saying
    run.drained.set()
    gevent.joinall(greenlets, timeout=10)
    leftover = sum(1 for g in greenlets if not g.dead)
    gevent.killall([g for g in greenlets if not g.dead], timeout=5)
    watcher.kill(timeout=2)
    gevent.sleep(3)  # the server notices the last closes
    fds_after = fd_count(pid) if server.poll() is None else -1
    rss_after = status_kib(pid, "VmRSS") if server.poll() is None else 0
    peak_rss = status_kib(pid, "VmHWM") if server.poll() is None else 0
    report_delivery = delivery(run)

    # Stop the server: SIGTERM, wait (bounded by the hard limit).
    server_status = stop_server(server, hard_limit - (time.monotonic() - started) - 5)
    tracebacks, levels, errors = log_summary(args.log)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    driver_cpu = (usage.ru_utime + usage.ru_stime) / (time.monotonic() - started)

    # -- print ---------------------------------------------------------------------------
    print("\nseries (t s, fds, RSS MiB, server CPU share, ESTABLISHED):")
    for t, fds, rss, share, est in samples:
        print(f"  {t:6.0f} {fds:6d} {rss / 1024:8.1f} {share:6.0%} {est:6d}")
    ev = run.events
    print("\nclients:")
    print(f"  chat: {ev['chat.says']} says answered, {run.delivered_total} message pushes read, "
          f"{ev['chat.rejoins']} rejoins, {ev['chat.clean_reconnects']} clean reconnects, "
          f"{len(run.windows)} memberships; {still_saying} still busy at the drain, {leftover} greenlets "
          "killed at the end")  # fmt: skip
    for kind in ("drop", "reset"):
        print(f"  {kind}: {ev[kind + '.cycles']} connections")
    for kind in ("slow", "trickle_frame", "trickle_handshake"):
        how = dict(run.close_how.get(kind, Counter()).most_common(6))
        print(f"  {kind}: {ev[kind + '.cycles']} connections; closed by the server: "
              f"{len(run.closed_after.get(kind, []))} ({spread(run.closed_after.get(kind, []))}; {how}), "
              f"open past {args.abuse_limit:.0f} s: {run.kept[kind]}, "
              f"undecided at the end: {run.undecided[kind]}")  # fmt: skip
    answered = {k[len("trickle_handshake.answered:"):]: v for k, v in ev.items()
                if k.startswith("trickle_handshake.answered:")}  # fmt: skip
    if answered:
        print(f"  trickled handshakes answered with: {answered}")
    print("  invalid messages (per kind: outcomes; largest reply):")
    for kind in INVALID_KINDS:
        print(f"    {kind:12s} {dict(run.invalid[kind])}; {run.invalid_reply_max[kind]} bytes")
    other = {k: v for k, v in sorted(ev.items())
             if ":" in k and not k.startswith("trickle_handshake.answered")}  # fmt: skip
    if other:
        print(f"  other events: {other}")
    for text in run.anomalies[:10]:
        print(f"  anomaly: {text}")
    for text in run.driver_errors:
        print("  driver error:\n" + text)
    print(f"  this process: {driver_cpu:.0%} of a core on average")

    d = report_delivery
    print("\nserver:")
    print(f"  fds: {baseline_fds} before the clients, {fds_after} 3 s after they all closed; "
          f"RSS after {rss_after / 1024:.1f} MiB, peak {peak_rss / 1024:.1f} MiB")  # fmt: skip
    print(f"  log lines by level: {dict(levels)}; lines containing 'Traceback': {tracebacks}")
    for line in errors:
        print(f"  log: {line}")
    print(f"  exit status after SIGTERM: {server_status}")

    checks: list[tuple[str, bool, str]] = []
    checks += flatness(samples, args)
    rate = d["delivered"] / d["expected"] if d["expected"] else 0.0
    checks.append(("delivery to well-behaved clients is 100%",
                   d["expected"] > 0 and d["delivered"] == d["expected"] and not d["duplicates"]
                   and not ev["chat.wrong_name"],
                   f"{d['delivered']}/{d['expected']} = {rate:.4%}; duplicates {d['duplicates']}, wrong name "
                   f"{ev['chat.wrong_name']}, foreign {ev['chat.foreign_messages']}; not counted (membership "
                   f"overlapping the say, not received) {d['ambiguous_not_received']}"))  # fmt: skip
    for example in d["missing_examples"]:
        print(f"  missing: {example}")
    checks.append(("no Traceback in the server log", tracebacks == 0, f"{tracebacks} lines"))
    kept = sum(run.kept.values())
    checks.append((f"the server closed every slow reader and trickle within {args.abuse_limit:.0f} s",
                   kept == 0, f"open past the limit: {dict(run.kept)}"))  # fmt: skip
    invalid_bad = sum(n for counts_ in run.invalid.values() for k, n in counts_.items()
                      if k != "sent" and not k.startswith("ok"))  # fmt: skip
    checks.append(("invalid messages answered as documented", invalid_bad == 0 and ev["anomalies"] == 0,
                   f"{invalid_bad} wrong answers, {ev['anomalies']} anomalies"))
    chat_bad = {k: ev[k] for k in ("chat.closed_by_server", "chat.connect_failed", "chat.say_timeouts",
                                   "chat.say_errors") if ev[k]}  # fmt: skip
    checks.append(("well-behaved clients: no close by the server, refusal or missing reply", not chat_bad,
                   str(chat_bad or "none")))
    checks.append(("no error in this script's greenlets", not ev["driver_errors"], f"{ev['driver_errors']}"))
    checks.append(("the server ran to the end and exited 0 on SIGTERM",
                   not server_died and server_status == 0,
                   f"died during the run: {server_died}, exit status {server_status}"))  # fmt: skip
    print("\nchecks:")
    for name, ok, detail in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    passed = all(ok for _, ok, _ in checks)
    print(f"\n{'PASSED' if passed else 'FAILED'} in {time.monotonic() - started:.0f} s")
    signal.alarm(0)
    return 0 if passed else 1


def print_sample(run: Run, sample: Sample) -> None:
    t, fds, rss, share, est = sample
    ev = run.events
    slow_closed = len(run.closed_after.get("slow", []))
    tf_closed = len(run.closed_after.get("trickle_frame", []))
    th_closed = len(run.closed_after.get("trickle_handshake", []))
    invalid_sent = sum(c["sent"] for c in run.invalid.values())
    print(
        f"t={t:5.0f}s fds {fds:5d} rss {rss / 1024:7.1f} MiB cpu {share:4.0%} est {est:5d} | "
        f"says {ev['chat.says']} pushes {run.delivered_total} | drop {ev['drop.cycles']} reset "
        f"{ev['reset.cycles']} | closed by server: slow {slow_closed} tframe {tf_closed} thead {th_closed} | "
        f"invalid {invalid_sent} | anomalies {ev['anomalies']} errors {ev['driver_errors']}",
        flush=True,
    )


def flatness(samples: list[Sample], args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    after = [s for s in samples if s[0] >= args.warmup - 0.5]
    if not after:
        return [("fds and RSS flat", False, f"no sample after the warm-up of {args.warmup:.0f} s")]
    first = after[0]
    last_half = [s for s in after if s[0] >= max(args.duration / 2, first[0]) - 0.5]
    fd_rise = max(s[1] for s in last_half) - first[1]
    rss_rise = max(s[2] for s in last_half) - first[2]
    fd_allowed = max(0.05 * first[1], 50)
    rss_allowed = 0.10 * first[2]
    return [
        ("fds flat after the warm-up", fd_rise <= fd_allowed,
         f"first after {args.warmup:.0f} s: {first[1]} (t={first[0]:.0f}), max of the last half minus it: "
         f"{fd_rise:+d} (allowed {fd_allowed:.0f})"),
        ("RSS flat after the warm-up", rss_rise <= rss_allowed,
         f"first after {args.warmup:.0f} s: {first[2] / 1024:.1f} MiB, max of the last half minus it: "
         f"{rss_rise / 1024:+.1f} MiB (allowed {rss_allowed / 1024:.1f})"),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
