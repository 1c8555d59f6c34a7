"""The README's first command: ``mailhop demo`` sends through the real sendmail path."""

from __future__ import annotations

import subprocess
import sys


def test_demo_sends_through_the_sendmail_personality() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailhop", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dialogue, _, received = result.stdout.partition("The server received")
    assert "--> MAIL FROM:<demo@localhost>" in dialogue
    assert "<-- 250 2.0.0 Ok: accepted" in dialogue
    assert "exit status: 0" in dialogue
    # Both envelope recipients, but the Bcc header never reaches the server.
    assert "<hidden@example.test>" in received.splitlines()[0]
    headers = received.split("\n\n", 1)[1].split("\n\n", 1)[0]
    assert "Bcc" not in headers
    assert "Message-ID: <" in headers
    assert "From: demo@localhost" in headers
