"""An Emitter in another process where gevent cannot be imported (a Celery worker, a Flask
view): `emit_elsewhere(url, "broadcast", "r", {...})` runs the method there and returns
what it did (`Emitted` as a dict), or the exception's class name under "raised"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["emit_elsewhere"]

ROOT = Path(__file__).resolve().parent.parent.parent

_WITHOUT_GEVENT = """
import dataclasses, json, sys
sys.modules["gevent"] = None
from websock_actors.emitter import Emitter
url, options, method = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
args, kwargs = map(json.loads, sys.argv[4:])
emitter = Emitter(url, **options)
try:
    done = dataclasses.asdict(getattr(emitter, method)(*args, **kwargs))
except Exception as exc:
    done = {"raised": type(exc).__name__, "detail": str(exc)}
print(json.dumps(done))
assert "gevent" not in {name.split(".")[0] for name in sys.modules if sys.modules[name] is not None}
"""


def emit_elsewhere(url: str, method: str, *args: Any, options: dict[str, Any] | None = None,
                   **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_GEVENT, url, json.dumps(options or {}), method,
         json.dumps(args), json.dumps(kwargs)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result
