"""setuptools' build backend, plus mypy as a build requirement when WEBSOCK_ACTORS_COMPILE=1
asks for the compiled hot path (see setup.py); a plain install needs nothing more."""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  # the rest of the PEP 517 hooks, unchanged

_MYPYC = ["mypy>=1.11"]


def compiling() -> bool:
    """Whether WEBSOCK_ACTORS_COMPILE asks for the compiled build (setup.py reads it here too)."""
    return os.environ.get("WEBSOCK_ACTORS_COMPILE", "") in ("1", "true", "yes")


# When compiling, setuptools' own hooks are not asked: they run setup.py, which then needs
# the mypyc that these hooks are about to request.


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    if compiling():
        return list(_MYPYC)
    return list(build_meta.get_requires_for_build_wheel(config_settings))


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    if compiling():
        return list(_MYPYC)
    return list(build_meta.get_requires_for_build_editable(config_settings))
