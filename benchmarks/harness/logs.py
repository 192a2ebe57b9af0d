"""What a server's log says: its lines per level, its tracebacks, its first serious lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

__all__ = ["LEVELS", "log_summary"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_summary(
    log: Path, shown: tuple[str, ...] = ("ERROR", "CRITICAL"), limit: int = 5
) -> tuple[int, Counter[str], list[str]]:
    """(lines with "Traceback", lines per level, the first `limit` lines of a level in `shown`)
    of a log whose lines read `<date> <time> <LEVEL> ...`."""
    tracebacks, levels = 0, Counter[str]()
    first: list[str] = []
    with open(log, errors="replace") as f:
        for line in f:
            if "Traceback" in line:
                tracebacks += 1
            parts = line.split(" ", 3)
            if len(parts) > 2 and parts[2] in LEVELS:
                levels[parts[2]] += 1
                if parts[2] in shown and len(first) < limit:
                    first.append(line.rstrip()[:300])
    return tracebacks, levels, first
