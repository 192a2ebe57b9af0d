"""Which hot modules run compiled in this installation.

The optional build (`WEBSOCK_ACTORS_COMPILE=1 pip install .`, see setup.py) compiles
HOT_MODULES with mypyc: the same sources, as C extensions. Without it they run interpreted,
with the same behaviour; only speed differs.
"""

from __future__ import annotations

import importlib

__all__ = ["HOT_MODULES", "compiled_modules"]

# Every message passes through these (py-spy at 100 connections, one message in flight each).
HOT_MODULES = (
    "websock_actors.protocol.frames",
    "websock_actors.protocol.connection",
    "websock_actors.server.transport",
    "websock_actors.server.mailbox",
    "websock_actors.server.inline",
    "websock_actors.server.opening",
    "websock_actors.server.connection",
    "websock_actors.server.tls",  # a subclass of the compiled Connection must be compiled too
)


def compiled_modules() -> list[str]:
    """The HOT_MODULES imported from a compiled extension rather than from their source."""
    compiled = []
    for name in HOT_MODULES:
        path = importlib.import_module(name).__file__ or ""
        if not path.endswith(".py"):
            compiled.append(name)
    return compiled
