"""The module maps say what is in the tree: each package's docstring, and the tables of
docs/design.md, list exactly the modules and sub-packages that exist.

The format of a package docstring's map: an indented block of lines, each one entry, the
name then at least one space and what it is:

    frames.py      a frame encoded, frames parsed from a byte stream
    protocol/      a sub-package (only the top-level package has any)

A line of the docstring is an entry when it is indented and starts with a name ending in
`.py` or `/` followed by text; other indented lines (code examples, wrapped descriptions)
are not entries, so a wrapped description must not begin with such a name.
What a map must list: every `.py` file of the package and every directory with an
`__init__.py`, except `__init__.py` itself and names starting with `_` (`__main__.py`).
Other files (`py.typed`, `status_page.html`) are not modules.

The table of docs/design.md: one row per layer, the package in the second column
(`websock_actors/server/`) and its modules in the third (`connection.py` ...); a module
named by its path in the second column (`websock_actors/cli.py`) counts as listed too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "websock_actors"
PACKAGES = sorted(
    [PACKAGE, *(path.parent for path in PACKAGE.glob("*/__init__.py"))], key=lambda path: path.name
)
_ENTRY = re.compile(r"^[ \t]+(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.py|/))[ \t]+\S")
_ROW = re.compile(r"^\|(?P<layer>[^|]*)\|(?P<package>[^|]*)\|(?P<modules>[^|]*)\|\s*$")
_PATH = re.compile(r"`websock_actors/(?:(?P<package>[A-Za-z0-9_]+)/)?(?P<module>[A-Za-z0-9_]+\.py)?`")
_MODULE = re.compile(r"`(?P<module>[A-Za-z_][A-Za-z0-9_]*\.py)`")


def present(package: Path) -> set[str]:
    """What a map of `package` must list: its public modules, and sub-packages as `name/`."""
    names = {path.name for path in package.glob("*.py")}
    names |= {f"{path.parent.name}/" for path in package.glob("*/__init__.py")}
    return {name for name in names if not name.startswith("_")}


def docstring_map(source: str) -> list[str]:
    """The entries of the map in a module's docstring, in order (see this module's docstring)."""
    docstring = ast.get_docstring(ast.parse(source), clean=False) or ""
    # Not cleandoc'd: a module's docstring starts at column 0, and a docstring whose only
    # indented lines are the map would lose the indentation that marks it.
    return [match["name"] for line in docstring.splitlines() if (match := _ENTRY.match(line))]


def table_maps(markdown: str) -> dict[str, set[str]]:
    """From the layer tables of a Markdown file: the modules listed per package ("" for the
    top-level package)."""
    listed: dict[str, set[str]] = {}
    for line in markdown.splitlines():
        row = _ROW.match(line)
        if row is None:
            continue
        packages = set()
        for path in _PATH.finditer(row["package"]):
            package = path["package"] or ""
            if path["module"] is not None:
                listed.setdefault(package, set()).add(path["module"])
            else:
                packages.add(package)
                listed.setdefault(package, set())
        if len(packages) == 1:
            (package,) = packages
            listed[package] |= {match["module"] for match in _MODULE.finditer(row["modules"])}
    return listed


@pytest.mark.parametrize("package", PACKAGES, ids=lambda package: package.relative_to(ROOT).as_posix())
def test_the_package_docstring_maps_its_modules(package: Path) -> None:
    entries = docstring_map((package / "__init__.py").read_text(encoding="utf-8"))
    assert len(entries) == len(set(entries)), f"listed twice: {entries}"
    expected = present(package)
    assert {"missing": sorted(expected - set(entries)), "not there": sorted(set(entries) - expected)} == {
        "missing": [],
        "not there": [],
    }


@pytest.mark.parametrize("document", ["docs/design.md"])
def test_the_layer_table_maps_every_module(document: str) -> None:
    listed = table_maps((ROOT / document).read_text(encoding="utf-8"))
    wrong = {}
    for package in PACKAGES:
        key = "" if package == PACKAGE else package.name
        expected = {name for name in present(package) if name.endswith(".py")}
        have = listed.get(key)
        if have is None:
            wrong[f"websock_actors/{key}"] = "no row"
        elif have != expected:
            missing, extra = sorted(expected - have), sorted(have - expected)
            wrong[f"websock_actors/{key}"] = f"missing {missing}, not there {extra}"
    assert wrong == {}


def test_the_map_formats_are_read_as_documented() -> None:
    source = (
        '"""A package.\n\n    from x import y        # an example, not an entry\n\n'
        "    one.py     the first, described\n        over two lines\n    two/  a sub-package\n"
        'text.py in prose is not an entry\n"""\n'
    )
    assert docstring_map(source) == ["one.py", "two/"]
    table = (
        "| layer | package | modules |\n|---|---|---|\n"
        "| errors | `websock_actors/errors.py` | the tree |\n"
        "| server | `websock_actors/server/` | `app.py` (hooks), `tls.py` |\n"
        "| edges | `websock_actors/contrib/locust.py`, `websock_actors/cli.py` | the user |\n"
    )
    assert table_maps(table) == {
        "": {"errors.py", "cli.py"},
        "server": {"app.py", "tls.py"},
        "contrib": {"locust.py"},
    }
