"""Errors of the durable queue.

::

    QueueError (MailhopError)
    ├── EntryNotFoundError        64: no entry has that id
    ├── EntryBusyError            75: a runner holds the entry's lock; try again
    └── CorruptEntryError         65: an entry failed its integrity check (quarantined)

Storage failures (no space, permissions) stay ``mailhop.store.StoreError`` (75/73/74).
"""

from __future__ import annotations

from mailhop.errors import ExitCode, MailhopError


class QueueError(MailhopError):
    """A queue operation failed."""

    exit_code = ExitCode.TEMPFAIL


class EntryNotFoundError(QueueError):
    """No queue entry has that id (it was delivered, removed, or never existed)."""

    exit_code = ExitCode.USAGE


class EntryBusyError(QueueError):
    """Another process (a runner) holds the entry's lock right now."""

    exit_code = ExitCode.TEMPFAIL


class CorruptEntryError(QueueError):
    """The entry's record or message failed its integrity check."""

    exit_code = ExitCode.DATAERR
