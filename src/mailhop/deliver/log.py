"""The one-line-per-message delivery log, in msmtp's format.

Scripts and log watchers already parse msmtp's ``logfile`` and ``syslog`` lines, so
mailhop writes the same grammar (reference: msmtp.md §3.6)::

    [TIME ]host=H tls=on auth=on [user=U ]from=F recipients=a,b [mailsize=N ]
    [smtpstatus=NNN smtpmsg='...' ][errormsg='...' ][msgid=<id> ]exitcode=EX_NAME

mailhop's own fields (``msgid=``) go just before ``exitcode=`` so that
``exitcode`` stays the last field, as parsers of msmtp logs expect. A failure to
log is reported on stderr and never changes the exit code (msmtp does the same):
the message was sent or not regardless of the log.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

from mailhop._records import NamedTuple
from mailhop.errors import ExitCode

DEFAULT_TIME_FORMAT = "%b %d %H:%M:%S"  # msmtp's logfile_time_format default
# msmtp waits this long for the log file's fcntl lock before giving up, so that
# concurrent cron jobs do not interleave lines yet a stuck writer cannot block mail.
MAX_LOCK_WAIT_SECONDS = 10.0
LOCK_RETRY_SECONDS = 0.05

REPLY_LINE_SEPARATOR = "\\n"  # two characters: a backslash and an n


class DeliveryRecord(NamedTuple):
    """What one delivery attempt did, as the log line reports it."""

    host: str  # or the socket path when `socket` is used
    tls: bool
    auth: bool
    envelope_from: str
    recipients: tuple[str, ...]
    exit_code: ExitCode
    # Fields with a default come last (a NamedTuple's rule); build records with keywords.
    via_socket: bool = False
    user: str | None = None
    mailsize: int | None = None
    smtp_status: int | None = None
    smtp_message: tuple[str, ...] = ()  # the server's reply lines
    error_message: str | None = None
    message_id: str | None = None


def format_line(record: DeliveryRecord, *, time_format: str | None = DEFAULT_TIME_FORMAT) -> str:
    """Render ``record`` as one msmtp-style line (without a newline).

    ``time_format`` is a strftime pattern; ``None`` or ``"none"`` omits the time,
    as msmtp's ``logfile_time_format none`` does (and as syslog lines always are).
    """
    fields: list[str] = []
    if time_format and time_format != "none":
        fields.append(time.strftime(time_format))
    # Every value is sanitized, not only the server's words: envelope addresses are
    # checked for CR, LF and NUL before they get here, but a tab, an escape sequence
    # or another control character would still garble a terminal or a log parser.
    fields.append(f"{'socket' if record.via_socket else 'host'}={_sanitize(record.host)}")
    fields.append(f"tls={_on_off(record.tls)}")
    fields.append(f"auth={_on_off(record.auth)}")
    if record.user:
        fields.append(f"user={_sanitize(record.user)}")
    fields.append(f"from={_sanitize(record.envelope_from)}")
    fields.append(f"recipients={_sanitize(','.join(record.recipients))}")
    if record.mailsize is not None:
        fields.append(f"mailsize={record.mailsize}")
    if record.smtp_status is not None:
        fields.append(f"smtpstatus={record.smtp_status}")
        # msmtp joins multi-line replies with a literal backslash-n.
        joined = REPLY_LINE_SEPARATOR.join(record.smtp_message)
        fields.append(f"smtpmsg={_quote(joined)}")
    if record.error_message:
        fields.append(f"errormsg={_quote(record.error_message)}")
    if record.message_id:
        fields.append(f"msgid={_sanitize(record.message_id)}")
    fields.append(f"exitcode=EX_{record.exit_code.name}")
    return " ".join(fields)


def append_to_file(path: str, line: str) -> None:
    """Append ``line`` to the log file at ``path`` under an fcntl write lock.

    ``-`` means standard output, as in msmtp. Failures are reported on stderr.
    """
    if path == "-":
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _lock(descriptor)
            os.write(descriptor, (line + "\n").encode("utf-8", "surrogateescape"))
        finally:
            os.close(descriptor)
    except OSError as error:
        sys.stderr.write(f"cannot log to {path}: {error.strerror or error}\nlog info was: {line}\n")


def send_to_syslog(facility: str, line: str, *, success: bool) -> None:
    """Send ``line`` to syslog with ident ``mailhop`` (``facility`` is ``on`` or LOG_*)."""
    import syslog  # noqa: PLC0415 - only the syslog users pay for the import

    name = "LOG_USER" if facility in ("on", "") else facility
    syslog.openlog("mailhop", 0, getattr(syslog, name))
    syslog.syslog(syslog.LOG_INFO if success else syslog.LOG_ERR, line)
    syslog.closelog()


def _lock(descriptor: int) -> None:
    deadline = time.monotonic() + MAX_LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_RETRY_SECONDS)
        else:
            return


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _sanitize(text: str) -> str:
    # A log line is one line: control characters from a server reply or a
    # header must not forge further lines.
    return "".join(character if character.isprintable() else "?" for character in text)


def _quote(text: str) -> str:
    # msmtp replaces single quotes inside quoted values with "?".
    return "'" + _sanitize(text).replace("'", "?") + "'"
