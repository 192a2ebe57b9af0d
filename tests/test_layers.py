"""Architecture rules: a package per layer, imports point down, no cycles, nothing patched.

The layers, lowest first. A module may import its own package and the packages before it
in LAYERS; `websock_actors/__init__.py` only names the public API and imports it lazily.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "websock_actors"

LAYERS = (
    "errors", "protocol", "actors", "server", "typed", "scale",
    "client", "compat", "contrib", "testing", "emitter", "compiled", "cli", "__main__",
)  # fmt: skip  # compiled: which hot modules (by name, imported at run time) came compiled

# What the sans-I/O core may not import, even from the standard library.
FORBIDDEN_IN_PROTOCOL = ("gevent", "greenlet", "pydantic", "socket", "_socket", "selectors", "asyncio")
# The typed layer's description of messages, and numbered broadcasting, need no event loop.
GEVENT_FREE_TYPED = (
    "messages.py", "router.py", "schema.py", "rooms.py", "streams.py", "numbered.py", "history.py",
    "resume.py", "sessions.py",
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Absolute names of what `path` imports; `runtime_only`: only what runs at import time
    (not under TYPE_CHECKING, not inside functions)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    prefix = ".".join([*base, node.module] if node.module else base)
                else:
                    prefix = node.module or ""
                found.add(prefix)
                # `from . import x` and `from .pkg import mod` may name modules.
                found.update(f"{prefix}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not (runtime_only and _is_type_checking(node)):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif not runtime_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return found


def library_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "websock_actors" or len(parts) == 1:
        return None
    return parts[1]


def test_every_module_belongs_to_a_layer() -> None:
    for path in library_files():
        name = module_name(path)
        if name != "websock_actors":
            assert layer_of(name) in LAYERS, f"{name} is in no layer"


def test_imports_point_down_the_layers() -> None:
    for path in library_files():
        name = module_name(path)
        if name == "websock_actors":
            continue
        mine = LAYERS.index(layer_of(name))  # type: ignore[arg-type]
        for target in imports(path):
            layer = layer_of(target)
            if target == "websock_actors":
                pytest.fail(f"{name} imports the top-level package (import from the layer instead)")
            if layer is not None and layer in LAYERS:
                assert LAYERS.index(layer) <= mine, f"{name} imports {target}: an upward arrow"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph, as a path that ends where it started, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = walk(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles_between_modules() -> None:
    modules = {module_name(path): path for path in library_files()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # A module's import of its own package's __init__ is how Python loads it: not an edge.
        graph[name] = {t for t in imports(path, runtime_only=True) if t in modules and t != name}
        graph[name] -= {n for n in graph[name] if name.startswith(n + ".")}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_protocol_core_is_sans_io() -> None:
    files = sorted((PACKAGE / "protocol").glob("*.py"))
    assert len(files) >= 6
    for path in files:
        for name in imports(path):
            assert name.split(".")[0] not in FORBIDDEN_IN_PROTOCOL, f"{path.name} imports {name}"
            if name.startswith("websock_actors"):
                assert layer_of(name) in ("protocol", "errors"), f"{path.name} reaches up to {name}"


def test_typed_messages_need_no_gevent() -> None:
    for module in GEVENT_FREE_TYPED:
        for name in imports(PACKAGE / "typed" / module, runtime_only=True):
            assert name.split(".")[0] not in ("gevent", "greenlet"), f"typed/{module} imports {name}"
            assert layer_of(name) not in ("actors", "server"), f"typed/{module} imports {name}"


def test_the_top_level_package_imports_nothing_at_import_time() -> None:
    runtime = imports(PACKAGE / "__init__.py", runtime_only=True)
    # but compiled.py (the standard library only), whose guard must run before a hot module is
    # imported, to pick its source over an extension compiled from an older one
    ours = {name for name in runtime if name.startswith("websock_actors")}
    assert ours == {"websock_actors.compiled", "websock_actors.compiled.use_sources_if_edited"}
    assert not {name for name in imports(PACKAGE / "compiled.py") if name.startswith("websock_actors")}


def run_python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_protocol_core_works_without_gevent_and_pydantic() -> None:
    run_python(
        "import sys\n"
        "sys.modules['gevent'] = None\n"
        "sys.modules['greenlet'] = None\n"
        "sys.modules['pydantic'] = None\n"
        "import websock_actors.protocol as p\n"
        "from websock_actors.protocol.frames import encode_frame\n"
        "client = p.ClientHandshake('example.com', '/chat')\n"
        "server = p.ServerHandshake(p.HandshakePolicy())\n"
        "assert server.receive_data(client.data_to_send()) is not None\n"
        "answer, conn = server.accept()\n"
        "peer = client.receive_data(answer)\n"
        "assert peer is not None\n"
        "assert conn.receive_data(peer.send_text('hi')) == [p.TextMessage('hi')]\n"
        "assert encode_frame(p.Opcode.TEXT, b'x') == b'\\x81\\x01x'\n"
        "try:\n"
        "    import websock_actors.server\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('the server imported without gevent')\n"
    )


def test_public_names_stay_importable() -> None:
    run_python(
        "import websock_actors\n"
        "for name in [*websock_actors.__all__, 'ProtocolError']:\n"
        "    getattr(websock_actors, name)\n"
        "assert set(websock_actors._HOME_OF) == {*websock_actors.__all__, 'ProtocolError'}\n"
        "from websock_actors import App, Server, WebSocketApp, WebSocketServer, encode_broadcast\n"
        "from websock_actors.client import connect, ClientConnection, Backoff\n"
        "from websock_actors.compat import WebSocketServer as Compat, WSGIMount\n"
        "assert Compat is WebSocketServer\n"
        "try:\n"
        "    websock_actors.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('unknown names must raise AttributeError')\n"
    )


def test_importing_the_library_patches_nothing() -> None:
    run_python(
        "import websock_actors, websock_actors.compat, websock_actors.cli, websock_actors.client\n"
        "from websock_actors import App, Server\n"
        "from gevent import monkey\n"
        "assert not monkey.is_anything_patched(), 'patched on import'\n"
    )
