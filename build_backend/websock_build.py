"""setuptools' build backend, plus mypy as a build requirement: the install compiles the hot
path with mypyc (see setup.py) unless WEBSOCK_ACTORS_COMPILE=0 asks for the sources only."""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  # the rest of the PEP 517 hooks, unchanged

_MYPYC = ["mypy>=1.11"]


def compiling() -> bool:
    """Whether the build compiles the hot path: by default; WEBSOCK_ACTORS_COMPILE=0 (or
    false, no) turns it off (setup.py reads it here too)."""
    return os.environ.get("WEBSOCK_ACTORS_COMPILE", "1").lower() not in ("0", "false", "no")


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
