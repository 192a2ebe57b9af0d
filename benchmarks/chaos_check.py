"""The delivery checker of benchmarks/chaos_delivery.py: what each chat client should have
received, against what it did receive and which gaps the server reported.

Pure data in, counts out: the chaos run fills one `ClientLog` per client (times from one
monotonic clock of the driver), and `check(logs)` applies these rules:

- A message is its text `<client>:<counter>`; its room position (epoch, seq) is learned from
  any client's receipt of it. Epochs are ordered by the time they were first received.
- Every acknowledged `say` M of room R is expected by every client C whose join of R was
  acknowledged before M was sent, and whose membership did not end before (a `resumed` with
  `restored: false` ends it; C is a member again from its next `joined`).
- duplicate: C received the same (epoch, seq) of a room, or the same text, again.
  out_of_order: within one epoch of a room, C received a seq not greater than the one it
  received just before (a duplicate is not also counted as out of order).
- An expected message C missed is a reported gap when C got a gap report of R (`room_lost`,
  R in `resumed.lost`, `restored: false`) after its last receipt of R before M's position
  and no later than its first receipt of R after it (in position order); when C received
  nothing of R after M, any report from M's acknowledgement on counts. A report from before
  the membership M was expected in (before its join's acknowledgement) never counts.
  Otherwise the gap is unreported. A message nobody received has no position: the receipts
  around it are then found by time (the last before M was sent, the first after M was
  acknowledged), and it is also counted once as `undelivered_acknowledged`.

Receipts are kept in columns (arrays), and texts, rooms and epochs as shared strings: a long
run holds millions of receipts.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GAP_SOURCES", "ClientLog", "Names", "check"]

# Where a gap report comes from: a push on a live connection, a room in `resumed.lost`, a
# session that was not restored (`resumed` with `restored: false`).
GAP_SOURCES = ("room_lost", "resumed.lost", "restored_false")

_NONE = -1  # a receipt without a text (member_joined, member_left: numbered all the same)


class Names:
    """One index (and one shared string) per distinct room, epoch or message text."""

    __slots__ = ("index", "values")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.values: list[str] = []

    def __call__(self, value: str) -> int:
        """The index of `value`, new ones appended."""
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.values)
            self.values.append(value)
        return found


@dataclass
class ClientLog:
    """Everything one client did and saw that the checker needs, each with its time."""

    name: str
    names: Names
    says: list[tuple[float, str, str]] = field(default_factory=list)  # (sent, room, text)
    acks: list[tuple[float, str]] = field(default_factory=list)  # (acknowledged, text)
    joins: list[tuple[float, str]] = field(default_factory=list)  # (`joined` received, room)
    reports: list[tuple[float, str, str]] = field(default_factory=list)  # (time, room, source)
    resumes: list[tuple[float, bool, tuple[str, ...]]] = field(default_factory=list)  # restored, lost
    recv_t: array[float] = field(default_factory=lambda: array("d"))
    recv_room: array[int] = field(default_factory=lambda: array("l"))
    recv_seq: array[int] = field(default_factory=lambda: array("q"))
    recv_epoch: array[int] = field(default_factory=lambda: array("l"))
    recv_text: array[int] = field(default_factory=lambda: array("l"))

    def said(self, t: float, room: str, text: str) -> None:
        self.says.append((t, room, text))

    def acked(self, t: float, text: str) -> None:
        self.acks.append((t, text))

    def joined(self, t: float, room: str) -> None:
        self.joins.append((t, room))

    def received(self, t: float, room: str, seq: int, epoch: str, text: str | None = None) -> None:
        """A numbered room broadcast: a chat message (`text`) or another one (presence)."""
        names = self.names
        self.recv_t.append(t)
        self.recv_room.append(names(room))
        self.recv_seq.append(seq)
        self.recv_epoch.append(names(epoch))
        self.recv_text.append(_NONE if text is None else names(text))

    def reported(self, t: float, room: str, source: str) -> None:
        """A gap report of `room`; `t` is when it covers from (for a resume's report: when
        the resume was sent, since the replay it qualifies arrives before `resumed`)."""
        if source not in GAP_SOURCES:
            raise ValueError(f"unknown gap source {source!r}")
        self.reports.append((t, room, source))

    def resumed(self, t: float, restored: bool, lost: Iterable[str]) -> None:
        self.resumes.append((t, restored, tuple(lost)))

    @property
    def receipts(self) -> int:
        return len(self.recv_t)


@dataclass(frozen=True)
class _Acked:
    sender: str
    room: str
    text: str
    sent: float
    acked: float


@dataclass
class _Sample:
    """At most `limit` examples of each kind of violation, for debugging."""

    limit: int
    kinds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, kind: str, example: dict[str, Any]) -> None:
        shown = self.kinds.setdefault(kind, [])
        if len(shown) < self.limit:
            shown.append(example)


def _membership(log: ClientLog) -> dict[str, list[tuple[float, float]]]:
    """Per room, the intervals (join acknowledged, membership ended) of the client."""
    events: list[tuple[float, int, str]] = [(t, 0, room) for t, room in log.joins]
    events += [(t, 1, room) for t, room, source in log.reports if source == "restored_false"]
    events.sort()
    intervals: dict[str, list[tuple[float, float]]] = {}
    open_since: dict[str, float] = {}
    for t, kind, room in events:
        if kind == 0:
            open_since.setdefault(room, t)
        elif room in open_since:
            intervals.setdefault(room, []).append((open_since.pop(room), t))
    for room, start in open_since.items():
        intervals.setdefault(room, []).append((start, math.inf))
    return intervals


def _member_since(intervals: list[tuple[float, float]], t: float) -> float | None:
    """When the membership that `t` falls in began (its join's acknowledgement), or None."""
    return next((start for start, end in intervals if start < t < end), None)


def _covered(reports: list[float], after: float, until: float, acked: float) -> bool:
    """A report in (after, until]; with nothing received after the message (`until` inf),
    also any report from its acknowledgement on."""
    i = bisect.bisect_right(reports, after)
    if i < len(reports) and reports[i] <= until:
        return True
    return math.isinf(until) and bool(reports) and reports[-1] >= acked


def check(logs: Sequence[ClientLog], samples: int = 5) -> dict[str, Any]:
    """The counts of the module's docstring, with up to `samples` examples of each violation."""
    names = logs[0].names if logs else Names()
    values = names.values
    sample = _Sample(samples)

    # The acknowledged messages: a `said` for a say of the same client.
    acked: dict[str, _Acked] = {}
    for log in logs:
        sent = {text: (t, room) for t, room, text in log.says}
        for t, text in log.acks:
            if text in sent and text not in acked:
                acked[text] = _Acked(log.name, sent[text][1], text, sent[text][0], t)
    by_room: dict[str, list[_Acked]] = {}
    for message in acked.values():
        by_room.setdefault(message.room, []).append(message)

    # Epochs in the order they were first received; each text's position, from any receipt.
    first_seen: dict[int, float] = {}
    position: dict[int, tuple[int, int]] = {}  # text index -> (epoch index, seq)
    for log in logs:
        for t, epoch, seq, said in zip(log.recv_t, log.recv_epoch, log.recv_seq, log.recv_text, strict=True):
            if epoch not in first_seen or t < first_seen[epoch]:
                first_seen[epoch] = t
            if said != _NONE and said not in position:
                position[said] = (epoch, seq)
    rank = {epoch: r for r, epoch in enumerate(sorted(first_seen, key=lambda e: (first_seen[e], e)))}

    counts: Counter[str] = Counter()
    unreported: list[float] = []
    for log in logs:
        _check_client(log, by_room, position, rank, values, counts, sample, unreported)

    received_by_anyone = {values[said] for said in position}
    undelivered: list[float] = []
    for message in acked.values():
        if message.text not in received_by_anyone:
            counts["undelivered_acknowledged"] += 1
            undelivered.append(message.sent)
            sample.add(
                "undelivered_acknowledged",
                {"text": message.text, "room": message.room, "sent": message.sent, "acked": message.acked},
            )

    resumes = Counter[str]()
    for log in logs:
        for _, restored, lost in log.resumes:
            resumes["restored" if restored else "fresh"] += 1
            resumes["lost_rooms"] += len(lost)
    return {
        "acknowledged": len(acked),
        "deliveries": counts["deliveries"],
        "expected_deliveries": counts["expected_deliveries"],
        "duplicates": counts["duplicates"],
        "out_of_order": counts["out_of_order"],
        "gaps_reported": counts["gaps_reported"],
        "gaps_unreported": counts["gaps_unreported"],
        "undelivered_acknowledged": counts["undelivered_acknowledged"],
        "receipts": sum(log.receipts for log in logs),
        "gap_reports": sum(len(log.reports) for log in logs),
        "resumes": {key: resumes[key] for key in ("restored", "fresh", "lost_rooms")},
        "samples": sample.kinds,
        "unreported_sent": sorted(unreported),  # when each unreported gap's message was sent
        "undelivered_sent": sorted(undelivered),
    }


def _check_client(
    log: ClientLog,
    by_room: dict[str, list[_Acked]],
    position: dict[int, tuple[int, int]],
    rank: dict[int, int],
    values: list[str],
    counts: Counter[str],
    sample: _Sample,
    unreported: list[float],
) -> None:
    """One client: its duplicates and reorders, then each expected message it missed (the
    sending time of each unreported gap's message goes to `unreported`)."""
    names = log.names
    seen_at: set[tuple[int, int, int]] = set()  # (room, epoch, seq)
    seen_text: set[int] = set()
    previous: dict[tuple[int, int], int] = {}  # (room, epoch) -> the seq received just before
    by_time: dict[int, list[float]] = {}  # room -> receipt times (non-duplicates), in time order
    by_position: dict[int, list[tuple[tuple[int, int], float]]] = {}  # room -> ((rank, seq), time)
    for t, room, epoch, seq, text in zip(
        log.recv_t, log.recv_room, log.recv_epoch, log.recv_seq, log.recv_text, strict=True
    ):
        key = (room, epoch, seq)
        if key in seen_at or (text != _NONE and text in seen_text):
            counts["duplicates"] += 1
            sample.add(
                "duplicate",
                {
                    "client": log.name,
                    "room": values[room],
                    "epoch": values[epoch],
                    "seq": seq,
                    "text": values[text] if text != _NONE else None,
                    "t": t,
                },
            )
            continue
        seen_at.add(key)
        if text != _NONE:
            seen_text.add(text)
        before = previous.get((room, epoch))
        if before is not None and seq <= before:
            counts["out_of_order"] += 1
            sample.add(
                "out_of_order",
                {"client": log.name, "room": values[room], "epoch": values[epoch], "seq": seq,
                 "after_seq": before, "t": t},
            )  # fmt: skip
        previous[(room, epoch)] = seq
        by_time.setdefault(room, []).append(t)
        by_position.setdefault(room, []).append(((rank[epoch], seq), t))

    reports: dict[str, list[float]] = {}
    for t, room_name, _ in log.reports:
        reports.setdefault(room_name, []).append(t)
    for report_times in reports.values():
        report_times.sort()

    for room_name, intervals in _membership(log).items():
        room_index = names.index.get(room_name, _NONE)
        times = by_time.get(room_index, [])
        ordered = sorted(by_position.get(room_index, []))
        keys = [k for k, _ in ordered]
        room_reports = reports.get(room_name, [])
        for message in by_room.get(room_name, ()):
            since = _member_since(intervals, message.sent)
            if since is None:
                continue
            counts["expected_deliveries"] += 1
            said = names.index.get(message.text, _NONE)
            if said in seen_text:
                counts["deliveries"] += 1
                continue
            where = position.get(said)
            if where is not None:
                at = (rank[where[0]], where[1])
                i = bisect.bisect_left(keys, at)
                after = ordered[i - 1][1] if i > 0 else -math.inf
                j = bisect.bisect_right(keys, at)
                until = ordered[j][1] if j < len(ordered) else math.inf
            else:
                i = bisect.bisect_left(times, message.sent)
                after = times[i - 1] if i > 0 else -math.inf
                j = bisect.bisect_right(times, message.acked)
                until = times[j] if j < len(times) else math.inf
            # a report from before this membership (an earlier one's end) covers nothing of it
            reported = _covered(room_reports, max(after, since), until, message.acked)
            counts["gaps_reported" if reported else "gaps_unreported"] += 1
            if not reported:
                unreported.append(message.sent)
            sample.add(
                "gap_reported" if reported else "gap_unreported",
                {
                    "client": log.name,
                    "room": room_name,
                    "text": message.text,
                    "epoch": values[where[0]] if where is not None else None,
                    "seq": where[1] if where is not None else None,
                    "sent": message.sent,
                    "acked": message.acked,
                    "last_receipt_before": after if not math.isinf(after) else None,
                    "first_receipt_after": until if not math.isinf(until) else None,
                },
            )
