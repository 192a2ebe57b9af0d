"""Summarize the JSON reports of a `wstest -m fuzzingclient` run.

usage: python3 summarize.py REPORT_DIR [EXPECTED_IDS_FILE]

Reads REPORT_DIR/index.json and the per-case JSON files it names, and prints the
counts per Autobahn `behavior` and `behaviorClose`, the ids of cases that passed
with a note (NON-STRICT, INFORMATIONAL, UNIMPLEMENTED), every FAILED case id
with Autobahn's reason, and the cases listed in EXPECTED_IDS_FILE (one id per
line) that have no result.  Writes REPORT_DIR/summary.json.  The last line is

    autobahn: N cases, M failed          (", K missing" appended if any)

N counts the expected cases (or the reported ones without EXPECTED_IDS_FILE).
OK, NON-STRICT, INFORMATIONAL and UNIMPLEMENTED are passes, as in Autobahn's
own report.  Exit status 0 when nothing FAILED or is missing, else 1.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections import Counter
from pathlib import Path

BEHAVIOR_ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
REASON_WIDTH = 300


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in case_id.split("."))


def format_counts(counts: Counter[str]) -> str:
    names = [n for n in BEHAVIOR_ORDER if n in counts] + sorted(n for n in counts if n not in BEHAVIOR_ORDER)
    return "  ".join(f"{name}={counts[name]}" for name in names) or "(none)"


def collapse(ids: list[str], all_ids: list[str]) -> list[str]:
    """Shorten ids to "12.*" / "7.1.*" where every reported case under that prefix is in ids."""
    chosen = set(ids)
    out: list[str] = []
    covered: set[str] = set()
    for case_id in ids:
        if case_id in covered:
            continue
        parts = case_id.split(".")
        for n in range(1, len(parts)):
            prefix = ".".join(parts[:n]) + "."
            members = [c for c in all_ids if c.startswith(prefix)]
            if len(members) > 1 and all(c in chosen for c in members):
                out.append(f"{prefix}*({len(members)})")
                covered.update(members)
                break
        else:
            out.append(case_id)
    return out


def print_ids(title: str, ids: list[str], all_ids: list[str]) -> None:
    print(f"{title} ({len(ids)}):")
    text = " ".join(collapse(ids, all_ids))
    print(textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="  "))


def load_results(report_dir: Path) -> dict[str, dict[str, object]]:
    """Case id -> index.json entry (a single agent is tested)."""
    with open(report_dir / "index.json", encoding="utf-8") as f:
        index = json.load(f)
    results: dict[str, dict[str, object]] = {}
    for cases in index.values():
        results.update(cases)
    return results


def failure_reason(report_dir: Path, entry: dict[str, object]) -> str:
    try:
        with open(report_dir / str(entry.get("reportfile", "")), encoding="utf-8") as f:
            case = json.load(f)
    except (OSError, ValueError):
        return "(no per-case report)"
    reason = f"{case.get('result', '')} | close: {case.get('resultClose', '')}"
    reason = " ".join(reason.split())
    return reason if len(reason) <= REASON_WIDTH else reason[: REASON_WIDTH - 3] + "..."


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    report_dir = Path(argv[1])
    expected: list[str] | None = None
    if len(argv) == 3:
        expected = Path(argv[2]).read_text(encoding="utf-8").split()

    try:
        results = load_results(report_dir)
    except (OSError, ValueError) as exc:
        print(f"error: no usable report in {report_dir}: {exc}")
        results = {}

    ids = sorted(results, key=case_key)
    behaviors = Counter(str(results[c].get("behavior")) for c in ids)
    closes = Counter(str(results[c].get("behaviorClose")) for c in ids)
    failed = [c for c in ids if results[c].get("behavior") == "FAILED"]
    missing = sorted(set(expected) - set(results), key=case_key) if expected is not None else []
    total = len(expected) if expected is not None else len(ids)

    print(f"reports:       {report_dir / 'index.html'}")
    print(f"results:       {len(ids)} of {total} cases")
    print(f"behavior:      {format_counts(behaviors)}")
    print(f"behaviorClose: {format_counts(closes)}")
    for name in ("NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"):
        noted = [c for c in ids if results[c].get("behavior") == name]
        if noted:
            print_ids(f"{name} (counted as passed)", noted, ids)
    if missing:
        print_ids("MISSING (selected, but no result)", missing, expected or missing)
    print(f"FAILED ({len(failed)}):")
    for case_id in failed:
        entry = results[case_id]
        print(
            f"  {case_id:<9} closeBehavior={entry.get('behaviorClose')} "
            f"remoteCloseCode={entry.get('remoteCloseCode')}  {failure_reason(report_dir, entry)}"
        )

    summary = {
        "cases": total,
        "results": len(ids),
        "behavior": dict(behaviors),
        "behaviorClose": dict(closes),
        "failed": failed,
        "missing": missing,
    }
    try:
        (report_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"warning: cannot write summary.json: {exc}")

    last = f"autobahn: {total} cases, {len(failed)} failed"
    if missing:
        last += f", {len(missing)} missing"
    print(last)
    return 0 if total and not failed and not missing else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
