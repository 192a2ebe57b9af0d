"""The two builds of the hot path. The install compiles it with mypyc (setup.py) where it can,
so the rest of the suite runs whatever this install has: compiled in CI. Here the other
build is tested too: a copy of the checkout without the extensions runs the tests that drive
the hot modules on their sources; a copy built here shows that the build compiles every hot
module, that an edited source is imported instead of its stale extension, and that a machine
without a C compiler still gets a working install. The builds are skipped without a C
compiler or Python's headers, unless WEBSOCK_ACTORS_REQUIRE_COMPILED=1 (CI sets it)."""

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
# TLS, the inline readiness callback and the shared runner), the server's edges, the client
# (whose codec is the hot protocol), the typed and compat layers on top, and the
# Autobahn-style conformance cases.
HOT_PATH_SUITE = [
    "tests/protocol",
    "tests/test_conformance.py",
    "tests/server/test_limits.py",
    "tests/server/test_keepalive.py",
    "tests/server/test_shutdown.py",
    "tests/server/test_tls.py",
    "tests/server/test_inline.py",
    "tests/server/test_runner.py",
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
REQUIRED = os.environ.get("WEBSOCK_ACTORS_REQUIRE_COMPILED") == "1"
if MISSING is not None and REQUIRED:
    raise RuntimeError(f"WEBSOCK_ACTORS_REQUIRE_COMPILED=1 but the compiled build cannot be made: {MISSING}")

needs_a_compiler = pytest.mark.skipif(MISSING is not None, reason=f"compiled build: {MISSING}")


def _copy(tree: Path) -> Path:
    """The checkout's files that the builds and the tests read, without any extension built."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "build", "_compiled_sources.json")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        else:
            shutil.copy2(source, tree / name)
    return tree


def _build(tree: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree, env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _run(tree: Path, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, *argv], cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
    )


LIST_COMPILED = "from websock_actors.compiled import compiled_modules; print(','.join(compiled_modules()))"


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout with the hot modules compiled in place, as an editable install has."""
    tree = _copy(tmp_path_factory.mktemp("compiled"))
    build = _build(tree)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return tree


@pytest.mark.skipif(not REQUIRED, reason="only where the install must have compiled (CI)")
def test_this_install_runs_the_compiled_hot_path() -> None:
    assert compiled_modules() == list(HOT_MODULES)


@needs_a_compiler
@pytest.mark.timeout(660)
def test_the_build_compiles_every_hot_module(compiled_tree: Path) -> None:
    result = _run(compiled_tree, "-W", "error", "-c", LIST_COMPILED, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",") == list(HOT_MODULES)


@needs_a_compiler
@pytest.mark.timeout(660)
def test_an_edited_hot_module_runs_from_its_source(compiled_tree: Path) -> None:
    edited = compiled_tree / "websock_actors" / "server" / "runner.py"
    original = edited.read_text()
    edited.write_text(original + "\n# edited after the build\n")
    try:
        result = _run(compiled_tree, "-c", LIST_COMPILED, timeout=60)
    finally:
        edited.write_text(original)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""  # all of them interpreted: none of the stale extensions
    assert "websock_actors.server.runner changed since it was compiled" in result.stderr


@pytest.mark.timeout(300)
def test_without_a_compiler_the_install_keeps_the_sources(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    build = _build(tree, CC="false")  # a compiler that always fails
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "the hot path stays interpreted" in build.stderr
    assert not list((tree / "websock_actors").rglob("*.so"))
    result = _run(tree, "-W", "error", "-c", LIST_COMPILED, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stderr


@pytest.mark.timeout(900)
def test_the_hot_path_tests_pass_on_the_sources(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    check = _run(tree, "-c", LIST_COMPILED, timeout=60)
    assert check.returncode == 0 and check.stdout.strip() == "", check.stderr
    result = _run(tree, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *HOT_PATH_SUITE, timeout=840)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout.splitlines()[-1]
