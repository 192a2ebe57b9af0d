"""The compiled hot path: mypyc compiles the modules of websock_actors/compiled.py (frame codec,
protocol state machine, the connection's I/O, the shared runner, the typed dispatcher) to C
extensions, from the same sources. WEBSOCK_ACTORS_COMPILE=0 installs the sources only. Where
the build cannot compile (no C compiler, no Python headers) the install goes on without the
extensions, with a warning: the sources then run interpreted, with the same behaviour.
`build_backend/` asks for mypy at build time.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "build_backend")]  # also when run as `python setup.py`

from websock_build import compiling  # noqa: E402  # the backend's reading of the variable

# The extension of mypyc's shared code, named inside the package: an editable install finds it
# through the package's path, as it finds the modules.
GROUP = "websock_actors._compiled"


def compiled_extensions() -> list[Any]:
    if not compiling():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("websock-actors: mypy is not installed: the hot path stays interpreted", file=sys.stderr)
        return []

    from websock_actors.compiled import BUILT_SOURCES, HOT_MODULES, source_digest  # no gevent, pydantic

    sources = [name.replace(".", "/") + ".py" for name in HOT_MODULES]
    # What the extensions are compiled from: the package imports the sources instead once one
    # of them is edited (websock_actors/compiled.py).
    digests = {name: source_digest(name) for name in HOT_MODULES}
    with open(os.path.join(HERE, "websock_actors", BUILT_SOURCES), "w") as out:
        json.dump(digests, out, indent=1)
    flags = ["--config-file", "build_backend/mypyc.ini", *sources]
    return list(mypycify(flags, opt_level="3", group_name=GROUP))


class BuildOrStayInterpreted(build_ext):  # type: ignore[misc]  # setuptools has no stubs here
    """All the extensions, or none: a module compiled without the shared code it imports would
    not import at all, so a failed build removes what it made and the sources are used."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler's failures come as several distutils errors
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            if self.build_temp and os.path.isdir(self.build_temp):
                shutil.rmtree(self.build_temp, ignore_errors=True)
            self.extensions: list[Any] = []
            print(f"websock-actors: the hot path stays interpreted: {exc}", file=sys.stderr)


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": BuildOrStayInterpreted})
