"""Errors of the fetch layer, each with the exit code a cron job can act on::

    FetchError (MailhopError)            base
    ├── FetchConfigError                 78: the retrieval account cannot work as written
    ├── FetchProtocolError               76: the server broke POP3/IMAP (or attacked us)
    ├── FetchAuthError                   77: the server refused our credentials
    ├── FetchServerError                 75: the server refused a command (-ERR, NO): retry
    └── DeliveryFailedError              75 (MDA exit 75, disk full) or 73: local copy failed

Transport errors (``mailhop.net.errors``) and store errors pass through with their
own exit codes; proto errors are translated here with ``raise ... from``.
"""

from __future__ import annotations

from mailhop.errors import ExitCode, MailhopError


class FetchError(MailhopError):
    exit_code = ExitCode.TEMPFAIL


class FetchConfigError(FetchError):
    exit_code = ExitCode.CONFIG


class FetchProtocolError(FetchError):
    exit_code = ExitCode.PROTOCOL


class FetchAuthError(FetchError):
    exit_code = ExitCode.NOPERM


class FetchServerError(FetchError):
    exit_code = ExitCode.TEMPFAIL


class DeliveryFailedError(FetchError):
    exit_code = ExitCode.CANTCREAT
