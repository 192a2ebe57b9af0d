"""Metrics: counted on the hot path as plain integers, exposed for Prometheus on scrape.

A connection counts with `stats.messages_received += 1` on a `ServerStats` its server
shares with every connection: no lock, no label lookup, no histogram on the message path
(prometheus_client's own counters take a lock per increment). On GET /metrics (or on
`--metrics-port`), `snapshot` gathers these counters, the gauges (open connections, the
largest outgoing mailbox) and what the application counts itself (a typed App: messages
and handler seconds by type, error replies by code, broadcast deliveries, actor restarts,
the backplane's publish failures), and prometheus_client writes the exposition format.

With `--workers`, every worker writes its snapshot to a file of its own in a directory the
master made fresh for the run (every second, and when asked: `ask_for_snapshots`); whichever
worker answers GET /metrics sums the files: counters and histograms over every worker that
ever ran in this run (a restarted worker's predecessor keeps its counts), gauges over the
live ones. Each file says when it was written (the system-wide monotonic clock), so that the
answering worker knows which of the others' figures predate the scrape.

Label values are bounded: message types are the registered ones (others are `_unknown`, and
frames that do not decode `_invalid`), close codes are the RFC's and IANA's (private codes
count as `4xxx` or `3xxx`), handshake failures are HTTP statuses (or `tls`, `overload`).
A plain HTTP request (no `Upgrade: websocket`: a page, a favicon, a health check) is no failed
handshake: its answer counts in `websock_http_requests_total` by status.
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = [
    "HANDLER_BUCKETS",
    "METRICS",
    "Histogram",
    "ServerStats",
    "ask_for_snapshots",
    "asked_since",
    "close_code_label",
    "merge_snapshots",
    "metrics_response",
    "read_worker_snapshots",
    "render_metrics",
    "write_snapshot",
]

# name -> (kind, label name or "", help)
METRICS: dict[str, tuple[str, str, str]] = {
    "websock_connections": ("gauge", "", "Open WebSocket connections."),
    "websock_connections_total": ("counter", "", "WebSocket connections accepted."),
    "websock_handshake_failures_total": ("counter", "status", "Opening handshakes refused or failed."),
    "websock_http_requests_total": ("counter", "status", "Plain HTTP requests answered, by status."),
    "websock_closes_total": ("counter", "code", "Connections closed, by close code."),
    "websock_messages_received_total": ("counter", "type", "Messages received, by type."),
    "websock_messages_sent_total": ("counter", "", "Messages queued for sending."),
    "websock_bytes_received_total": ("counter", "", "Bytes received on WebSocket connections."),
    "websock_bytes_sent_total": ("counter", "", "Bytes written to WebSocket connections."),
    "websock_handler_seconds": ("histogram", "type", "Time in typed handlers, by message type."),
    "websock_error_replies_total": ("counter", "code", "Typed error replies, by code."),
    "websock_broadcast_deliveries_total": ("counter", "", "Broadcast frames put into mailboxes."),
    "websock_dropped_messages_total": ("counter", "reason", "Messages dropped, by reason."),
    "websock_mailbox_bytes": ("gauge", "", "The largest outgoing mailbox, in bytes, when scraped."),
    "websock_actor_restarts_total": ("counter", "actor", "Named actors restarted by the supervisor."),
    "websock_backplane_publish_failures_total": ("counter", "", "Broadcasts the backplane did not take."),
    "websock_resumes_total": ("counter", "outcome", "Resumes: recovered, partial, fresh, refused."),
    "websock_limit_hits_total": ("counter", "limit", "Requests refused or cut by a bound, by bound."),
    "websock_forwarded_invalid_total": (
        "counter",
        "reason",
        "Trusted proxies' X-Forwarded-For not used (not_an_ip, too_long): the peer's address counted.",
    ),
    "websock_room_lost_total": ("counter", "", "room_lost notices: messages a node could not deliver."),
    "websock_room_caught_up_total": ("counter", "", "Room messages delivered from the stream after a gap."),
    "websock_replayed_messages_total": ("counter", "", "Missed room messages replayed by resumes."),
    "websock_sessions_graced": ("gauge", "", "Dropped sessions whose members are in their grace here."),
}

HANDLER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Close codes that are labels of their own; any other is its range.
_KNOWN_CLOSE_CODES = frozenset((*range(1000, 1016), 3000, 3003, 3008))


def close_code_label(code: int | None) -> str:
    if code is None:
        return "1005"
    if code in _KNOWN_CLOSE_CODES:
        return str(code)
    return f"{code // 1000}xxx"


class Histogram:
    """Bucket counts of one label value (not cumulative; the last bucket is +Inf)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(HANDLER_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(HANDLER_BUCKETS, seconds)] += 1  # the first bound >= seconds
        self.sum += seconds

    def snapshot(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}


