"""Named crash points for durability tests.

``crash_point("queue.after-rename")`` kills the process with SIGKILL when the
environment variable ``MAILHOP_FAULT`` names that point, so a test can prove that a
``kill -9`` at every step of a durable write leaves either the whole message or
nothing (DESIGN.md §4 invariants 1 and 2).

The variable is read once, when this module is imported: a test arms a crash point
for the process it starts, never for one already running, and the queue runner
passes crash points several times per message (an ``os.environ`` lookup encodes
the key and copies the value each time). Unset (always, outside tests), a crash
point costs one string comparison, and ``signal`` is not even imported.
"""

from __future__ import annotations

import os

FAULT_VARIABLE = "MAILHOP_FAULT"

_ARMED_POINT = os.environ.get(FAULT_VARIABLE)


def crash_point(name: str) -> None:
    """Die here, as by ``kill -9``, if ``$MAILHOP_FAULT`` was ``name`` at start."""
    if name == _ARMED_POINT:
        import signal  # noqa: PLC0415 - only in fault-injection tests

        os.kill(os.getpid(), signal.SIGKILL)
