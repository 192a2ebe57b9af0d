"""Results as the scripts print and keep them: JSON files and figures in table cells."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["cell", "write_json"]


def cell(value: float | None, spec: str) -> str:
    """`value` formatted by `spec` for a table, "-" when there is none."""
    return "-" if value is None else format(value, spec)


def write_json(path: Path | str, data: Any, indent: int | None = 1) -> str:
    """Write `data` as JSON to `path` (values JSON cannot hold as their str); the text written."""
    text = json.dumps(data, indent=indent, default=str)
    Path(path).write_text(text)
    return text
