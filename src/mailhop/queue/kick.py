"""Start a queue runner in the background: what every enqueue does, cheaply.

Kept apart from ``runner`` so that ``queue always`` (cron's path) does not import
the runner, the bounce builder and the SMTP stack just to start another process.
It does not import ``subprocess`` either: ``os.posix_spawn`` starts the runner in
about 0.3 ms of CPU where importing ``subprocess`` and a ``Popen`` take about 5,
on a path that is paid once per message.
"""

from __future__ import annotations

import contextlib
import os

# Runners this process started and has not yet seen end. A long-lived caller (a
# ``sendmail -bs`` session queuing many messages) would otherwise keep every
# finished one as a zombie until it exits; each kick collects those that ended.
_started: list[int] = []

# Where the runner's standard streams point: it must not hold a caller's pipe open
# (cron waits for its output pipe to close before it mails what it captured).
_STANDARD_STREAMS = ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY))
_INHERITED_DESCRIPTORS = "/proc/self/fd"


def kick(queue_directory: str, *, config_file: str | None = None) -> None:
    """Start a detached ``python -m mailhop queue run`` and return at once.

    A new session (no controlling terminal, not killed with the caller's process
    group), standard streams on /dev/null, no other descriptor inherited, no shell.
    ``$MAILHOP_QUEUE_NO_KICK`` set turns it off (tests that drive the runner
    themselves).
    """
    if os.environ.get("MAILHOP_QUEUE_NO_KICK"):
        return
    import sys  # noqa: PLC0415

    _collect_ended()
    argv = [sys.executable, "-m", "mailhop", "queue", "run", "--queue-dir", queue_directory]
    if config_file is not None:
        argv += ["-C", config_file]
    actions: list[tuple[int | str, ...]] = [
        (os.POSIX_SPAWN_OPEN, descriptor, os.devnull, flags, 0)
        for descriptor, flags in _STANDARD_STREAMS
    ]
    actions += [(os.POSIX_SPAWN_CLOSE, descriptor) for descriptor in _inheritable_descriptors()]
    # On failure the mail is still queued; the next run (timer, -q, next send) takes it.
    with contextlib.suppress(OSError):
        _started.append(
            os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsid=True)
        )


def _inheritable_descriptors() -> list[int]:
    """Descriptors above the standard streams that an exec would pass on.

    mailhop opens its own files close-on-exec (PEP 446); what remains was handed
    down by the caller (a shell's extra descriptor, a daemon's socket).
    """
    found = []
    with contextlib.suppress(OSError):  # no /proc: nothing known to close
        for name in os.listdir(_INHERITED_DESCRIPTORS):
            descriptor = int(name)
            # The listing's own descriptor is closed by now: get_inheritable fails.
            with contextlib.suppress(OSError):
                if descriptor > 2 and os.get_inheritable(descriptor):
                    found.append(descriptor)
    return found


def _collect_ended() -> None:
    for pid in list(_started):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue  # still running
        _started.remove(pid)
