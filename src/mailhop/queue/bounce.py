"""Bounces and delay warnings: RFC 3464 delivery status notifications.

A bounce reports recipients that failed for good (``Action: failed``); a delay
warning, sent once when an entry has waited longer than the account's
``queue_delay_warning``, reports recipients still being retried (``Action:
delayed``, with ``Will-Retry-Until``) so the sender knows nothing needs resending.

A bounce is a ``multipart/report; report-type=delivery-status`` message (RFC 6522)
with three parts: a human-readable explanation, the machine-readable
``message/delivery-status`` (RFC 3464 §2), and the original's header block as
``text/rfc822-headers`` (the body is not returned: it may be large, and a DSN
carrying the whole message is a backscatter amplifier). It is sent from the null
reverse-path (RFC 5321 §4.5.5) so it can never cause a bounce of its own, and it
travels through the queue like any message.

Where it goes is decided by ``bounce_route``: a local sender (``root``, a user name
without a domain, an address on one of this host's names) gets it in their local
mailbox through the runner's local delivery; anyone else through the original's
relay account.
"""

from __future__ import annotations

import email.utils
import enum
import re
import secrets
import socket
import time
from collections.abc import Iterable
from typing import IO

from mailhop._records import NamedTuple
from mailhop.queue.spool import Entry, RecipientState, Route

# How much of the original's header block a DSN returns (RFC 3464 §2 leaves it to
# the MTA); long Received chains fit, a hostile 1 MiB header block does not.
MAX_RETURNED_HEADER_BYTES = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Action(enum.Enum):
    """What a notice reports about its recipients (RFC 3464 §2.3.3)."""

    FAILED = "failed"  # a bounce: the recipient will never get the message
    DELAYED = "delayed"  # a warning: still queued and retried


class FailedRecipient(NamedTuple):
    """One recipient a notice reports, with the last reply that decided it."""

    state: RecipientState
    reason: str  # why, for people: "refused by the server", "expired after 5 days"


def bounce_route(sender: str, local_domains: Iterable[str] = ()) -> Route:
    """Where a notice to ``sender`` goes: their local mailbox, or the relay.

    A sender without a domain (``root`` from cron) or on one of this host's names is
    local: the runner's local delivery routes the notice again like any message
    (aliases included), so ``root`` reads it where /etc/aliases points. Any other
    sender gets it through the original's relay account.
    """
    from mailhop.deliver.routing import LocalDomains  # noqa: PLC0415 - bounces are rare

    return Route.LOCAL if LocalDomains(local_domains).is_local_address(sender) else Route.RELAY


def _clean(text: str) -> str:
    """One header-safe line: no control characters, ASCII only (RFC 3464 §2.1.1)."""
    return _CONTROL.sub(" ", text).encode("ascii", "replace").decode("ascii").strip()


def _status_of(state: RecipientState, action: Action) -> str:
    """The RFC 3463 status: the enhanced code the server gave, or the class default."""
    wanted = "5" if action is Action.FAILED else "4"
    for line in state.last_reply:
        match = re.match(r"\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b", line)
        if match and (action is Action.FAILED or match.group(1).startswith(wanted)):
            return match.group(1)
    if action is Action.DELAYED:
        return "4.0.0"  # RFC 3463 §3.1: other or undefined, still transient
    return "5.0.0" if state.last_code >= 500 or state.last_code == 0 else "4.4.7"


# What each kind of notice says to people; the machine-readable part says the same.
_SUBJECTS = {
    Action.FAILED: "Undelivered Mail Returned to Sender",
    Action.DELAYED: "Delayed Mail (still being retried)",
}


def build_dsn(
    entry: Entry,
    failed: Iterable[FailedRecipient],
    original_headers: bytes,
    *,
    action: Action = Action.FAILED,
    retry_until: float | None = None,
    reporting_host: str | None = None,
    remote_host: str | None = None,
    now: float | None = None,
) -> bytes:
    """The notice for ``failed`` recipients of ``entry`` (CRLF lines).

    ``retry_until``: for a delay warning, when the queue gives up (the entry's
    arrival plus the account's lifetime), reported as ``Will-Retry-Until``.
    """
    now = time.time() if now is None else now
    host = _clean(reporting_host or socket.getfqdn() or "localhost")
    boundary = f"mailhop-dsn-{secrets.token_hex(12)}"
    date = email.utils.formatdate(now, localtime=True)
    arrival = email.utils.formatdate(entry.queued_at, localtime=True)
    until = email.utils.formatdate(retry_until, localtime=True) if retry_until else None
    failed = list(failed)
    if action is Action.FAILED:
        explanation = ["Your message could not be delivered to one or more recipients."]
    else:
        hours = max(1, round((now - entry.queued_at) / 3600))
        explanation = [
            f"Your message has not been delivered yet after {hours} hour(s) in the queue.",
            "The mail system keeps trying"
            + (f" until {until}" if until else "")
            + "; you do not need to send it again.",
        ]
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{_clean(entry.sender)}>",
        f"Subject: {_SUBJECTS[action]}",
        f"Date: {date}",
        f"Message-ID: <{time.time_ns():x}.{secrets.token_hex(6)}@{host}>",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5: never answer this automatically
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {host}.",
        "",
        *explanation,
        "",
    ]
    for item in failed:
        lines.append(f"<{_clean(item.state.address)}>: {_clean(item.reason)}")
        lines.extend(f"    {_clean(reply)}" for reply in item.state.last_reply)
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        # RFC 3464 §2.2: per-message fields, then one block per recipient.
        f"Reporting-MTA: dns; {host}",
        f"X-Mailhop-Queue-ID: {entry.id}",
        f"Arrival-Date: {arrival}",
    ]
    for item in failed:
        state = item.state
        lines += [
            "",
            f"Final-Recipient: rfc822; {_clean(state.address)}",
            f"Original-Recipient: rfc822; {_clean(state.address)}",
            f"Action: {action.value}",
            f"Status: {_status_of(state, action)}",
        ]
        if remote_host:
            lines.append(f"Remote-MTA: dns; {_clean(remote_host)}")
        if state.last_reply:
            lines.append(f"Diagnostic-Code: smtp; {_clean(' '.join(state.last_reply))}")
        lines.append(f"Last-Attempt-Date: {date}")
        if until and action is Action.DELAYED:
            lines.append(f"Will-Retry-Until: {until}")  # RFC 3464 §2.3.9
    headers = original_headers[:MAX_RETURNED_HEADER_BYTES].replace(b"\r\n", b"\n")
    head = "\r\n".join(lines).encode("ascii") + b"\r\n"
    tail = f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n".encode("ascii")
    returned = b"\r\n".join(
        # Header bytes may be 8-bit (RFC 6532); they are returned as they came,
        # each line ending in CRLF, without bare CR.
        line.replace(b"\r", b"")
        for line in headers.rstrip(b"\n").split(b"\n")
    )
    return head + tail + returned + f"\r\n\r\n--{boundary}--\r\n".encode("ascii")


def read_header_block(file: IO[bytes]) -> bytes:
    """The header block a notice returns, read from the start of a stored message."""
    file.seek(0)
    return header_block(file.read(MAX_RETURNED_HEADER_BYTES))


def header_block(message: bytes) -> bytes:
    """The header block of a stored message (up to its first empty line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = message.find(separator)
        if end >= 0:
            return message[:end]
    return message
