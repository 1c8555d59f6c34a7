"""Header summary lines, as POSIX mailx prints them (mailx.md §2.3)::

    >N  1 alice@example.test   Mon Nov 23 10:00   11/262   First message

Fields: ``>`` on the current message, the state letter (``N`` new, ``U`` unread,
``R`` read now, ``O`` read earlier, ``S`` saved, ``P`` preserved, ``M`` to mbox,
``*`` deleted; Heirloom/s-nail's letters), number, sender address, date, lines/bytes,
subject. The date is taken from the mbox ``From `` line (bsd and GNU do), else from the
``Date:`` header. The line is cut to the terminal width so it never wraps; every field
is escaped for the terminal (display.escape_for_terminal).
"""

from __future__ import annotations

import email.utils
import time

from mailhop.reader.display import escape_for_terminal, header_text, parse_headers
from mailhop.reader.folder import Mark, Status, StoredMessage

# Terminal width when the terminal does not say (POSIX COLUMNS default).
DEFAULT_COLUMNS = 80
# The narrowest line the summary is cut to: below this the fields themselves do not fit.
MIN_COLUMNS = 40
# Width of the sender field (bsd-mailx and Heirloom use 18-20).
SENDER_WIDTH = 20
# Summary lines one ``headers`` page shows (POSIX screen variable default is 20).
DEFAULT_SCREEN_LINES = 20


def state_letter(message: StoredMessage, marks: Mark) -> str:
    if Mark.DELETED in marks:
        return "*"
    if Mark.PRESERVED in marks:
        return "P"
    if Mark.SAVED in marks:
        return "S"
    if Mark.TO_MBOX in marks:
        return "M"
    if Mark.READ_NOW in marks:
        return "R"
    return {Status.NEW: "N", Status.UNREAD: "U", Status.READ: "O"}[message.status]


def sender_of(message: StoredMessage) -> str:
    parsed = parse_headers(message.data)
    value = parsed.get("from")
    if value is not None:
        try:
            addresses = email.utils.getaddresses([str(value)])
        except (ValueError, TypeError):
            addresses = []
        if addresses and addresses[0][1]:
            return escape_for_terminal(addresses[0][1])
        text = header_text(parsed, "from")
        if text:
            return text
    words = message.envelope_line.split()
    return escape_for_terminal(words[1].decode("utf-8", "replace")) if len(words) > 1 else ""


def date_of(message: StoredMessage) -> str:
    """``Www Mmm dd hh:mm`` as in the ``From `` line (16 characters)."""
    words = message.envelope_line.decode("utf-8", "replace").split()
    if len(words) >= 6:
        candidate = " ".join(words[2:6])
        if len(candidate) >= 16:
            return escape_for_terminal(candidate[:16])
    value = parse_headers(message.data).get("date")
    timestamp: float | None = None
    if value is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(str(value))
            timestamp = parsed.timestamp()
        except (ValueError, TypeError, IndexError):
            timestamp = None
    if timestamp is None:
        timestamp = message.received
    if timestamp is None:
        return " " * 16
    return time.strftime("%a %b %d %H:%M", time.localtime(timestamp))


def summary_line(
    number: int,
    message: StoredMessage,
    marks: Mark,
    *,
    current: bool,
    columns: int = DEFAULT_COLUMNS,
) -> str:
    """One header summary line, at most ``columns`` characters wide."""
    width = max(columns, MIN_COLUMNS) - 1  # the last column would make some terminals wrap
    subject = header_text(parse_headers(message.data), "subject")
    sender = sender_of(message)
    if len(sender) > SENDER_WIDTH:
        sender = sender[: SENDER_WIDTH - 1] + "~"
    # Lines and bytes as the mailbox holds them (with the From line), as bsd and s-nail count.
    stored = message.raw or message.data
    lines, size = stored.count(b"\n"), len(stored)
    line = (
        f"{'>' if current else ' '}{state_letter(message, marks)} {number:>3} "
        f"{sender:<{SENDER_WIDTH}} {date_of(message):<16} "
        f"{lines:>5}/{size:<7} {subject}"
    )
    return line[:width].rstrip()
