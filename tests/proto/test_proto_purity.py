"""proto/ is sans-IO: no module under it imports I/O, the clock or logging.

The walk is static (ast) and sees imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mailhop.proto

FORBIDDEN = {"socket", "ssl", "os", "time", "logging", "asyncio", "selectors"}
PROTO_ROOT = Path(mailhop.proto.__file__).parent


def imported_top_level_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_proto_module_imports_io() -> None:
    modules = sorted(PROTO_ROOT.rglob("*.py"))
    assert len(modules) >= 10  # the walk really sees the package
    violations = {
        str(path.relative_to(PROTO_ROOT)): sorted(imports & FORBIDDEN)
        for path in modules
        if (imports := imported_top_level_modules(path.read_text(encoding="utf-8"))) & FORBIDDEN
    }
    assert violations == {}


def test_the_walk_sees_every_import_form() -> None:
    source = "import os.path\nfrom socket import socket\ndef f():\n    import time\n"
    assert imported_top_level_modules(source) >= {"os", "socket", "time"}


def test_the_public_names_exist() -> None:
    """Every name in the curated ``__all__`` lists resolves (httpx's export test)."""
    import mailhop.proto.errors
    import mailhop.proto.sasl
    import mailhop.proto.smtp

    for module in (mailhop.proto.smtp, mailhop.proto.sasl, mailhop.proto.errors):
        assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
