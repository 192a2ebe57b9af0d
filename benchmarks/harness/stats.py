"""Medians over rounds and percentiles of samples."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["floor_rank", "median", "median_of", "nearest_rank", "window_figures"]


def median(values: Iterable[float]) -> float | None:
    """The median, or None when there are no values."""
    kept = list(values)
    return statistics.median(kept) if kept else None


def median_of(runs: Iterable[dict[str, Any]], *path: str) -> float | None:
    """The median of the number at `path` (keys into nested dicts) over the runs that have one."""
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values.append(value)
    return median(values)


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The `q` quantile (0-1) of sorted values by nearest rank; NaN when there are none."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 1))
    return ordered[int(rank) - 1]


def floor_rank(ordered: Sequence[float], q: float) -> float:
    """The value at index floor(q * n) of sorted values (Locust's way); 0.0 when there are none."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def window_figures(count: int, seconds: float, failures: int, ordered: Sequence[float]) -> dict[str, Any]:
    """A request type's figures over a window of `seconds`: its rate, and the percentiles (by
    `floor_rank`, as Locust's) and maximum of its sorted response times in ms."""
    return {
        "count": count,
        "per_second": count / seconds if seconds > 0 else 0.0,
        "failures": failures,
        "p50_ms": floor_rank(ordered, 0.50),
        "p95_ms": floor_rank(ordered, 0.95),
        "p99_ms": floor_rank(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else 0.0,
    }
