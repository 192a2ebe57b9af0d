"""RFC 6455 conformance: Autobahn|Testsuite cases 1-11 against the echo example.

Runs `conformance/run.sh` (which installs wstest on first use, starts
examples.echo on a free loopback port and summarizes the reports).  Sections 12
and 13 (permessage-deflate; ~10 minutes once the server implements it) are left
to on-demand runs of `conformance/run.sh` without arguments.

Set WEBSOCK_ACTORS_SKIP_AUTOBAHN=1 to skip this test in quick local runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_SH = ROOT / "conformance" / "run.sh"
CASES = ",".join(f"{section}.*" for section in range(1, 12))  # all but 12.* and 13.*
EXPECTED_CASES = 301  # what that selects in autobahntestsuite 25.10.1 (pinned by setup.sh)
TEST_TIMEOUT = 900
# run.sh must give up on wstest early enough to report before this test times out
WSTEST_TIMEOUT = 420

pytestmark = pytest.mark.skipif(
    os.environ.get("WEBSOCK_ACTORS_SKIP_AUTOBAHN", "").strip().lower() in {"1", "true", "yes", "on"},
    reason="WEBSOCK_ACTORS_SKIP_AUTOBAHN is set",
)


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.mark.timeout(TEST_TIMEOUT)
def test_autobahn_cases_1_to_11() -> None:
    env = dict(os.environ, PYTHON=sys.executable, AUTOBAHN_TIMEOUT=str(WSTEST_TIMEOUT))
    proc = subprocess.Popen(
        ["bash", str(RUN_SH), CASES],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=TEST_TIMEOUT - 40)
    except subprocess.TimeoutExpired:
        proc.terminate()  # run.sh stops wstest and the server it started
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"conformance/run.sh timed out\n{_tail(stdout)}\n--- stderr ---\n{_tail(stderr)}")

    report = f"{_tail(stdout)}\n--- stderr ---\n{_tail(stderr, 30)}"
    lines = stdout.strip().splitlines()
    last = lines[-1] if lines else ""
    assert re.fullmatch(r"autobahn: \d+ cases, 0 failed", last), report
    assert last == f"autobahn: {EXPECTED_CASES} cases, 0 failed", report
    assert proc.returncode == 0, report
