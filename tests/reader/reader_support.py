"""Helpers for the mail reader tests: sample mailboxes and the real command line.

``run_reader`` starts ``python -m mailhop mail`` with commands on standard input (no
terminal); ``spawn_reader`` starts it on a real pseudo-terminal with pexpect. Both use a
private HOME, ``MAIL`` pointing at the test mailbox and ``-n`` (no system mail.rc), so
nothing outside the test directory is read or written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# A reader that has not finished by then is hung: fail rather than wait.
READER_TIMEOUT_SECONDS = 30
# How long pexpect waits for one expected piece of output.
EXPECT_TIMEOUT_SECONDS = 15

# The subject of message 2: OSC 0 (retitle the window), BEL, and ED (clear the screen),
# RFC 2047-encoded as security.md E2 gives it.
HOSTILE_SUBJECT = "=?UTF-8?Q?=1B]0;PWNED=07=1B[2J?= second"


def message(
    number: int, sender: str, subject: str, body: str, *, status: str | None = None, to: str = ""
) -> bytes:
    """One mbox entry (From line, headers, body, empty line)."""
    headers = [
        f"From {sender} Mon Nov 23 10:0{number}:00 2026",
        f"From: {sender}",
        f"To: {to or 'tester@example.test'}",
        f"Subject: {subject}",
        f"Date: Mon, 23 Nov 2026 10:0{number}:00 +0000",
        f"Message-ID: <msg{number}@example.test>",
    ]
    if status is not None:
        headers.append(f"Status: {status}")
    return ("\n".join(headers) + "\n\n" + body + "\n\n").encode("utf-8")


def sample_mbox() -> bytes:
    """Three new messages; the second has a hostile subject, the first a quoted From."""
    return (
        message(1, "alice@example.test", "First message", "hello one\n>From the body")
        + message(2, "bob@example.test", HOSTILE_SUBJECT, "hello two")
        + message(3, "carol@example.test", "Third", "hello three", to="tester@example.test")
    )


def reader_environment(home: Path, mailbox: Path) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MBOX", "MAILRC", "EMAIL", "SMTPSERVER", "COLUMNS", "LINES")
    }
    environment.update(
        {
            "HOME": str(home),
            "MAIL": str(mailbox),
            "USER": "tester",
            "LOGNAME": "tester",
            "XDG_CONFIG_HOME": str(home / "xdg"),
            "LC_ALL": "C.UTF-8",
            # No bracketed-paste or other escape sequences from readline itself, so any
            # ESC in the output would have come from a message.
            "TERM": "dumb",
            "MAILHOP_SYSCONFDIR": str(home / "etc"),
        }
    )
    return environment


def run_reader(
    home: Path, mailbox: Path, commands: str, *arguments: str, **environment: str
) -> subprocess.CompletedProcess[bytes]:
    """``mail -n ARGUMENTS`` with ``commands`` on standard input (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "mailhop", "mail", "-n", *arguments],
        input=commands.encode("utf-8"),
        capture_output=True,
        timeout=READER_TIMEOUT_SECONDS,
        env={**reader_environment(home, mailbox), **environment},
        cwd=home,
        check=False,
    )


def spawn_reader(home: Path, mailbox: Path, *arguments: str) -> Any:
    """``mail -n ARGUMENTS`` on a real pseudo-terminal (a ``pexpect.spawn``)."""
    import pexpect

    return pexpect.spawn(
        sys.executable,
        ["-m", "mailhop", "mail", "-n", *arguments],
        env=reader_environment(home, mailbox),
        cwd=str(home),
        timeout=EXPECT_TIMEOUT_SECONDS,
        dimensions=(24, 100),
    )


def subjects(mbox: Path) -> list[str]:
    """The Subject header of every message in ``mbox``, read with the stdlib."""
    import mailbox

    if not mbox.exists():
        return []
    box = mailbox.mbox(str(mbox), create=False)
    try:
        return [str(entry["subject"]) for entry in box]
    finally:
        box.close()
