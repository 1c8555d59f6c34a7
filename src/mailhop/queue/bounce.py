"""Bounces: RFC 3464 delivery status notifications for recipients that failed.

A bounce is a ``multipart/report; report-type=delivery-status`` message (RFC 6522)
with three parts: a human-readable explanation, the machine-readable
``message/delivery-status`` (RFC 3464 §2), and the original's header block as
``text/rfc822-headers`` (the body is not returned: it may be large, and a DSN
carrying the whole message is a backscatter amplifier). It is sent from the null
reverse-path (RFC 5321 §4.5.5) so it can never cause a bounce of its own, and it
travels through the queue like any message.

Where it goes is decided by ``bounce_route``: the single hook where local delivery
(issue #5) plugs in, so that a bounce to a local sender (``root``, a user name
without a domain) lands in their local mailbox. Until then every bounce is relayed
through the original's account.
"""

from __future__ import annotations

import dataclasses
import email.utils
import re
import secrets
import socket
import time
from collections.abc import Iterable

from mailhop.queue.spool import Entry, RecipientState, Route

# How much of the original's header block a DSN returns (RFC 3464 §2 leaves it to
# the MTA); long Received chains fit, a hostile 1 MiB header block does not.
MAX_RETURNED_HEADER_BYTES = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FailedRecipient:
    """One recipient a bounce reports, with the last reply that decided it."""

    state: RecipientState
    reason: str  # why, for people: "refused by the server", "expired after 5 days"


def bounce_route(sender: str) -> Route:
    """Where a bounce to ``sender`` goes. THE hook for local delivery of bounces.

    A sender without a domain is a local user; once local delivery exists (issue #5)
    this returns ``Route.LOCAL`` for such senders and the runner hands them to it.
    """
    del sender  # until local delivery exists, every bounce is relayed
    return Route.RELAY


def _clean(text: str) -> str:
    """One header-safe line: no control characters, ASCII only (RFC 3464 §2.1.1)."""
    return _CONTROL.sub(" ", text).encode("ascii", "replace").decode("ascii").strip()


def _status_of(state: RecipientState) -> str:
    """The RFC 3463 status: the enhanced code the server gave, or the class default."""
    for line in state.last_reply:
        match = re.match(r"\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b", line)
        if match:
            return match.group(1)
    return "5.0.0" if state.last_code >= 500 or state.last_code == 0 else "4.4.7"


def build_dsn(
    entry: Entry,
    failed: Iterable[FailedRecipient],
    original_headers: bytes,
    *,
    reporting_host: str | None = None,
    remote_host: str | None = None,
    now: float | None = None,
) -> bytes:
    """The bounce message for ``failed`` recipients of ``entry`` (CRLF lines)."""
    now = time.time() if now is None else now
    host = _clean(reporting_host or socket.getfqdn() or "localhost")
    boundary = f"mailhop-dsn-{secrets.token_hex(12)}"
    date = email.utils.formatdate(now, localtime=True)
    arrival = email.utils.formatdate(entry.queued_at, localtime=True)
    failed = list(failed)
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{_clean(entry.sender)}>",
        "Subject: Undelivered Mail Returned to Sender",
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
        "Your message could not be delivered to one or more recipients.",
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
            "Action: failed",
            f"Status: {_status_of(state)}",
        ]
        if remote_host:
            lines.append(f"Remote-MTA: dns; {_clean(remote_host)}")
        if state.last_reply:
            lines.append(f"Diagnostic-Code: smtp; {_clean(' '.join(state.last_reply))}")
        lines.append(f"Last-Attempt-Date: {date}")
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


def header_block(message: bytes) -> bytes:
    """The header block of a stored message (up to its first empty line)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = message.find(separator)
        if end >= 0:
            return message[:end]
    return message
