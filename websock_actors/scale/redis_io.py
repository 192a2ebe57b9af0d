"""redis-py over gevent's sockets, without monkey-patching, and a small pool for commands.

redis-py makes its socket in `Connection._connect` with the standard `socket` module; in an
unpatched process that would stop the whole hub on every round trip. `GeventRedisConnection`
makes a gevent socket instead, so a command parks only the greenlet that sent it; redis-py
still does the protocol (and its hiredis parser, when installed, reads from that socket).

redis-py's own pools take threading locks and its retries sleep with `time.sleep`: neither
is what a greenlet should wait on, so `CommandPool` is a gevent semaphore over idle
connections, and every connection is made with retries off (the backplane decides what
a failure means). `Publisher` writes publishes without waiting for their replies;
`PublishFailures` counts what it reports as failed and logs it sparingly.

Connections are made by a `Connect` (scale/redis_connect.py: to the one server, or to the
master the sentinels name). A READONLY reply means the server was demoted to a replica: the
connection is dropped like a broken one, so the next one finds the master again.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import gevent.socket
import redis
from redis.exceptions import ReadOnlyError

from ..errors import BackplaneUnavailable
from ..protocol.redact import mask_secrets

__all__ = [
    "MAX_BACKOFF",
    "REDIS_FAILURES",
    "CommandPool",
    "Commands",
    "Connect",
    "GeventRedisConnection",
    "PublishFailures",
    "Publisher",
    "Publishes",
    "Waitable",
    "error_text",
    "run_id_of",
    "run_ids_of",
]

log = logging.getLogger("websock_actors")

# What a lost, refused or broken Redis raises: the caller answers `backplane_unavailable`.
REDIS_FAILURES = (redis.RedisError, OSError)

# The longest pause between two attempts to reconnect (they start at 50 ms and double).
MAX_BACKOFF = 5.0

# Publishes queued but not yet written, beyond which Redis counts as not keeping up.
MAX_QUEUED_PUBLISHES = 100_000


def error_text(exc: BaseException) -> str:
    """A Redis error's text for a log line or an exception message: redis-py's texts may
    quote the URL or a command's arguments, so credentials in them are masked."""
    return mask_secrets(str(exc))


class GeventRedisConnection(redis.Connection):
    """A redis-py TCP connection on a gevent socket."""

    def _connect(self) -> Any:
        sock = gevent.socket.create_connection((self.host, self.port), timeout=self.socket_connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.socket_timeout)
        return sock


# Makes a new, not yet connected connection (scale/redis_connect.py makes them from a URL).
Connect = Callable[[], GeventRedisConnection]


class Commands(Protocol):
    """What the backplane's modules send commands through: a `CommandPool`, or a cluster's
    (scale/redis_cluster_io.py)."""

    def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]: ...

    def execute(self, *command: Any) -> Any: ...

    def close(self) -> None: ...


