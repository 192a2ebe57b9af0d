"""The optional compiled hot path: with WEBSOCK_ACTORS_COMPILE=1, mypyc compiles the modules
of websock_actors/compiled.py (frame codec, protocol state machine, the connection actor's
I/O loop) to C extensions. Without it, the default, the same sources run interpreted.
`build_backend/` asks for mypy at build time when the variable is set.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "build_backend")]  # also when run as `python setup.py`

from websock_build import compiling  # noqa: E402  # the backend's reading of the variable


def compiled_extensions() -> list[object]:
    if not compiling():
        return []
    from mypyc.build import mypycify

    from websock_actors.compiled import HOT_MODULES  # no import of gevent or pydantic

    sources = [name.replace(".", "/") + ".py" for name in HOT_MODULES]
    return list(mypycify(["--config-file", "build_backend/mypyc.ini", *sources], opt_level="3"))


setup(ext_modules=compiled_extensions())
