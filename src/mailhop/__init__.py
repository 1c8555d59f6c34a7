"""mailhop: a secure command-line mail stack for Linux.

The package is layered (see DESIGN.md §2): ``cli`` calls the use-case packages
(``deliver``, ``queue``, ``fetch``), which use ``net``, ``message``, ``store`` and
``config``, which use the sans-IO protocol cores in ``proto``. A lower layer never
imports a higher one.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