class Waitable(Protocol):
    """A gevent Event, or what stands for one over a cluster's masters."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class Publishes(Protocol):
    """What the backplane's modules publish through: a `Publisher`, or a cluster's."""

    server_id: str
    masters: Any  # APPEND's last ARGV: "" here, filled in per send on a cluster

    @property
    def healthy(self) -> bool: ...

    @property
    def connected_once(self) -> Waitable: ...

    def publish(self, channel: bytes, data: bytes) -> None: ...

    def send(self, *command: Any) -> None: ...

    def submit(self, *command: Any) -> gevent.event.AsyncResult[Any]: ...

    def call(self, *command: Any, timeout: float = 5.0) -> Any: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...


class CommandPool:
    """Up to `size` connections shared by the greenlets of one hub; a pipeline per call."""

    def __init__(self, connect: Connect, size: int = 8) -> None:
        self._connect = connect
        self._idle: list[GeventRedisConnection] = []
        self._slots = gevent.lock.BoundedSemaphore(size)

    def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send `commands` in one write and return their replies, in order; raises
        BackplaneUnavailable when Redis cannot be reached or a command failed.

        An idle connection that Redis closed meanwhile (a restart, CLIENT KILL, a timeout)
        is found on first use; the commands are then sent once more on a new connection,
        so they must be idempotent (the backplane's are: ZADD, SADD, ZREM, ZRANGE, ...)."""
        replies = self.replies(commands)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise BackplaneUnavailable(f"Redis refused a command: {error_text(reply)}") from reply
        return replies

    def replies(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Like `run`, but a command Redis refused has its error in its place (a cluster's
        redirections are answered so: scale/redis_cluster_io.py)."""
        with self._slots:
            if self._idle:
                try:
                    return self._run_on(self._idle.pop(), commands)
                except redis.ConnectionError:
                    pass  # stale: once more, on a fresh connection
            try:
                return self._run_on(self._connect(), commands)
            except redis.ConnectionError as exc:
                raise BackplaneUnavailable(f"Redis: {error_text(exc)}") from exc

    def _run_on(self, conn: GeventRedisConnection, commands: Sequence[Sequence[Any]]) -> list[Any]:
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[Any] = []
            failure: redis.ResponseError | None = None
            for _ in commands:  # every reply is read, or the next user would get them
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    failure = failure or exc
                    replies.append(exc)
        except BaseException as exc:  # a broken connection is never reused
            conn.disconnect()
            if isinstance(exc, redis.ConnectionError):
                raise
            if isinstance(exc, REDIS_FAILURES):
                raise BackplaneUnavailable(f"Redis: {error_text(exc)}") from exc
            raise
        if isinstance(failure, ReadOnlyError):  # a demoted master: ask again (for Sentinel)
            conn.disconnect()
            self.close()
            raise redis.ConnectionError(f"Redis became a replica: {error_text(failure)}")
        self._idle.append(conn)
        return replies

    def execute(self, *command: Any) -> Any:
        return self.run([command])[0]

    def close(self) -> None:
        while self._idle:
            self._idle.pop().disconnect()


class Publisher:
    """PUBLISH without a round trip per message, on a connection of its own.

    A publish is written by its sender at once (so it is on its way to Redis before the
    sender's reply is on its way to the client: whoever reads the reply and then subscribes
    elsewhere is not sent this message too), without waiting for Redis's answer: waiting would
    stall the node's fan-out and break up the mailboxes' batched writes. One writer at a time:
    while a write waits for the socket, other publishes queue, and one greenlet sends the queue
    in one write and reads every reply as it comes. Publishing while the connection is known
    to be down raises BackplaneUnavailable at once; publishes in flight when it breaks are
    reported to `on_lost(count, error)`, never dropped without a word. `call` sends the same
    way but waits for its own reply (a numbered publish is acknowledged only once Redis has
    numbered and kept it).
    """

    def __init__(
        self,
        connect: Connect,
        on_lost: Callable[[int, BaseException], None],
        on_refused: Callable[[BaseException], None] | None = None,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self._connect = connect
        self._max_backoff = max_backoff
        self._on_lost = on_lost
        self._on_refused = on_refused
        self._queue: list[tuple[Any, ...]] = []  # commands
        # one entry per command sent or queued, in order: who waits for its reply, or None
        self._waiters: deque[gevent.event.AsyncResult[Any] | None] = deque()
        self._in_flight = 0
        self._wake = gevent.event.Event()
        self._stopping = gevent.event.Event()
        self._greenlet: gevent.Greenlet[Any, Any] | None = None
        self._conn: GeventRedisConnection | None = None  # while connected
        self._writing = False  # a write is under way (it may wait for the socket)
        self._broken: BaseException | None = None  # a sender's write failed: the owner reconnects
        self.healthy = False  # connected: a publish is taken
        self.connected_once = gevent.event.Event()  # set at the first connection
        self.errors = 0  # commands Redis answered with an error
        self.server_id = ""  # the run_id of the Redis process connected to (the numbering's)
        self.masters = ""  # a cluster's masters' run_ids (redis_wire.py APPEND): none here

    def start(self) -> None:
        self._stopping.clear()
        self._greenlet = gevent.spawn(self._run)

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then close."""
        self._stopping.set()
        self._wake.set()
        if self._greenlet is not None:
            self._greenlet.join(timeout)
            self._greenlet = None

    def publish(self, channel: bytes, data: bytes) -> None:
        self.send("PUBLISH", channel, data)

    def send(self, *command: Any) -> None:
        """Send any command whose reply nobody waits for (PUBLISH, an EVAL that publishes);
        an error reply is logged and counted in `errors`."""
        self._submit(command, None)

    def call(self, *command: Any, timeout: float = 5.0) -> Any:
        """Send `command` with the others of this moment and wait for its reply; raises
        BackplaneUnavailable when the connection breaks first, Redis refuses it, or no
        reply comes within `timeout` (then it may still have run)."""
        waiter = self.submit(*command)
        try:
            return waiter.get(timeout=timeout)
        except gevent.Timeout:
            raise BackplaneUnavailable("Redis did not answer in time") from None

    def submit(self, *command: Any) -> gevent.event.AsyncResult[Any]:
        """Send `command` with the others of this moment; its reply, or BackplaneUnavailable,
        comes in the result. Raises BackplaneUnavailable at once when Redis is known down."""
        waiter: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()
        self._submit(command, waiter)
        return waiter

    def _submit(self, command: tuple[Any, ...], waiter: gevent.event.AsyncResult[Any] | None) -> None:
        if not self.healthy:
            raise BackplaneUnavailable("Redis is unreachable")
        conn = self._conn
        if conn is not None and not self._writing and not self._queue:
            self._waiters.append(waiter)
            try:
                self._send(conn, [command])
            except REDIS_FAILURES as exc:
                self._in_flight -= 1  # the sender is told: not counted again as lost
                self._waiters.pop()
                self._broken = exc
                self.healthy = False
                self._wake.set()
                raise BackplaneUnavailable(f"Redis: {error_text(exc)}") from exc
            return
        if len(self._queue) >= MAX_QUEUED_PUBLISHES:
            raise BackplaneUnavailable("Redis is not keeping up with the publishes")
        self._queue.append(command)
        self._waiters.append(waiter)
        if len(self._queue) == 1:
            self._wake.set()

    def _send(self, conn: GeventRedisConnection, batch: list[tuple[Any, ...]]) -> None:
        self._writing = True
        self._in_flight += len(batch)
        try:
            conn.send_packed_command(conn.pack_commands(batch), check_health=False)
        finally:
            self._writing = False
            if self._queue:
                self._wake.set()  # queued while this write waited: the owner sends them

    def _run(self) -> None:
        delay = 0.0
        while True:
            conn = self._connect()
            watcher: Any = None
            try:
                conn.connect()
                conn.send_command("INFO", "server")
                self.server_id = run_id_of(conn.read_response())
                sock: Any = conn._sock
                watcher = gevent.get_hub().loop.io(sock.fileno(), 1)
                watcher.start(self._wake.set)  # replies, or the end of the connection
                self._broken = None
                self._conn = conn
                self.healthy = True
                self.connected_once.set()
                delay = 0.0
                self._pump(conn)
                return  # stopped
            except REDIS_FAILURES as exc:
                waiters, self._waiters = self._waiters, deque()
                self._in_flight = 0
                self._queue = []
                self.healthy = False
                failure = BackplaneUnavailable(f"Redis: {error_text(exc)}")
                for waiter in waiters:
                    if waiter is not None:
                        waiter.set_exception(failure)  # its sender is told: not counted as lost
                if self._stopping.is_set():
                    return
                self._on_lost(sum(1 for waiter in waiters if waiter is None), exc)
            finally:
                self.healthy = False
                self._conn = None
                if watcher is not None:
                    watcher.stop()
                conn.disconnect()
            delay = min(self._max_backoff, max(0.05, delay * 2))
            if self._stopping.wait(delay * random.uniform(0.5, 1.5)):
                return

    def _pump(self, conn: GeventRedisConnection) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._broken is not None:
                raise self._broken  # a sender's write broke the connection: reconnect
            if self._queue and not self._writing:
                batch, self._queue = self._queue, []
                self._send(conn, batch)
            while conn.can_read(timeout=0):  # raises once the server closed the connection
                self._read_reply(conn)
            if self._stopping.is_set() and not self._queue:
                if self._in_flight:  # the last replies, briefly
                    self._read_reply(conn)
                    continue
                return

    def _read_reply(self, conn: GeventRedisConnection) -> None:
        try:
            reply = conn.read_response()
        except redis.ResponseError as exc:  # answered: the connection is fine
            if isinstance(exc, ReadOnlyError):  # unless it was demoted: reconnect
                self._broken = exc
                self._wake.set()
            self._in_flight -= 1
            waiter = self._waiters.popleft()
            if waiter is not None:
                refused = BackplaneUnavailable(f"Redis refused a command: {error_text(exc)}")
                refused.__cause__ = exc  # a cluster's redirection is read from it
                waiter.set_exception(refused)
                return
            self.errors += 1
            if self._on_refused is not None:
                self._on_refused(exc)
            else:
                log.warning("Redis refused a command sent without waiting: %s", error_text(exc))
            return
        self._in_flight -= 1
        waiter = self._waiters.popleft()
        if waiter is not None:
            waiter.set(reply)


def run_ids_of(info: Any) -> list[str]:
    """The run_id lines of an INFO server reply (several when it joins a cluster's masters')."""
    text = info.decode() if isinstance(info, bytes) else str(info)
    return [line[7:].strip() for line in text.splitlines() if line.startswith("run_id:")]


def run_id_of(info: Any) -> str:
    """The run_id of an INFO server reply ("" without one)."""
    ids = run_ids_of(info)
    return ids[0] if ids else ""


class _FailureCounts(Protocol):
    publish_failures: int


class PublishFailures:
    """What a `Publisher` reports as failed (`on_lost`, `on_refused`): counted in
    `stats.publish_failures`, and logged as `owner`'s, one line a second at most (a Redis
    that is down fails every broadcast: one line each would flood the log)."""

    def __init__(self, owner: object, stats: _FailureCounts) -> None:
        self._owner = owner
        self._stats = stats
        self._last_log = 0.0

    def lost(self, count: int, error: BaseException) -> None:
        """The publisher's connection broke with `count` plain publishes unconfirmed."""
        text = error_text(error)
        log.warning("%r: Redis lost (%s) with %d broadcasts unconfirmed", self._owner, text, count)
        self.failed(count, "")

    def refused(self, error: BaseException) -> None:
        """Redis answered a publish with an error: it went nowhere."""
        self.failed(1, f"Redis refused a broadcast: {error_text(error)}")

    def failed(self, count: int, what: str) -> None:
        self._stats.publish_failures += count
        now = time.monotonic()
        if what and now - self._last_log >= 1.0:  # one line a second at most
            self._last_log = now
            failures = self._stats.publish_failures
            log.warning("%r: %s (%d publishes failed so far)", self._owner, what, failures)
