"""A reply typed in the reader travels through the real Postfix and is read back over IMAPS."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from tests.lab.support import Lab, unique_token, wait_for_message
from tests.reader.reader_support import message, run_reader

pytestmark = pytest.mark.lab


def test_reply_reaches_the_sender_through_postfix(tmp_path: Path, lab: Lab) -> None:
    alice, bob = lab.user("alice"), lab.user("bob")
    rc = tmp_path / ".msmtprc"
    rc.write_text(
        "account default\n"
        "host 127.0.0.1\n"
        f"port {lab.ports.submissions}\n"
        "tls on\ntls_starttls off\n"
        f"tls_trust_file {lab.ca_file}\n"
        f"auth on\nuser {alice.login}\npassword {alice.password}\n"
        f"from {alice.address}\n"
    )
    rc.chmod(0o600)
    token = unique_token()
    inbox = tmp_path / "inbox"
    inbox.write_bytes(message(1, bob.address, f"question {token}", "are the backups ok?"))
    result = run_reader(tmp_path, inbox, f"R 1\nyes, all green {token}\n.\nx\n")
    assert result.returncode == 0, result.stderr
    assert b"EOT" in result.stdout
    assert b"not sent" not in result.stdout
    reply = email.message_from_bytes(wait_for_message(lab, bob, token), policy=email.policy.default)
    assert reply["Subject"] == f"Re: question {token}"
    assert reply["In-Reply-To"] == "<msg1@example.test>"
    assert alice.address in str(reply["From"])
