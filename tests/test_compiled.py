"""The compiled build (setup.py with WEBSOCK_ACTORS_COMPILE=1) from this checkout: built with
mypyc into a temporary copy, then the tests that drive the compiled modules run against it
in a subprocess. The rest of the suite runs the same sources interpreted, so both ways are
tested. Skipped without a C compiler or Python's headers, unless
WEBSOCK_ACTORS_REQUIRE_COMPILED=1 (CI sets it: there the compiled build must be tested)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from websock_actors.compiled import HOT_MODULES, compiled_modules

ROOT = Path(__file__).resolve().parent.parent

# The tests of the protocol core, the connection actor's I/O (limits, slow peers, shutdown,
# TLS, the inline readiness callback), the server's edges, the client (whose codec is the
# compiled protocol), the typed and compat layers on top, and the Autobahn-style conformance
# cases.
COMPILED_SUITE = [
    "tests/protocol",
    "tests/test_conformance.py",
    "tests/server/test_limits.py",
    "tests/server/test_keepalive.py",
    "tests/server/test_shutdown.py",
    "tests/server/test_tls.py",
    "tests/server/test_inline.py",
    "tests/server/test_server.py",
    "tests/typed/test_context.py",
    "tests/cli/test_cli.py",
    "tests/client/test_client.py",
    "tests/typed/test_handlers.py",
    "tests/compat/test_websock.py",
]
# What the build and those tests read: the package, its build files, the tests, the examples and
# the conformance runner.
COPIED = [
    "websock_actors",
    "build_backend",
    "tests",
    "examples",
    "conformance",
    "setup.py",
    "pyproject.toml",
    "README.md",
]


def _missing() -> str | None:
    """Why the compiled build cannot be made here, or None."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc (mypy) is not installed"
    return None


MISSING = _missing()
if MISSING is not None and os.environ.get("WEBSOCK_ACTORS_REQUIRE_COMPILED") == "1":
    raise RuntimeError(f"WEBSOCK_ACTORS_REQUIRE_COMPILED=1 but the compiled build cannot be made: {MISSING}")

pytestmark = [pytest.mark.skipif(MISSING is not None, reason=f"compiled build: {MISSING}")]


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout with the hot modules compiled in place."""
    tree = tmp_path_factory.mktemp("compiled")
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "build")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        else:
            shutil.copy2(source, tree / name)
    env = {**os.environ, "WEBSOCK_ACTORS_COMPILE": "1"}
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return tree


def _run(tree: Path, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("WEBSOCK_ACTORS_COMPILE", None)
    return subprocess.run(
        [sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_interpreted_suite_runs_the_sources() -> None:
    assert compiled_modules() == []  # this process: the checkout's .py files, as the suite tests them


@pytest.mark.timeout(120)
def test_the_build_compiles_every_hot_module(compiled_tree: Path) -> None:
    script = "from websock_actors.compiled import compiled_modules; print(','.join(compiled_modules()))"
    result = _run(compiled_tree, "-c", script, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",") == list(HOT_MODULES)


@pytest.mark.timeout(900)
def test_the_suite_passes_on_the_compiled_build(compiled_tree: Path) -> None:
    result = _run(
        compiled_tree, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *COMPILED_SUITE, timeout=840
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]
