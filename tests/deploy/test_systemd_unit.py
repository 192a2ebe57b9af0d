"""deploy/websock-actors.service: systemd accepts it, and its settings fit the server's; and
deploy/sysctl-websock-actors.conf names real kernel settings.

`systemd-analyze verify` (skipped where it is missing) reads the unit as systemd would; it
only warns about a bad value, so any output fails the test. The ExecStart line is parsed by
the CLI's own parser, and the timeouts are checked against the server's.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from websock_actors.cli.parser import build_parser
from websock_actors.scale.workers import KILL_GRACE

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT = REPO_ROOT / "deploy" / "websock-actors.service"
EXEC = "/srv/chat/.venv/bin/websock-actors"


def _settings() -> dict[str, str]:
    """[Service] key=value pairs, backslash continuations joined."""
    text = UNIT.read_text().replace("\\\n", " ")
    section = ""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings[key] = value
    return settings


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    executable = Path(sys.executable).with_name("websock-actors")
    if not executable.exists():
        pytest.skip(f"no {executable} to stand for {EXEC}")
    unit = tmp_path / "websock-actors.service"
    text = UNIT.read_text()
    assert text.count(EXEC) == 1
    unit.write_text(text.replace(EXEC, str(executable)).replace("/srv/chat", str(tmp_path)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == "", result.stdout + result.stderr  # warnings too


def test_the_unit_matches_the_server() -> None:
    settings = _settings()
    assert settings["Type"] == "notify"  # server/systemd_notify.py: READY=1 once listening
    assert settings["NotifyAccess"] == "main"  # only the master speaks
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["KillMode"] == "mixed"  # the master forwards it to the workers
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert int(settings["LimitNOFILE"]) >= 65536
    command = shlex.split(settings["ExecStart"])
    assert command[0] == EXEC
    args = build_parser().parse_args(command[1:])  # every flag is the CLI's
    assert args.forwarded_allow_ips == "127.0.0.1" and args.host == "127.0.0.1"
    # systemd's SIGKILL must come after the master's own: the drain, then its grace.
    assert float(settings["TimeoutStopSec"]) > args.shutdown_timeout + KILL_GRACE


@pytest.mark.skipif(not Path("/proc/sys/net").exists(), reason="Linux's /proc/sys")
def test_the_sysctl_file_names_real_settings() -> None:
    # Each key is a file under /proc/sys on Linux, each value numbers: `sysctl --system` takes it.
    lines = (REPO_ROOT / "deploy" / "sysctl-websock-actors.conf").read_text().splitlines()
    settings = dict(line.split(" = ") for line in lines if line and not line.startswith("#"))
    assert len(settings) == 5
    for key, value in settings.items():
        assert Path("/proc/sys", *key.split(".")).exists(), key
        assert all(part.isdigit() for part in value.split()), (key, value)
    low, high = map(int, settings["net.ipv4.ip_local_port_range"].split())
    assert high - low + 1 > 32768  # more than the default's 28,232
    assert not low <= 8000 <= high  # the recipe's server port is never taken as a local port
