"""`websock-actors typescript MODULE:ATTR [-o FILE]`, in a subprocess: the chat's types on
stdout or in a file, and a one-line error for an app that is not typed or a file not written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from examples.chat import app
from websock_actors.typed.typescript import typescript_definitions

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = typescript_definitions(app.router, app.pushes, title=app.title, version=app.version, numbered=True)


def typescript(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "websock_actors", "typescript", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_typescript_prints_the_apps_types() -> None:
    result = typescript("examples.chat:app")
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED
    assert "export interface RequestReplies {" in result.stdout


def test_typescript_writes_a_file_with_o(tmp_path: Path) -> None:
    target = tmp_path / "chat.d.ts"
    result = typescript("examples.chat:app", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert target.read_text(encoding="utf-8") == EXPECTED


def test_typescript_errors_are_one_line(tmp_path: Path) -> None:
    untyped = typescript("examples.echo:app")
    assert untyped.returncode != 0
    assert untyped.stderr.strip() == (
        "error: examples.echo:app is not a typed websock_actors.App (or a WSGIMount of one)"
    )
    unwritable = typescript("examples.chat:app", "-o", str(tmp_path / "missing" / "chat.d.ts"))
    assert unwritable.returncode != 0
    assert unwritable.stderr.strip().startswith("error: cannot write ")
    assert "Traceback" not in unwritable.stderr
