"""Accounts and an in-process submit for the delivery tests.

``run_submit(account, ...)`` does what the sendmail personality does (read the
message, collect recipients, submit) and returns the receipt or the
``MailhopError`` it raised, so a test states the exit code and then reads the
server's capture.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mailhop.config import Account
from mailhop.deliver.submit import Receipt, submit
from mailhop.errors import ExitCode, MailhopError
from mailhop.message import collect_recipients, parse_envelope_sender, read_message

# Every in-process session gives up after this many seconds of silence, so a test
# whose server misbehaves fails quickly instead of waiting RFC 5321's minutes.
TEST_TIMEOUT_SECONDS = 5

PASSWORD = "s3cr3t-Pa55w0rd"  # a test credential, searched for on the wire

SIMPLE_MESSAGE = (
    b"From: sender@example.test\r\nTo: rcpt@example.test\r\nSubject: test\r\n\r\nHello.\r\n"
)


def make_account(port: int, ca_file: Path | None = None, **settings: Any) -> Account:
    """A STARTTLS account for 127.0.0.1:``port`` (override anything with ``settings``)."""
    base = Account(
        name="test",
        host="127.0.0.1",
        port=port,
        tls=True,
        tls_starttls=True,
        tls_trust_file=str(ca_file) if ca_file else None,
        timeout=TEST_TIMEOUT_SECONDS,
        from_address="sender@example.test",
    )
    return dataclasses.replace(base, **settings)


def run_submit(
    account: Account,
    *,
    message: bytes = SIMPLE_MESSAGE,
    sender: str = "sender@example.test",
    recipients: Sequence[str] = ("rcpt@example.test",),
    transcript: Callable[[str], None] | None = None,
) -> Receipt | MailhopError:
    """Submit ``message`` in-process; the receipt, or the error with its exit code."""
    try:
        with read_message(io.BytesIO(message), ignore_dots=True) as parsed:
            return submit(
                account,
                parsed,
                sender=parse_envelope_sender(sender),
                recipients=collect_recipients(list(recipients), parsed.headers),
                transcript=transcript,
            )
    except MailhopError as error:
        return error


def exit_code(outcome: Receipt | MailhopError) -> ExitCode:
    """0 for a receipt, else the error's code (what the process would exit with)."""
    if isinstance(outcome, MailhopError):
        return outcome.exit_code
    return ExitCode.OK
