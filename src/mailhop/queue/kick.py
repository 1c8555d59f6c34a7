"""Start a queue runner in the background: what every enqueue does, cheaply.

Kept apart from ``runner`` so that ``queue always`` (cron's path) does not import
the runner, the bounce builder and the SMTP stack just to start another process.
"""

from __future__ import annotations

import contextlib
import os


def kick(queue_directory: str, *, config_file: str | None = None) -> None:
    """Start a detached ``python -m mailhop queue run`` and return at once.

    A new session (no controlling terminal, not killed with the caller's process
    group), standard streams on /dev/null, no shell. ``$MAILHOP_QUEUE_NO_KICK`` set
    turns it off (tests that drive the runner themselves).
    """
    if os.environ.get("MAILHOP_QUEUE_NO_KICK"):
        return
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    argv = [sys.executable, "-m", "mailhop", "queue", "run", "--queue-dir", queue_directory]
    if config_file is not None:
        argv += ["-C", config_file]
    # On failure the mail is still queued; the next run (timer, -q, next send) takes it.
    with contextlib.suppress(OSError):
        subprocess.Popen(  # fixed argv, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
