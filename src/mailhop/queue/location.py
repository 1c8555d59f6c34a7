"""Where the queue lives: cheap to import, for the paths that only need to know.

A successful send checks whether older mail waits (to start a runner); that must
not import the spool, its records and its checksums.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from mailhop.config import Account

SYSTEM_QUEUE_DIRECTORY = "/var/spool/mailhop"


def default_queue_directory(environ: dict[str, str] | None = None) -> str:
    """``/var/spool/mailhop`` for root, ``$XDG_STATE_HOME/mailhop/queue`` for others."""
    environ = dict(os.environ) if environ is None else environ
    if os.geteuid() == 0:
        return SYSTEM_QUEUE_DIRECTORY
    state = environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "mailhop", "queue")


def queue_directory(account: Account | None = None, override: str | None = None) -> str:
    """The queue directory: ``override``, else the account's ``queue_dir``, else the default."""
    if override:
        return override
    if account is not None and account.queue_dir:
        return account.queue_dir
    return default_queue_directory()
