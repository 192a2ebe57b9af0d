"""Architecture rules: imports point down the layers; importing the library patches nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "websock_actors"

# What each layer may import from outside the standard library.
FORBIDDEN_IN_PROTOCOL = ("gevent", "greenlet", "pydantic", "socket", "_socket", "selectors", "asyncio")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level + (node.module or "")
            names.add(prefix)
    return names


def test_protocol_core_is_sans_io() -> None:
    files = sorted((PACKAGE / "protocol").glob("*.py"))
    assert files
    for path in files:
        for name in imported_modules(path):
            top = name.lstrip(".").split(".")[0]
            assert top not in FORBIDDEN_IN_PROTOCOL, f"{path.name} imports {name}"
            if name.startswith(".."):
                assert name == "..errors", f"{path.name} reaches up to {name}"


MESSAGES = ("messages.py", "router.py", "schema.py")
ACTORS = ("actor.py", "app.py", "connection.py", "context.py", "offload.py", "supervisor.py", "typed_app.py")
EDGES = {"server", "compat", "cli", "client", "contrib", "wsgi"}


def _local(name: str) -> str:
    return name.lstrip(".").split(".")[0]


def test_message_layer_needs_no_gevent_and_no_actors() -> None:
    actor_modules = {m.removesuffix(".py") for m in ACTORS}
    for module in MESSAGES:
        for name in imported_modules(PACKAGE / module):
            assert name.split(".")[0] not in ("gevent", "greenlet"), f"{module} imports {name}"
            if name.startswith("."):
                assert _local(name) not in actor_modules | EDGES, f"{module} imports {name}"


def test_lower_layers_never_import_the_edges() -> None:
    for module in (*MESSAGES, *ACTORS, "errors.py"):
        for name in imported_modules(PACKAGE / module):
            if name.startswith("."):
                assert _local(name) not in EDGES, f"{module} imports {name}"


def test_importing_the_library_patches_nothing() -> None:
    code = (
        "import websock_actors, websock_actors.compat, websock_actors.cli\n"
        "from gevent import monkey\n"
        "assert not monkey.is_anything_patched(), 'patched on import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