class ServerStats:
    """The server's counters, shared by its connections (one hub: no lock is needed)."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "closes",
        "connections_total",
        "dropped",
        "forwarded_invalid",
        "handshake_failures",
        "http_requests",
        "messages_binary",
        "messages_sent",
        "messages_text",
    )

    def __init__(self) -> None:
        self.connections_total = 0
        self.messages_text = 0
        self.messages_binary = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.handshake_failures: dict[str, int] = {}
        self.http_requests: dict[str, int] = {}
        self.closes: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.forwarded_invalid: dict[str, int] = {}  # by reason, counted by edge.TrustedProxies

    def failed(self, status: int | str) -> None:
        key = str(status)
        self.handshake_failures[key] = self.handshake_failures.get(key, 0) + 1

    def answered(self, status: int, upgrade: bool) -> None:
        """An HTTP answer went out instead of a 101: a failed handshake (from 400 on) when the
        request asked for a WebSocket or could not be read, else a plain request's answer."""
        if upgrade:
            if status >= 400:
                self.failed(status)
            return
        key = str(status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1

    def closed(self, code: int | None) -> None:
        key = close_code_label(code)
        self.closes[key] = self.closes.get(key, 0) + 1

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


Snapshot = dict[str, dict[str, Any]]  # metric name -> {label value ("" without label): value}


def _merge_into(total: Snapshot, snapshot: Mapping[str, Mapping[str, Any]], *, gauges: bool) -> None:
    for name, values in snapshot.items():
        kind = METRICS.get(name, ("counter", "", ""))[0]
        if kind == "gauge" and not gauges:
            continue
        into = total.setdefault(name, {})
        for label, value in values.items():
            if kind == "histogram":
                old = into.get(label)
                if old is None:
                    into[label] = {"counts": list(value["counts"]), "sum": value["sum"]}
                else:
                    old["counts"] = [a + b for a, b in zip(old["counts"], value["counts"], strict=True)]
                    old["sum"] += value["sum"]
            elif kind == "gauge" and name == "websock_mailbox_bytes":
                into[label] = max(into.get(label, 0), value)
            else:
                into[label] = into.get(label, 0) + value


def merge_snapshots(live: Iterable[Mapping[str, Any]], dead: Iterable[Mapping[str, Any]] = ()) -> Snapshot:
    """Sum workers' snapshots: everything of the live ones, counters and histograms of the dead."""
    total: Snapshot = {}
    for snapshot in live:
        _merge_into(total, snapshot, gauges=True)
    for snapshot in dead:
        _merge_into(total, snapshot, gauges=False)
    return total


ASK_FILE = "asked"  # its change asks every worker for a snapshot (no digits: never a snapshot)


def write_snapshot(directory: str, snapshot: Snapshot) -> None:
    """This worker's snapshot, replaced atomically (a reader never sees half of it), with
    when it was written."""
    path = os.path.join(directory, f"{os.getpid()}.json")
    partial = f"{path}.partial"
    with open(partial, "w") as out:
        json.dump({"written": time.monotonic_ns(), "figures": snapshot}, out)
    os.replace(partial, path)


def ask_for_snapshots(directory: str) -> None:
    """Ask every worker for a snapshot now (each looks at the file's stamp, `asked_since`)."""
    path = os.path.join(directory, ASK_FILE)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "w") as out:
        out.write(str(os.getpid()))
    os.replace(partial, path)  # a new inode: a change even within the clock's granularity


def asked_since(directory: str, seen: tuple[int, int] | None) -> tuple[int, int] | None:
    """The ask file's stamp when it differs from `seen` (the last one answered), else None."""
    try:
        st = os.stat(os.path.join(directory, ASK_FILE))
    except OSError:
        return None
    stamp = (st.st_ino, st.st_mtime_ns)
    return None if stamp == seen else stamp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_worker_snapshots(
    directory: str, since: int | None = None
) -> tuple[list[Snapshot], list[Snapshot], int]:
    """The snapshots in `directory`: (those of live processes, those of ended ones, how many
    live ones were written before `since`, a `time.monotonic_ns()`)."""
    live: list[Snapshot] = []
    dead: list[Snapshot] = []
    stale = 0
    for entry in os.scandir(directory):
        stem, _, extension = entry.name.partition(".")
        if extension != "json" or not stem.isdigit():
            continue
        try:
            with open(entry.path) as f:
                saved = json.load(f)
            written, snapshot = int(saved["written"]), saved["figures"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a worker that is writing its first one
        if _alive(int(stem)):
            live.append(snapshot)
            stale += since is not None and written < since
        else:
            dead.append(snapshot)
    return live, dead, stale


def render_metrics(snapshot: Snapshot) -> bytes:
    """The Prometheus text exposition of a snapshot (written by prometheus_client)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    class _Collector:
        def collect(self) -> Iterator[Any]:
            for name, (kind, label, doc) in METRICS.items():
                values = snapshot.get(name, {})
                labels = [label] if label else []
                family: Any
                if kind == "counter":
                    family = CounterMetricFamily(name, doc, labels=labels)
                elif kind == "gauge":
                    family = GaugeMetricFamily(name, doc, labels=labels)
                else:
                    family = HistogramMetricFamily(name, doc, labels=labels)
                if not values and not label:
                    values = {"": 0}
                for value_label, value in sorted(values.items()):
                    label_values = [value_label] if label else []
                    if kind == "histogram":
                        cumulative, buckets = 0, []
                        bounds = (*HANDLER_BUCKETS, float("inf"))
                        for bound, count in zip(bounds, value["counts"], strict=True):
                            cumulative += count
                            buckets.append((_le(bound), cumulative))
                        family.add_metric(label_values, buckets, value["sum"])
                    else:
                        family.add_metric(label_values, value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def metrics_response(snapshot: Snapshot) -> tuple[bytes, str]:
    """The body and content type of a GET /metrics answer."""
    from prometheus_client import CONTENT_TYPE_LATEST

    return render_metrics(snapshot), CONTENT_TYPE_LATEST
