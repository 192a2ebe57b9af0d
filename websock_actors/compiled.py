"""Which hot modules run compiled in this installation, and the guard against stale ones.

The install (setup.py) compiles HOT_MODULES with mypyc by default: the same sources, as C
extensions; `WEBSOCK_ACTORS_COMPILE=0 pip install .` keeps the sources only, and so does a
machine without a C compiler. Either way the behaviour is the same; only speed differs.

An editable install compiles them in place, next to their sources. Once a source is edited
the extension no longer matches it: the package then imports every hot module from its
source (all or none: compiled classes are not subclassed by interpreted ones), and warns.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["BUILT_SOURCES", "HOT_MODULES", "compiled_modules", "source_digest", "use_sources_if_edited"]

# Every message passes through these (py-spy, then valgrind, at 100 connections, one message
# in flight each).
HOT_MODULES = (
    "websock_actors.protocol.frames",
    "websock_actors.protocol.connection",
    "websock_actors.server.transport",
    "websock_actors.server.mailbox",
    "websock_actors.server.inline",
    "websock_actors.server.opening",
    "websock_actors.server.connection",
    "websock_actors.server.tls",  # a subclass of the compiled Connection must be compiled too
    "websock_actors.server.runner",
    # The typed path's own: compiled together, so that the dispatcher reaches its routes and
    # makes each message's Context without the interpreter's attribute lookups.
    "websock_actors.typed.context",
    "websock_actors.typed.dispatch",
)

# Written by the compiling build: each hot module's source digest, as compiled.
BUILT_SOURCES = "_compiled_sources.json"

_PACKAGE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The HOT_MODULES imported from a compiled extension rather than from their source."""
    compiled = []
    for name in HOT_MODULES:
        path = importlib.import_module(name).__file__ or ""
        if not path.endswith(".py"):
            compiled.append(name)
    return compiled


def _source(name: str) -> Path:
    return _PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")


def source_digest(name: str) -> str:
    """The digest of a hot module's source, as the build records it."""
    return hashlib.sha256(_source(name).read_bytes()).hexdigest()


class _HotSources(importlib.abc.MetaPathFinder):
    """Finds the hot modules' sources ahead of their extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in HOT_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(fullname))


def use_sources_if_edited() -> None:
    """Called as the package is imported, before any hot module: when the extensions were
    compiled from sources that have changed since, import the sources instead, and warn."""
    try:
        built = json.loads((_PACKAGE / BUILT_SOURCES).read_text())
    except (OSError, ValueError):
        return  # not a compiled build
    if not any(_PACKAGE.glob("_compiled__mypyc*")):
        return  # the build fell back to the sources
    edited = [name for name in HOT_MODULES if built.get(name) != source_digest(name)]
    if not edited:
        return
    sys.meta_path.insert(0, _HotSources())
    warnings.warn(
        f"websock_actors: {edited[0]} changed since it was compiled: the hot path runs interpreted"
        " (reinstall, e.g. `pip install -e .`, to compile it again)",
        RuntimeWarning,
        stacklevel=2,
    )
