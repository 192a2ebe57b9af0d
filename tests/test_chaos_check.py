"""The chaos run's delivery checker (benchmarks/chaos_check.py) on small hand-made logs.

Each log is what two or three chat clients of one room would have recorded; times are the
driver's clock in seconds. The checker must tell a clean run from duplicates, reorders and
gaps, and a gap the server reported from one it did not.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.chaos_check import ClientLog, Names, check

EPOCH = "e1"


def _room(*clients: str) -> list[ClientLog]:
    """Logs of clients that all joined room "r" at t=1."""
    names = Names()
    logs = [ClientLog(name, names) for name in clients]
    for log in logs:
        log.joined(1.0, "r")
    return logs


def _say(log: ClientLog, t: float, text: str) -> None:
    """A say at `t`, acknowledged 0.01 s later."""
    log.said(t, "r", text)
    log.acked(t + 0.01, text)


def _counts(result: dict[str, Any]) -> dict[str, int]:
    keys = (
        *("acknowledged", "deliveries", "expected_deliveries", "duplicates", "out_of_order"),
        *("gaps_reported", "gaps_unreported", "undelivered_acknowledged"),
    )
    return {key: result[key] for key in keys}


def _clean_pair() -> tuple[ClientLog, ClientLog]:
    """ann says a:1..a:3 at t=2,3,4; both receive them all, seq 1..3."""
    ann, bob = _room("ann", "bob")
    for n in (1, 2, 3):
        _say(ann, 1.0 + n, f"a:{n}")
    return ann, bob


def test_a_clean_log_has_no_violation() -> None:
    ann, bob = _clean_pair()
    for log in (ann, bob):
        for n in (1, 2, 3):
            log.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
        log.received(4.5, "r", 4, EPOCH)  # a presence message, numbered too
    result = check([ann, bob])
    assert _counts(result) == {
        "acknowledged": 3,
        "deliveries": 6,
        "expected_deliveries": 6,
        "duplicates": 0,
        "out_of_order": 0,
        "gaps_reported": 0,
        "gaps_unreported": 0,
        "undelivered_acknowledged": 0,
    }
    assert result["samples"] == {}


def test_a_message_said_before_the_join_is_not_expected() -> None:
    ann, bob = _room("ann", "bob")
    bob.joins[:] = [(5.0, "r")]  # bob joined after ann's say
    _say(ann, 2.0, "a:1")
    ann.received(2.02, "r", 1, EPOCH, "a:1")
    result = check([ann, bob])
    assert (result["expected_deliveries"], result["gaps_unreported"]) == (1, 0)


def test_an_unacknowledged_say_is_not_expected() -> None:
    ann, bob = _room("ann", "bob")
    ann.said(2.0, "r", "a:1")  # no `said`: its connection dropped
    assert check([ann, bob])["expected_deliveries"] == 0


def test_a_duplicate_by_position_or_by_text() -> None:
    ann, bob = _clean_pair()
    for log in (ann, bob):
        for n in (1, 2, 3):
            log.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    bob.received(4.1, "r", 2, EPOCH, "a:2")  # the same again (a replay that overlapped)
    bob.received(4.2, "r", 9, "e2", "a:3")  # the same text at another position
    result = check([ann, bob])
    assert (result["duplicates"], result["out_of_order"], result["gaps_unreported"]) == (2, 0, 0)
    assert [s["text"] for s in result["samples"]["duplicate"]] == ["a:2", "a:3"]


def test_a_reorder_counts_once() -> None:
    ann, bob = _clean_pair()
    _say(ann, 5.0, "a:4")
    for n in (1, 2, 3, 4):
        ann.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    for t, n in ((3.0, 1), (4.0, 3), (4.1, 2), (6.0, 4)):
        bob.received(t, "r", n, EPOCH, f"a:{n}")
    result = check([ann, bob])
    assert (result["out_of_order"], result["duplicates"], result["deliveries"]) == (1, 0, 8)
    assert result["samples"]["out_of_order"][0] == {
        "client": "bob", "room": "r", "epoch": EPOCH, "seq": 2, "after_seq": 3, "t": 4.1,
    }  # fmt: skip


def test_a_new_epoch_is_not_a_reorder() -> None:
    ann, bob = _clean_pair()
    for log in (ann, bob):
        log.received(3.02, "r", 7, EPOCH, "a:1")
        log.received(4.02, "r", 1, "e2", "a:2")  # Redis restarted: seq 1 of a new epoch
        log.received(5.02, "r", 2, "e2", "a:3")
    result = check([ann, bob])
    assert (result["out_of_order"], result["duplicates"], result["gaps_unreported"]) == (0, 0, 0)


def test_an_unreported_gap() -> None:
    ann, bob = _clean_pair()
    for n in (1, 2, 3):
        ann.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    bob.received(2.02, "r", 1, EPOCH, "a:1")
    bob.received(4.02, "r", 3, EPOCH, "a:3")  # a:2 (seq 2) never came, and nobody said why
    result = check([ann, bob])
    assert (result["gaps_unreported"], result["gaps_reported"], result["deliveries"]) == (1, 0, 5)
    gap = result["samples"]["gap_unreported"][0]
    assert (gap["client"], gap["text"], gap["seq"]) == ("bob", "a:2", 2)
    assert (gap["last_receipt_before"], gap["first_receipt_after"]) == (2.02, 4.02)


def test_a_report_outside_the_gap_does_not_cover_it() -> None:
    ann, bob = _clean_pair()
    for n in (1, 2, 3):
        ann.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    bob.reported(1.5, "r", "room_lost")  # before its last receipt ahead of the gap
    bob.received(2.02, "r", 1, EPOCH, "a:1")
    bob.received(4.02, "r", 3, EPOCH, "a:3")
    bob.reported(4.5, "r", "room_lost")  # after its first receipt past the gap
    assert (check([ann, bob])["gaps_unreported"], check([ann, bob])["gaps_reported"]) == (1, 0)


def test_a_gap_covered_by_room_lost() -> None:
    ann, bob = _clean_pair()
    for n in (1, 2, 3):
        ann.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    bob.received(2.02, "r", 1, EPOCH, "a:1")
    bob.reported(4.0, "r", "room_lost")  # {"type":"room_lost","room":"r","seq":2,...}
    bob.received(4.02, "r", 3, EPOCH, "a:3")
    result = check([ann, bob])
    assert (result["gaps_reported"], result["gaps_unreported"]) == (1, 0)


def test_a_gap_covered_by_resumed_lost() -> None:
    """bob dropped after a:1; its resume (sent at 4.5) could not replay: r is in `lost`.
    The report counts from the resume's sending: the replay comes before `resumed`."""
    ann, bob = _clean_pair()
    for n in (1, 2, 3):
        ann.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    bob.received(2.02, "r", 1, EPOCH, "a:1")
    bob.resumed(4.6, True, ["r"])
    bob.reported(4.5, "r", "resumed.lost")
    _say(ann, 5.0, "a:4")
    ann.received(5.02, "r", 4, EPOCH, "a:4")
    bob.received(5.02, "r", 4, EPOCH, "a:4")
    result = check([ann, bob])
    assert (result["gaps_reported"], result["gaps_unreported"]) == (2, 0)  # a:2 and a:3
    assert result["resumes"] == {"restored": 1, "fresh": 0, "lost_rooms": 1}


