"""Running one measured command: wall time, exit status and resource use.

Every bench waits for its child with ``os.wait4``, which blocks in the kernel and
returns at the exit, with the child's rusage (CPU seconds, peak RSS) and that of
every process the child waited for (a queue run's workers). Not
``subprocess.run(timeout=...)``: with a timeout it waits by polling, with sleeps
that double up to 50 ms, so it notices an exit only 63, 113, 163 ... ms after the
start, and every time would read as one of those. A timer kills a command that
hangs instead. A process the command leaves running is not counted.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

# Bound on each measured command: a hung one is killed, never waited for forever.
COMMAND_TIMEOUT_SECONDS = 600


class Measured(NamedTuple):
    seconds: float  # from starting the command to its exit
    status: int  # its exit status, as subprocess gives it (negative: killed by a signal)
    usage: resource.struct_rusage  # of the command and the children it waited for

    @property
    def cpu_seconds(self) -> float:
        return self.usage.ru_utime + self.usage.ru_stime


def run_measured(argv: Sequence[str], *, input: bytes | None = None, **popen: Any) -> Measured:
    """Run ``argv`` (``input`` on its stdin, or ``popen``'s ``stdin``) and measure it.

    ``popen`` goes to ``subprocess.Popen`` as it is (``env``, ``stdout``, ``user`` ...).
    """
    started = time.perf_counter()
    if input is not None:
        popen["stdin"] = subprocess.PIPE
    process = subprocess.Popen(argv, **popen)
    watchdog = threading.Timer(COMMAND_TIMEOUT_SECONDS, process.kill)
    watchdog.start()
    try:
        if process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # it may exit without reading all
                process.stdin.write(input or b"")
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        watchdog.cancel()
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Measured(seconds, process.returncode, usage)


def run_timed(argv: Sequence[str], *, input: bytes | None = None, **popen: Any) -> Measured:
    """``run_measured`` for a command that must succeed: a failure raises."""
    measured = run_measured(argv, input=input, **popen)
    if measured.status != 0:
        raise subprocess.CalledProcessError(measured.status, list(argv))
    return measured
