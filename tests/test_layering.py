"""DESIGN.md §2: a lower layer never imports a higher one.

cli -> (deliver, queue, fetch) -> (net, message, store, config) -> proto. Modules at
the package root (``errors``) are shared by every layer. The walk is static (ast),
so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mailhop

RANK = {
    "proto": 0,
    "net": 1,
    "message": 1,
    "store": 1,
    "config": 1,
    "deliver": 2,
    "queue": 2,
    "fetch": 2,
    "reader": 2,
    "cli": 3,
}
PACKAGE_ROOT = Path(mailhop.__file__).parent


def imported_mailhop_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mailhop" and len(parts) > 1 and parts[1] in RANK:
                layers.add(parts[1])
    return layers


def test_no_module_imports_a_higher_layer() -> None:
    violations = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        relative = path.relative_to(PACKAGE_ROOT).parts
        if len(relative) < 2 or relative[0] not in RANK:
            continue
        own = RANK[relative[0]]
        violations += [
            f"{'/'.join(relative)} imports mailhop.{layer}"
            for layer in imported_mailhop_layers(path)
            if RANK[layer] > own
        ]
    assert violations == []


def test_the_walk_sees_every_import_form(tmp_path: Path) -> None:
    # Guard against a vacuous pass: each import form is detected.
    module = tmp_path / "module.py"
    module.write_text(
        "import mailhop.cli.main\n"
        "from mailhop.queue import spool\n"
        "def late():\n    from mailhop.deliver.log import format_line\n"
        "from mailhop import errors\n",
        encoding="utf-8",
    )
    assert imported_mailhop_layers(module) == {"cli", "queue", "deliver"}
