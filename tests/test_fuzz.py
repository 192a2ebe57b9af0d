"""The atheris fuzz targets of fuzz/ run for 3 seconds each and find nothing.

atheris is a dev dependency: when it cannot be imported these tests fail, they do not
skip. Each run's crash files go to the test's temporary directory; a failure shows the end
of the run's output (the exception, and the input in base64).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
TARGETS = ["fuzz_http", "fuzz_frames", "fuzz_router"]
SECONDS = 3


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.timeout(60)
def test_atheris_is_installed() -> None:
    assert importlib.util.find_spec("atheris") is not None, "atheris is a dev dependency: pip install atheris"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_runs_clean(target: str, tmp_path: Path) -> None:
    assert importlib.util.find_spec("atheris") is not None, "atheris is a dev dependency: pip install atheris"
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ_DIR / f"{target}.py"),
            "--seconds",
            str(SECONDS),
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=50,
    )
    output = f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}"
    pattern = rf"^{target}: (\d+) inputs in ([\d.]+) s, (\d+) crashes, peak RSS (\d+) MiB$"
    summaries = [m for line in proc.stdout.splitlines() if (m := re.match(pattern, line))]
    assert len(summaries) == 1, f"expected one summary line\n{output}"
    inputs, seconds, crashes, _rss = summaries[0].groups()
    assert crashes == "0", f"{target} found a crash\n{output}"
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{output}"
    assert int(inputs) > 0, output
    assert float(seconds) <= SECONDS + 1, output
