"""Exit codes and the root of mailhop's exception tree.

Every error a user can see carries the sysexits(3) code that callers such as cron,
mailx and queue wrappers rely on to tell a temporary failure (75: try again later)
from a permanent one (65: the message was refused)::

    MailhopError                       exit_code decides the process status
    ├── UsageError                     64: bad command line
    ├── ConfigError                    78: configuration file or account problem
    │   └── (config.errors.*)
    ├── NotBuiltError                  69: a personality or mode that does not exist yet
    └── (one subtree per layer: net.errors.TransportError, ...)

The sans-IO cores in ``proto`` deliberately do not derive from this tree: they know
nothing about processes. The layer that drives them translates their errors with
``raise ... from``.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """sysexits(3) values, as sendmail, msmtp and mailx callers expect them."""

    OK = 0
    USAGE = 64  # command line usage error
    DATAERR = 65  # the message or a recipient was refused permanently (5xx)
    NOINPUT = 66  # an input file (trust file, attachment) cannot be read
    NOUSER = 67  # addressee unknown
    NOHOST = 68  # host name unknown
    UNAVAILABLE = 69  # a required service or capability is missing
    SOFTWARE = 70  # internal software error
    OSERR = 71  # system error (cannot fork, ...)
    OSFILE = 72  # critical OS file missing
    CANTCREAT = 73  # cannot create (user) output file
    IOERR = 74  # input/output error
    TEMPFAIL = 75  # temporary failure: the caller (or our queue) should retry
    PROTOCOL = 76  # remote error in protocol
    NOPERM = 77  # permission denied (authentication refused)
    CONFIG = 78  # configuration error


class MailhopError(Exception):
    """Base of every error mailhop reports to a user.

    ``str(error)`` is the one-line message shown after the program name; ``details``
    are extra lines (for example the server's reply lines) shown after it.
    """

    exit_code: ExitCode = ExitCode.SOFTWARE

    def __init__(
        self, message: str, *, details: tuple[str, ...] = (), exit_code: ExitCode | None = None
    ) -> None:
        super().__init__(message)
        self.details = details
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(MailhopError):
    """The command line is wrong; the message says what to change."""

    exit_code = ExitCode.USAGE


class ConfigError(MailhopError):
    """A configuration file or account is wrong; the message names file and line."""

    exit_code = ExitCode.CONFIG


class NotBuiltError(MailhopError):
    """A personality or mode that this version of mailhop does not provide yet."""

    exit_code = ExitCode.UNAVAILABLE
