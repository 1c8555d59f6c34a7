"""Errors of the mail reader.

::

    ReaderError (MailhopError)
    ├── exit 66 NOINPUT    the mailbox cannot be read
    ├── exit 75 TEMPFAIL   the mailbox is locked, or changed under us: nothing was lost, retry
    └── CommandError       64: a command typed at the prompt is wrong (the session goes on)
"""

from __future__ import annotations

from mailhop.errors import ExitCode, MailhopError


class ReaderError(MailhopError):
    """Reading or rewriting a mailbox failed; the message says what to do."""

    exit_code = ExitCode.IOERR


class CommandError(ReaderError):
    """A command line typed at the ``?`` prompt is wrong; the session reports it and goes on."""

    exit_code = ExitCode.USAGE
