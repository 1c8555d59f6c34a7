"""Accounts and an in-process submit for the delivery tests.

``run_submit(account, ...)`` does what the sendmail personality does (read the
message, collect recipients, submit) and returns the receipt or the
``MailhopError`` it raised, so a test states the exit code and then reads the
server's capture.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
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
    return base._replace(**settings)


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


# --- the real command line, as cron runs it ------------------------------------------

# A subprocess that has not finished by then is hung: fail rather than wait.
SUBPROCESS_TIMEOUT_SECONDS = 60


def write_msmtprc(directory: Path, port: int, *lines: str, ca_file: Path | None = None) -> Path:
    """An msmtprc (mode 0600) with one default account for 127.0.0.1:``port``.

    ``lines`` are added to the account (``"auth on"``, ``"tls off"`` ...); later
    lines override earlier ones, as in msmtp.
    """
    path = directory / "msmtprc"
    settings = [
        "host 127.0.0.1",
        f"port {port}",
        f"timeout {TEST_TIMEOUT_SECONDS}",
        "from sender@example.test",
        "tls on",
        "tls_starttls on",
        *([f"tls_trust_file {ca_file}"] if ca_file else []),
        # A 4xx is queued by default (issue #4): keep it in the test's directory.
        f"queue_dir {directory / 'queue'}",
        *lines,
    ]
    path.write_text("account default\n" + "".join(f"{line}\n" for line in settings))
    path.chmod(0o600)
    return path


def run_sendmail(
    config: Path,
    *arguments: str,
    message: bytes = SIMPLE_MESSAGE,
    timeout: float = SUBPROCESS_TIMEOUT_SECONDS,
) -> subprocess.CompletedProcess[bytes]:
    """``python -m mailhop sendmail -C config ARGUMENTS`` with ``message`` on stdin."""
    home = config.parent
    environment = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "LC_ALL": "C.UTF-8",
    }
    environment.pop("EMAIL", None)
    environment.pop("SMTPSERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "mailhop", "sendmail", "-C", str(config), *arguments],
        input=message,
        capture_output=True,
        timeout=timeout,
        env=environment,
        check=False,
    )
