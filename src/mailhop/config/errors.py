"""Errors of the configuration layer; all are ``ConfigError`` (exit 78) unless noted::

    ConfigError (mailhop.errors)          78: configuration file or account problem
    ├── ConfigSyntaxError                 a line of a file is wrong (file, line, reason)
    ├── InsecureConfigError               a file with secrets is readable by others
    ├── AccountError                      no such account, or it cannot be used (check)
    └── CommandFailedError                eval/passwordeval failed, timed out, said nothing

A missing ``-C FILE`` is a ``ConfigError`` with exit code 74 (EX_IOERR), as msmtp
reports it. No message ever contains a password or a command's output.
"""

from __future__ import annotations

from mailhop.errors import ConfigError


class ConfigSyntaxError(ConfigError):
    """A configuration line is wrong; the message names the file and line."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}: line {line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


class InsecureConfigError(ConfigError):
    """A configuration file holds a password but others may read or change it."""


class AccountError(ConfigError):
    """The account does not exist or its settings cannot be used together."""


class CommandFailedError(ConfigError):
    """An ``eval`` or ``passwordeval`` command failed; its output was not used."""
