"""Package names that load their module on first use (PEP 562), for the start path.

cron and daemons start the sendmail personality once per message, and importing a
package runs its ``__init__`` in full: a name it re-exports from a module that path
never uses (the SMTP transfer form, password sources, the queue's spool) would be
paid for by every process. Such a package imports those names under
``if TYPE_CHECKING:`` (what mypy reads) and sets its hook under ``if not
TYPE_CHECKING:`` (hidden from mypy, so a misspelt name is still an error)::

    if not TYPE_CHECKING:
        __getattr__ = lazy_exports(__name__, {"Spool": "mailhop.queue.spool"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: name -> the module it comes from.

    The first access (``from mailhop.queue import Spool`` or ``mailhop.queue.Spool``)
    imports the module and stores the name in the package, so later ones are plain
    attribute lookups.
    """

    def __getattr__(name: str) -> object:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
