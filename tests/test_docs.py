"""The documentation runs: every ```python block of README.md and docs/**/*.md, and the site.

How a block is run:
- alone, in a fresh namespace named `docs_block`, so that a block's
  `if __name__ == "__main__":` part (where a program would serve forever) does not run;
- then every function the block defines named `test_*` is called, so a block can be a test
  file (the tutorial's test starts its own server on 127.0.0.1 and stops it);
- in a subprocess of its own when it monkey-patches the process (it imports locust, or
  calls `monkey.patch_all()`): patching this pytest process would change every later test;
- not at all when the line before its opening fence is `<!-- no-test -->`, which is kept
  for blocks that need a server they do not start themselves, or the network.

Tracebacks point at the block's lines in its Markdown file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_TEST = "<!-- no-test -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)")
# What changes the whole process when run: such blocks run in a subprocess.
_PATCHES_PROCESS = re.compile(r"^\s*(from|import)\s+locust\b|monkey\.patch_all\(", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the first line of code, 1-based
    source: str
    skip: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def code(self) -> Any:
        # Blank lines first, so that line numbers in tracebacks are the Markdown file's; and
        # not this module's `from __future__ import annotations`, which would turn a block's
        # annotations into strings.
        return compile("\n" * (self.line - 1) + self.source, str(self.path), "exec", dont_inherit=True)


def python_blocks(path: Path) -> list[Block]:
    """The fenced blocks tagged `python` (or `py`) in a Markdown file, in order."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].lower()
        start = i + 1
        end = start
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        if info in ("python", "py"):
            previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            body = [
                line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[start:end]
            ]
            blocks.append(Block(path, start + 1, "\n".join(body) + "\n", previous == NO_TEST))
        i = end + 1
    return blocks


def documentation_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


BLOCKS = [block for path in documentation_files() for block in python_blocks(path)]


def run_tests_defined(namespace: dict[str, Any]) -> None:
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            value()


_RUNNER = """
import sys
path, line = sys.argv[1], int(sys.argv[2])
namespace = {"__name__": "docs_block"}
exec(compile("\\n" * (line - 1) + sys.stdin.read(), path, "exec"), namespace)
for name, value in list(namespace.items()):
    if name.startswith("test_") and callable(value):
        value()
"""


def test_the_documentation_has_python_blocks() -> None:
    files = {block.path.name for block in BLOCKS}
    assert {"README.md", "tutorial.md", "design.md"} <= files
    runnable = [block for block in BLOCKS if not block.skip]
    assert len(runnable) >= 15, [block.name for block in BLOCKS]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_python_block_runs(block: Block) -> None:
    if block.skip:
        pytest.skip(f"{NO_TEST}: needs a server or the network")
    if _PATCHES_PROCESS.search(block.source):
        result = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(block.path), str(block.line)],
            input=block.source,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 0, f"{block.name} failed:\n{result.stdout}{result.stderr}"
        return
    namespace: dict[str, Any] = {"__name__": "docs_block"}
    exec(block.code(), namespace)
    run_tests_defined(namespace)


def test_python_blocks_are_found_where_expected(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- no-test -->\n```python\nconnect()\n```\n\n"
        "```sh\nls\n```\n\n- item:\n\n    ```py\n    if True:\n        y = 2\n    ```\n",
        encoding="utf-8",
    )
    blocks = python_blocks(page)
    assert [(b.line, b.source, b.skip) for b in blocks] == [
        (4, "x = 1\n", False),
        (9, "connect()\n", True),
        (19, "if True:\n    y = 2\n", False),
    ]


_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
_IMPORT = re.compile(
    r"^[ \t]*from[ \t]+(websock_actors[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#]+)", re.MULTILINE
)


def test_the_index_links_every_page() -> None:
    """docs/index.md is where a reader starts: every other page of docs/ is linked from it."""
    docs = ROOT / "docs"
    index = (docs / "index.md").read_text(encoding="utf-8")
    linked = {(docs / target).resolve() for target in _LINK.findall(index)}
    pages = {page.resolve() for page in docs.rglob("*.md")} - {(docs / "index.md").resolve()}
    assert sorted(str(page.relative_to(docs)) for page in pages - linked) == []


def test_the_imports_in_the_documentation_exist() -> None:
    """Every `from websock_actors... import X` in README.md and docs/ names what the package has
    (blocks marked no-test included, which are never run). Checked in a subprocess: importing
    `websock_actors.contrib.locust` imports locust, which monkey-patches its process."""
    wanted = []
    for path in documentation_files():
        for match in _IMPORT.finditer(path.read_text(encoding="utf-8")):
            for item in match[2].strip("()").replace("\n", " ").split(","):
                name = item.split(" as ")[0].strip()
                if name:
                    wanted.append((str(path.relative_to(ROOT)), match[1], name))
    check = (
        "import importlib, json, sys\n"
        "missing = [f'{doc}: from {module} import {name}' for doc, module, name in json.load(sys.stdin)\n"
        "           if not hasattr(importlib.import_module(module), name)]\n"
        "print(json.dumps(missing))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], input=json.dumps(wanted), capture_output=True, text=True, cwd=ROOT,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert wanted and json.loads(result.stdout.splitlines()[-1]) == []


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, a docstring mkdocstrings cannot
    render, a page missing from the nav, all fail it."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2.0
    result = subprocess.run(
        [
            sys.executable, "-m", "mkdocs", "build", "--strict",
            "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "reference" / "typed" / "index.html").is_file()
