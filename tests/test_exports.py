"""Every module's ``__all__`` names what exists when the module runs.

The start-path modules import typing's names, and define their Protocol classes,
under ``TYPE_CHECKING = False`` (CONVENTIONS): mypy reads those as defined, so a
name exported from such a block passes every static check and is missing at run
time (``from module import *`` then fails with AttributeError).
"""

from __future__ import annotations

import importlib
import pkgutil

import mailhop


def test_every_exported_name_exists_at_run_time() -> None:
    missing = []
    for module_info in pkgutil.walk_packages(mailhop.__path__, "mailhop."):
        module = importlib.import_module(module_info.name)
        missing += [
            f"{module.__name__}.{name}"
            for name in getattr(module, "__all__", ())
            if not hasattr(module, name)
        ]
    assert missing == []
