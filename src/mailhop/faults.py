"""Named crash points for durability tests.

``crash_point("queue.after-rename")`` kills the process with SIGKILL when the
environment variable ``MAILHOP_FAULT`` names that point, so a test can prove that a
``kill -9`` at every step of a durable write leaves either the whole message or
nothing (DESIGN.md §4 invariants 1 and 2). Unset (always, outside tests), a crash
point costs one dictionary lookup, and ``signal`` is not even imported.
"""

from __future__ import annotations

import os

FAULT_VARIABLE = "MAILHOP_FAULT"


def crash_point(name: str) -> None:
    """Die here, as by ``kill -9``, if ``$MAILHOP_FAULT`` is ``name``."""
    if os.environ.get(FAULT_VARIABLE) == name:
        import signal  # noqa: PLC0415 - only in fault-injection tests

        os.kill(os.getpid(), signal.SIGKILL)