def test_a_gap_covered_by_a_session_not_restored() -> None:
    """bob's session was not restored at 4.5: a:2 and a:3 are reported gaps; it joined again
    at 6, so ann's a:4 (said at 5, while bob was no member) is not expected of it."""
    ann, bob = _clean_pair()
    _say(ann, 5.0, "a:4")
    _say(ann, 7.0, "a:5")
    for n in (1, 2, 3):
        ann.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    ann.received(5.02, "r", 4, EPOCH, "a:4")
    ann.received(7.02, "r", 5, EPOCH, "a:5")
    bob.received(2.02, "r", 1, EPOCH, "a:1")
    bob.resumed(4.6, False, ["r"])
    bob.reported(4.5, "r", "restored_false")
    bob.joined(6.0, "r")
    bob.received(7.02, "r", 5, EPOCH, "a:5")
    result = check([ann, bob])
    assert (result["gaps_reported"], result["gaps_unreported"]) == (2, 0)
    assert (result["expected_deliveries"], result["deliveries"]) == (5 + 4, 5 + 2)
    assert result["resumes"] == {"restored": 0, "fresh": 1, "lost_rooms": 1}


def test_a_report_of_an_earlier_membership_covers_nothing_of_the_next() -> None:
    """bob's session was lost at 3.5 (reported), it joined again at 4, then missed a:3 (said
    at 5) without a word: the old report does not cover it."""
    ann, bob = _room("ann", "bob")
    for n, t in ((1, 2.0), (2, 3.0), (3, 5.0), (4, 6.0)):
        _say(ann, t, f"a:{n}")
        ann.received(t + 0.02, "r", n, EPOCH, f"a:{n}")
    bob.received(2.02, "r", 1, EPOCH, "a:1")
    bob.reported(3.5, "r", "restored_false")
    bob.joined(4.0, "r")
    bob.received(6.02, "r", 4, EPOCH, "a:4")
    result = check([ann, bob])
    assert (result["gaps_reported"], result["gaps_unreported"]) == (1, 1)  # a:2, then a:3
    assert result["samples"]["gap_unreported"][0]["text"] == "a:3"


def test_an_acknowledged_message_nobody_received() -> None:
    """a:2 was acknowledged but lost on its way through Redis: no position; bob had a report
    after it, ann none."""
    ann, bob = _clean_pair()
    for log in (ann, bob):
        log.received(2.02, "r", 1, EPOCH, "a:1")
    ann.received(4.02, "r", 2, EPOCH, "a:3")
    bob.reported(3.5, "r", "room_lost")
    bob.received(4.02, "r", 2, EPOCH, "a:3")
    result = check([ann, bob])
    assert result["undelivered_acknowledged"] == 1
    assert (result["gaps_reported"], result["gaps_unreported"]) == (1, 1)
    assert result["samples"]["undelivered_acknowledged"][0]["text"] == "a:2"
    assert result["samples"]["gap_unreported"][0]["client"] == "ann"


def test_nothing_received_after_the_gap_a_later_report_counts() -> None:
    ann, bob = _clean_pair()
    for n in (1, 2, 3):
        ann.received(1.02 + n, "r", n, EPOCH, f"a:{n}")
    bob.received(2.02, "r", 1, EPOCH, "a:1")
    bob.reported(9.0, "r", "resumed.lost")
    result = check([ann, bob])
    assert (result["gaps_reported"], result["gaps_unreported"]) == (2, 0)


def test_an_unknown_gap_source_is_refused() -> None:
    (ann,) = _room("ann")
    with pytest.raises(ValueError, match="unknown gap source"):
        ann.reported(1.0, "r", "guess")


def test_no_logs() -> None:
    assert check([])["acknowledged"] == 0
